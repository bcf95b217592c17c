"""notebooks/tour.ipynb executes top to bottom (nbclient), so it cannot rot; skipped without the notebook extra."""
import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install 'toyrlhf[notebook]')")
nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install 'toyrlhf[notebook]')")
pytest.importorskip("ipykernel", reason="ipykernel not installed (pip install 'toyrlhf[notebook]')")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "tour.ipynb"


@pytest.mark.slow
def test_tour_notebook_executes_with_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    wall = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2      # the figures are inline
    text = "".join(o.get("text", "") for o in outputs)
    assert "exact E[gold]" in text and "gold reward" in text
    print(f"notebook executed in {wall:.1f} s")
