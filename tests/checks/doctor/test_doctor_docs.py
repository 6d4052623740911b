"""docs/checks.md is generated from the checks' docstrings; every check documents every section."""

from __future__ import annotations

from danlu.checks.doctor import registered
from danlu.checks.doctor.base import DOC_SECTIONS, doc_sections
from danlu.checks.doctor.docs import checks_markdown, default_path, missing_sections


def test_every_check_has_every_docstring_section():
    assert missing_sections() == {}, "add the missing sections: " + ", ".join(DOC_SECTIONS)


def test_every_setting_is_named_in_the_thresholds_section():
    for cls in registered():
        text = doc_sections(cls)["Thresholds"]
        for name in cls.settings:
            assert f"{cls.id}.{name}" in text, f"{cls.id}: document {cls.id}.{name} under Thresholds"


def test_docs_page_is_up_to_date():
    page = default_path()
    assert page.exists(), "run: python -m danlu.checks.doctor.docs --write"
    assert page.read_text(encoding="utf-8") == checks_markdown(), "run: python -m danlu.checks.doctor.docs --write"


def test_docs_list_every_check_with_its_settings():
    text = checks_markdown()
    for cls in registered():
        assert f"## {cls.id}\n" in text
        for name in cls.settings:
            assert f"`{cls.id}.{name}`" in text
