"""The dashboard in a real browser (issue 5): Playwright driving Debian's chromium.

Loads the runs table, opens a run and checks that the chart canvases are drawn with
the right number of series, zooms, compares two runs, edits a note (persisted in
the store), watches a running run update live, and checks that a run named
``<script>alert(1)</script>`` shows as text. Screenshots of every page go to
``test-artifacts/ui/``.

Skipped, with the reason, only when chromium or the playwright package is missing
(`.ci/install-browser.sh` installs both; never `playwright install`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from ui_fakestore import MemoryStore
from ui_live import LiveServer
from ui_sample import XSS, log_run, populate

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"

# On CI (CI=true) the browser must be there: a missing chromium fails instead of skipping quietly.
_ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if _ON_CI:
    import playwright.sync_api as playwright_api

    assert Path(CHROMIUM).exists() or shutil.which("chromium"), f"chromium missing at {CHROMIUM} on CI"
else:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed; run .ci/install-browser.sh"
    )
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"chromium is not installed at {CHROMIUM}; run .ci/install-browser.sh",
                    allow_module_level=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One store, one server and one browser for the whole module (starting chromium is slow)."""
    from danlu.ui.app import create_app

    root = tmp_path_factory.mktemp("ui-browser")
    try:
        from danlu.store import open_store

        store = open_store(root / "store")
    except ImportError:
        store = MemoryStore(root / "store")
    sample = populate(store)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with LiveServer(create_app(store)) as server, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        server.url_page = server.url + "/?poll=300"              # live pages ask every 0.3 s
        try:
            yield sample, server, context
        finally:
            browser.close()


@pytest.fixture
def page(env):
    """A fresh tab that fails the test on any script error or alert() dialog."""
    _, _, context = env
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

    def on_dialog(dialog):
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.set_default_timeout(10_000)
    yield tab
    tab.close()
    assert problems == []


