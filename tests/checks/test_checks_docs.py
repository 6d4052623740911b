"""docs/checks.md and docs/audit.md are generated from the checks' docstrings; every check documents every section."""

from __future__ import annotations

import pytest

from danlu.checks import FAMILIES, checks_of
from danlu.checks.base import DOC_SECTIONS, doc_sections
from danlu.checks.docs import missing_sections, page_markdown, page_path


def test_every_check_has_every_docstring_section():
    assert missing_sections() == {}, "add the missing sections: " + ", ".join(DOC_SECTIONS)


def test_every_setting_is_named_in_the_thresholds_section():
    for cls in checks_of(None):
        text = doc_sections(cls)["Thresholds"]
        for name in cls.settings:
            assert f"{cls.id}.{name}" in text, f"{cls.id}: document {cls.id}.{name} under Thresholds"


@pytest.mark.parametrize("family", FAMILIES)
def test_docs_page_is_up_to_date(family):
    page = page_path(family)
    assert page.exists(), "run: python -m danlu.checks.docs --write"
    assert page.read_text(encoding="utf-8") == page_markdown(family), "run: python -m danlu.checks.docs --write"


@pytest.mark.parametrize("family", FAMILIES)
def test_docs_list_every_check_of_the_family_with_its_settings(family):
    text = page_markdown(family)
    for cls in checks_of(family):
        assert f"## {cls.id}\n" in text
        for name in cls.settings:
            assert f"`{cls.id}.{name}`" in text


def test_shared_checks_appear_on_both_pages_from_one_implementation():
    shared = [c for c in checks_of(None) if set(c.families) == set(FAMILIES)]
    assert {c.id for c in shared} == {"D4", "D7"}
    for cls in shared:
        assert all(f"## {cls.id}\n" in page_markdown(f) for f in FAMILIES)
