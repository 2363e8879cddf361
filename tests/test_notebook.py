"""The trainer notebook runs end to end on the dev-set database (nbclient, a real kernel)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ROOT
from tests.reportdb import dev_db

NOTEBOOK = ROOT / "notebooks" / "trainer.ipynb"


def test_trainer_notebook_executes(tmp_path_factory, shared_data, monkeypatch):
    import nbformat  # dev extra: nbformat, nbclient, ipykernel
    from nbclient import NotebookClient

    db = dev_db(tmp_path_factory)
    monkeypatch.setenv("CALLQA_DB", str(db))
    monkeypatch.setenv("CALLQA_WEEK", "2026-W46")
    monkeypatch.setenv("CALLQA_ITEM", "forbidden_phrase")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    client.execute(env=dict(os.environ))
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # the trend table shows A06 and the item examples name A05's forbidden phrase with a clip
    assert "A06" in outputs and "2026-W44" in outputs
    assert "A05 D027" in outputs and "not our problem" in outputs
    clip = next(line.split("clip: ", 1)[1] for line in outputs.splitlines() if "clip: " in line)
    assert Path(clip.strip()).is_file()
    assert "restock_alert" in outputs