def shot(tab, name: str) -> None:
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def canvas_ink(tab, chart_selector: str) -> int:
    """Coloured (non-grey) pixels on a chart's canvas: the curves, not the grid."""
    return tab.eval_on_selector(chart_selector + " canvas", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
            if (a > 0 && (Math.max(r, g, b) - Math.min(r, g, b)) > 40) n++;
        }
        return n;
    }""")


def test_runs_table(env, page):
    sample, server, _ = env
    page.goto(server.url_page)
    page.wait_for_selector("table.runs tbody tr[data-id]")
    names = page.locator("table.runs td.name a").all_text_contents()
    assert set(names) >= {"baseline", "wide", "live", "broken", XSS}
    headers = page.locator("table.runs thead th").all_text_contents()
    assert any(h.startswith("hidden") for h in headers) and any(h.startswith("lr") for h in headers)
    assert not any(h.startswith("batch_size") for h in headers)      # constant: not a column
    assert [h.rstrip(" ▲▼") for h in headers[1:5]] == ["name", "status", "best", "diagnosis"]  # outcome first
    assert not any(h.startswith("best_val_loss") for h in headers)   # metrics wait in the column chooser
    row = page.locator(f"tr[data-id='{sample.ids['baseline']}']")
    assert row.locator(".badge").first.text_content() == "finished"
    assert "learning" in row.locator("td.diag").text_content()
    shot(page, "runs")
    # filter on the server, by hyperparameter range
    page.fill("#filter", "lr:5e-4..5e-3")
    page.wait_for_function("() => document.querySelector('#run-count').textContent.startsWith('2 of')")
    assert set(page.locator("table.runs td.name a").all_text_contents()) == {"wide", "live"}
    # sort by a column
    page.fill("#filter", "")
    page.wait_for_function("() => document.querySelectorAll('table.runs tbody tr[data-id]').length === 5")
    page.click("th[data-sort='name']")
    page.wait_for_function("() => document.querySelector(\"th[data-sort='name']\").textContent.includes('▲')")
    assert page.locator("table.runs td.name a").all_text_contents()[1:] == ["baseline", "broken", "live", "wide"]


def test_xss_run_name_renders_as_text(env, page):
    sample, server, _ = env
    page.goto(server.url_page)
    page.wait_for_selector("table.runs tbody tr[data-id]")
    cell = page.locator(f"tr[data-id='{sample.ids['xss']}'] td.name a")
    assert cell.text_content() == XSS
    assert page.locator("table.runs script").count() == 0
    assert page.locator("table.runs img").count() == 0              # the note's <img onerror> is text
    assert page.evaluate("window.__xss") is None
    page.goto(server.url_page + "#/run/" + sample.ids["xss"])
    page.wait_for_selector(".run-name")
    assert page.locator(".run-name").text_content() == XSS
    assert page.locator("#note").input_value().startswith("<img")
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.__xss") is None
    shot(page, "xss-run")


def test_run_page_charts(env, page):
    sample, server, _ = env
    page.goto(server.url_page + "#/run/" + sample.ids["baseline"])
    page.wait_for_selector(".chart[data-title='loss'][data-points] canvas")
    charts = page.eval_on_selector_all(".chart", "els => els.map(e => [e.dataset.title, +e.dataset.curves, +e.dataset.series])")
    # every logged series appears: loss (train, val, probe) + train smoothed overlay, acc, learning rate
    assert sorted(charts) == sorted([["loss", 3, 4], ["acc", 1, 1], ["learning rate", 1, 1]])
    legend = page.locator(".chart[data-title='loss'] .u-legend .u-series").all_text_contents()
    assert len(legend) == 1 + 4 and any("val/probe_loss" in t for t in legend)
    assert canvas_ink(page, ".chart[data-title='loss']") > 500
    assert int(page.get_attribute(".chart[data-title='loss']", "data-points")) <= 2000
    assert page.locator("#diagnosis").text_content().count("learning") >= 1
    assert page.locator("#hyperparameters").text_content().count("hidden") == 1
    assert "hidden: int = 128" in page.locator("#repro pre.diff").text_content()
    assert page.locator("#checkpoints a").all_text_contents() == ["best.pt", "last.pt"]
    assert page.locator("a:has-text('doctor: digits')").count() == 1
    # hover shows values in the legend
    box = page.locator(".chart[data-title='loss'] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    values = page.locator(".chart[data-title='loss'] .u-legend .u-series .u-value").all_text_contents()
    assert any(v not in ("—", "--", "") for v in values[1:])
    shot(page, "run")
    # smoothing off: the overlay goes away
    page.eval_on_selector("#smoothing", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => document.querySelector(\".chart[data-title='loss']\").dataset.series === '3'")
    # drag to zoom: the server sends the window again, every point of it
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 30, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector(\".chart[data-title='loss']\").dataset.zoomed")
    lo, hi = map(int, page.get_attribute(".chart[data-title='loss']", "data-zoomed").split(".."))
    assert 80 < lo < hi < 220
    page.wait_for_function(f"() => +document.querySelector(\".chart[data-title='loss']\").dataset.points <= {hi - lo + 1}")
    shot(page, "run-zoomed")
    page.dblclick(".chart[data-title='loss'] .u-over")
    page.wait_for_function("() => !document.querySelector(\".chart[data-title='loss']\").dataset.zoomed")


def test_compare_two_runs(env, page):
    sample, server, _ = env
    page.goto(server.url_page)
    page.wait_for_selector("table.runs tbody tr[data-id]")
    for name in ("baseline", "wide"):
        page.locator(f"tr[data-id='{sample.ids[name]}'] td.sel input").check()
    assert page.locator("#compare").text_content() == "Compare selected (2)"
    page.click("#compare")
    page.wait_for_selector("#differences")
    assert "#/compare/" in page.url
    keys = page.eval_on_selector_all("#differences tr[data-key]", "els => els.map(e => e.dataset.key)")
    assert "hidden" in keys and "lr" in keys and "env.torch" in keys and "seed" not in keys
    page.wait_for_selector(".chart[data-title='train/loss'][data-points] canvas")
    chart = page.locator(".chart[data-title='train/loss']")
    assert chart.get_attribute("data-curves") == "2"
    assert canvas_ink(page, ".chart[data-title='train/loss']") > 500
    titles = page.eval_on_selector_all(".chart", "els => els.map(e => e.dataset.title)")
    assert set(titles) == {"train/loss", "val/loss", "val/probe_loss", "val/acc", "lr"}
    shot(page, "compare")


def test_edit_note_and_tags(env, page):
    sample, server, _ = env
    store, rid = sample.store, sample.ids["wide"]
    page.goto(server.url_page)
    row = page.locator(f"tr[data-id='{rid}']")
    row.wait_for()
    row.hover()
    row.locator("button.edit-note").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("wider net, same lr")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector(\"tr[data-id='{rid}'] td.note\").textContent.includes('same lr')")
    assert store.get_run(rid).note == "wider net, same lr"
    # on the run page: note and tags together
    page.goto(server.url_page + "#/run/" + rid)
    page.wait_for_selector("#note")
    page.fill("#note", "the wide one")
    page.fill("#tags", "mainline, best")
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#saved').textContent === 'saved'")
    fresh = store.get_run(rid)
    assert fresh.note == "the wide one" and sorted(fresh.tags) == ["best", "mainline"]
    shot(page, "run-edited")


def test_running_run_updates_live(env, page):
    sample, server, _ = env
    store, rid = sample.store, sample.ids["live"]
    page.goto(server.url_page + "#/run/" + rid)
    page.wait_for_selector(".chart[data-title='loss'][data-total] canvas")
    before = int(page.get_attribute(".chart[data-title='loss']", "data-total"))
    now = time.time()
    store.log_points(rid, [("train/loss", 300 + i, 0.1, now) for i in range(50)])
    store.update_run(rid, heartbeat=now)
    page.wait_for_function(f"() => +document.querySelector(\".chart[data-title='loss']\").dataset.total >= {before + 50}")
    page.goto(server.url_page)
    page.wait_for_selector(f"tr[data-id='{rid}'][data-status='running']")
    store.update_run(rid, status="finished", ended=time.time())
    page.wait_for_selector(f"tr[data-id='{rid}'][data-status='finished']", timeout=5000)


def test_reports_pages(env, page):
    sample, server, _ = env
    page.goto(server.url_page + "#/reports")
    page.wait_for_selector("#reports tbody tr")
    assert page.locator("#reports tbody tr").count() == 2
    shot(page, "reports")
    page.click("text=doctor: digits")
    page.wait_for_selector(".report .finding")
    findings = page.locator(".report details.finding")
    assert findings.count() == 3
    assert findings.first.locator(".badge").text_content() == "fail"          # worst first
    body = page.locator(".report").text_content()
    assert "set dropout to 0 for this check" in body and "dropout left on" in body
    assert XSS in body and page.locator(".report script").count() == 0
    assert page.locator(".report-table tbody tr").count() == 3
    page.wait_for_function("() => document.querySelector('.images img').complete "
                           "&& document.querySelector('.images img').naturalWidth > 0")
    shot(page, "report")


def test_long_series_reaches_the_browser_downsampled(env, page):
    sample, server, _ = env
    store = sample.store
    run = store.create_run(name="long-run", config={"lr": 1e-3})
    log_run(store, run.id, steps=50_000, epochs=10, seed=7, lr=1e-3)
    store.update_run(run.id, status="finished", ended=time.time())
    page.goto(server.url_page + "#/run/" + run.id)
    page.wait_for_selector(".chart[data-title='loss'][data-points] canvas")
    points = int(page.get_attribute(".chart[data-title='loss']", "data-points"))
    total = int(page.get_attribute(".chart[data-title='loss']", "data-total"))
    assert points <= 2000 and total > 50_000
    assert canvas_ink(page, ".chart[data-title='loss']") > 500


# ---------------------------------------------------------------- issue 14: the runs table
def _study(store, name: str, trials: int = 6) -> list[str]:
    """A study run and its trials (tagged study:NAME), with a stored importance report."""
    from danlu.report import Finding, Report

    study = store.create_run(name=name, kind="study", config={"vary": ["lr", "hidden"]})
    ids = []
    for k in range(trials):
        lr, hidden = 10 ** (-4 + 3 * k / (trials - 1)), 32 * (1 + k % 3)
        run = store.create_run(name=f"{name}.s1.t{k}", config={"lr": lr, "hidden": hidden, "seed": 0},
                               tags=[f"study:{name}", "stage:1"])
        store.update_run(run.id, status="finished", ended=time.time(),
                         summary={"best_val_loss": 1.0 - 0.1 * k, "best_val_acc": 0.5 + 0.07 * k})
        ids.append(run.id)
    report = Report(kind="study", title=name, findings=[Finding(
        "H1", "importance", "info", "lr explains most", evidence={"importance": {
            "lr": {"share": 0.8, "variance": 1.0, "kruskal_p": 0.01},
            "hidden": {"share": 0.2, "variance": 0.2, "kruskal_p": 0.4}}})])
    store.save_report(study.id, "study", report.to_dict())
    store.update_run(study.id, status="finished", ended=time.time())
    return ids


def test_kinds_studies_and_the_column_chooser(env, page):
    sample, server, _ = env
    store = sample.store
    check = store.create_run(name="a-check", kind="check", config={"lr": 3e-4})
    store.update_run(check.id, status="finished", ended=time.time())
    trials = _study(store, "tune-lr")
    page.goto(server.url_page)
    page.wait_for_selector("#kinds button[data-kind='check']")       # the table asks again until it sees them
    # training runs by default; the check is one click away, with a kind column when kinds mix
    assert page.locator(f"tr[data-id='{check.id}']").count() == 0
    assert page.locator("#kinds button[data-kind='check']").text_content() == "check (1)"
    page.click("#kinds button[data-kind='all']")
    page.wait_for_selector(f"tr[data-id='{check.id}']")
    assert "kind" in [h.rstrip(" ▲▼") for h in page.locator("table.runs thead th").all_text_contents()]
    page.click("#kinds button[data-kind='train']")
    page.wait_for_selector("tr.study[data-study='tune-lr']")
    # a study's trials fold into one row that opens
    assert page.locator(f"tr[data-id='{trials[0]}']").count() == 0
    study_row = page.locator("tr.study[data-study='tune-lr']")
    assert "6 trials" in study_row.text_content() and "acc 0.85" in study_row.locator("td.best").text_content()
    study_row.locator("button.expand").click()
    page.wait_for_selector(f"tr.member[data-id='{trials[0]}']")
    assert page.locator("tr.member").count() == 6
    shot(page, "runs-study-open")
    # the column chooser: a metric column on, remembered for this store across reloads
    page.click("#columns")
    page.check("#column-chooser input[data-column='m:best_val_loss']")
    page.wait_for_selector("th[data-column='m:best_val_loss']")
    page.uncheck("#column-chooser input[data-column='note']")
    page.wait_for_function("() => !document.querySelector(\"th[data-column='note']\")")
    page.reload()
    page.wait_for_selector("th[data-column='m:best_val_loss']")
    assert page.locator("th[data-column='note']").count() == 0
    page.click("#columns")
    page.click("#column-chooser button:has-text('defaults')")
    page.wait_for_selector("th[data-column='note']")


def test_parallel_coordinates_of_a_study(env, page):
    sample, server, _ = env
    trials = _study(sample.store, "tune-par", trials=8)
    page.goto(server.url_page)
    page.wait_for_selector("tr.study[data-study='tune-par']", timeout=20_000)
    page.locator("tr.study[data-study='tune-par'] a:has-text('parallel coordinates')").click()
    page.wait_for_selector("#parallel-plot polyline.run")
    assert page.locator("#parallel-plot polyline.run").count() == 8
    axes = page.eval_on_selector_all("#parallel-plot g.axis", "els => els.map(e => e.dataset.axis)")
    assert axes == ["lr", "hidden", "outcome"]                   # ordered by the study's importance
    assert page.locator("#importance tr").count() == 2
    assert page.get_attribute("#parallel-plot", "data-shown") == "8"
    shot(page, "parallel")
    # brush the lr axis over its upper half: only the runs with large lr stay coloured
    box = page.locator("#parallel-plot g.axis[data-axis='lr'] rect.axis-hit").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    page.wait_for_function("() => +document.querySelector('#parallel-plot').dataset.shown < 8")
    shown = int(page.get_attribute("#parallel-plot", "data-shown"))
    assert 2 <= shown <= 5
    shot(page, "parallel-brushed")
    # hover names the run; a click opens it (events sent to the line: its middle lies on an axis's brush band)
    page.locator("#parallel-plot polyline.kept").last.dispatch_event("mouseenter")
    assert "tune-par.s1.t" in page.locator("#parallel-info").text_content()
    page.locator("#parallel-plot polyline.kept").last.dispatch_event("click")
    page.wait_for_selector(".run-name")
    assert page.locator(".run-name").text_content().startswith("tune-par.s1.t")
    assert trials


def test_log_scale_toggle_and_full_series_names(env, page):
    sample, server, _ = env
    page.goto(server.url_page + "#/run/" + sample.ids["baseline"])
    page.wait_for_selector(".chart[data-title='loss'][data-points] canvas")
    title = page.locator(".chart[data-title='loss'] .chart-title").text_content()
    assert "train/loss" in title and "val/loss" in title and "val/probe_loss" in title
    page.click(".chart[data-title='loss'] button.log-toggle")
    page.wait_for_function("() => document.querySelector(\".chart[data-title='loss']\").dataset.log === 'true'")
    page.wait_for_selector(".chart[data-title='loss'] canvas")
    assert canvas_ink(page, ".chart[data-title='loss']") > 500
    assert page.locator(".chart[data-title='epoch']").count() == 0


def test_outcome_and_diagnosis_fit_1280x800_with_30_hyperparameters(env, tmp_path_factory):
    """At 1280x800 the best metric and the diagnosis are on screen without scrolling sideways, even
    when 30 hyperparameters vary between the runs; screenshots go to test-artifacts/ui/."""
    from danlu.store import open_store
    from danlu.ui.app import create_app

    store = open_store(tmp_path_factory.mktemp("wide") / "store")
    for k in range(12):
        config = {f"hyperparameter_number_{j:02d}": (k + 1) * (j + 1) * 1.2345 for j in range(30)}
        run = store.create_run(name=f"run-with-a-fairly-long-name-{k:02d}", config=config,
                               note="a note long enough to be cut to one line in the table " * 3)
        store.update_run(run.id, status="finished", ended=time.time() + 30,
                         summary={"best_val_loss": 0.5 + k / 100, "best_val_acc": 0.9 - k / 100,
                                  "diagnosis": "overfitting" if k % 2 else "learning"})
    with LiveServer(create_app(store)) as server:
        context = env[2].browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            tab = context.new_page()
            tab.goto(server.url + "/")
            tab.wait_for_selector("table.runs tbody tr[data-id]")
            assert tab.evaluate("document.scrollingElement.scrollWidth") <= 1280
            wrap = tab.locator(".table-wrap").bounding_box()
            for selector in ("td.best", "td.diag"):
                cells = tab.locator(f"table.runs tbody tr[data-id] {selector}")
                assert cells.count() == 12
                for k in range(cells.count()):
                    box = cells.nth(k).bounding_box()
                    assert box["x"] >= wrap["x"] and box["x"] + box["width"] <= min(1280, wrap["x"] + wrap["width"]), \
                        (selector, box, wrap)
            assert "overfitting" in tab.locator("table.runs td.diag").all_text_contents()
            notes = tab.locator("table.runs td.note .one-line").first.bounding_box()
            assert notes["height"] < 30                                  # one line, the full text on hover
            tab.screenshot(path=str(SHOTS / "runs-1280x800.png"))
        finally:
            context.close()
