"""examples/method.ipynb runs top to bottom in a real Jupyter kernel (nbclient), and each report
shows itself as HTML, with its pictures inline (issue 13: notebooks)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_the_method_notebook_runs_and_shows_its_reports():
    notebook = nbformat.read(ROOT / "examples" / "method.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("danlu-report" in p and "audit" in p.lower() for p in pages)
    assert any("danlu-report" in p and "data:image/png;base64," in p for p in pages)   # pictures inline
    assert sum("danlu-report" in p for p in pages) == 4                  # audit, check, diagnose, cases
    # progress in a notebook: plain lines (a live bar's redraws would pile up in the cell), one per epoch
    fit_cell = next(c for c in notebook.cells if "danlu.fit(" in c.source)
    shown = "".join(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
                    for o in fit_cell.outputs)
    assert "epoch 1/" in shown and "step " in shown and "eta " in shown, shown[:500]
