"""Every run with a folder writes curves.png, report.md and report.json (plugins/lifecycle/report.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from finetunekit.plugins.lifecycle import report
from finetunekit.results.plots import BOUNDARY_STYLE, curves_figure
from finetunekit.testing import tiny_data, tiny_recipe


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    from finetunekit import Engine

    path = tmp_path_factory.mktemp("report") / "run"
    recipe = tiny_recipe(strategy={"name": "two_stage", "unfreeze_blocks": 1}, epochs=2,
                         save={"path": str(path)})
    return Engine(entry_points=False).run(recipe, data=tiny_data(8))


def test_run_folder_has_curves_and_report(two_stage_run):
    path = two_stage_run.path
    info = json.loads((path / "report.json").read_text())
    assert info["finished"] and info["epochs"] == 2 and info["strategy"] == "two_stage"
    assert [s["name"] for s in info["plan"]] == ["linear_probe", "fine_tune"]
    assert info["plan"][0]["trainable_params"] < info["plan"][1]["trainable_params"]
    assert info["images_per_second"] > 0 and info["wall_seconds"] > 0
    text = (path / "report.md").read_text()
    for words in ("# Run report (finished)", "strategy: two_stage", "| linear_probe | 1 |",
                  "| val_loss |", "images/s", "![training curves](curves.png)"):
        assert words in text
    pixels = np.asarray(Image.open(path / "curves.png").convert("L"))
    assert pixels.shape[1] >= 1000 and (pixels < 128).mean() > 0.01  # drawn on, not blank


def test_curves_figure_shows_both_splits_stages_and_rate(two_stage_run):
    figure = curves_figure(two_stage_run.history, "tiny")
    loss, metric, rate = figure.axes
    assert loss.get_title() == "Loss per epoch" and metric.get_title() == "accuracy per epoch"
    assert [line.get_label() for line in loss.lines if not line.get_label().startswith("_")] == [
        "loss (training)", "loss (validation)"]
    assert sorted(line.get_label() for line in metric.lines if line.get_linestyle() != ":") == [
        "accuracy (training)", "accuracy (validation)"]
    boundaries = [line for line in loss.lines if line.get_linestyle() == ":"
                  and line.get_color() == BOUNDARY_STYLE["color"]]
    assert len(boundaries) == 1 and boundaries[0].get_xdata()[0] == 1.5  # fine_tune from epoch 2
    assert {t.get_text() for t in loss.texts} == {"linear_probe", "fine_tune"}
    assert rate.get_ylabel() == "learning rate" and rate.lines[0].get_ydata()[0] == pytest.approx(1e-3)
    assert loss.get_xlabel() == "epoch" and figure.get_suptitle() == "tiny"


def test_a_run_without_folder_writes_nothing(tmp_path, monkeypatch):
    from finetunekit import Engine

    monkeypatch.chdir(tmp_path)
    Engine(entry_points=False).run(tiny_recipe(), data=tiny_data(4))
    assert not list(tmp_path.iterdir())


def test_plot_redraws_are_budgeted(two_stage_run):
    curves = two_stage_run.path / "curves.png"
    curves.unlink()
    clock = two_stage_run.report_clock
    clock.drawn_at, clock.draw_seconds = float("inf"), 1.0  # just drawn, slowly
    report.write_report(two_stage_run, finished=False)
    assert not curves.exists()  # not redrawn
    report.write_report(two_stage_run, finished=True)  # the end always redraws
    assert curves.is_file()
