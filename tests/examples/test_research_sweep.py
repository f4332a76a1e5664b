"""examples/research_sweep.py runs with its --tiny settings and prints its table."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "research_sweep.py"


@pytest.mark.slow  # four tiny runs, about 25-35 s on two shared cores
def test_the_research_sweep_runs_tiny(capsys):
    module = runpy.run_path(str(SCRIPT), run_name="research_sweep")
    rows = module["main"](["--tiny"])
    assert [(r["strategy"], r["seed"]) for r in rows] == [
        ("feature_extraction", 0), ("feature_extraction", 1), ("partial", 0), ("partial", 1)]
    assert all(0.0 <= r["best_val_accuracy"] <= 1.0 and r["best_epoch"] == 1 for r in rows)
    printed = capsys.readouterr().out
    assert "best val acc" in printed and "partial" in printed
