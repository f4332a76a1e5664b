"""The learning-rate finder: an exponential sweep that leaves the model as it found it,
and the ``finetunekit lr-find`` command's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from finetunekit import RecipeError
from finetunekit.core.lr_find import suggest
from finetunekit.testing import snapshot_variables, tiny_data, tiny_recipe


def test_the_sweep_is_exponential_and_restores_every_weight(engine, monkeypatch):
    recipe = tiny_recipe(strategy="full", batch_size=4)
    built = {}
    original = engine.build

    def build(r):
        built["run"] = original(r)
        built["before"] = snapshot_variables(built["run"].model.weights)
        return built["run"]

    monkeypatch.setattr(engine, "build", build)
    finding = engine.lr_find(recipe, data=tiny_data(n=8), start=1e-4, end=1.0, steps=5)
    assert finding.learning_rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0][:len(finding.losses)])
    assert len(finding.losses) == len(finding.smoothed) >= 2
    assert finding.stage == "full"
    after = snapshot_variables(built["run"].model.weights)
    assert all(np.array_equal(built["before"][k], after[k]) for k in built["before"])
    assert getattr(built["run"].model, "optimizer", None) is None  # nothing compiled left


def test_the_suggestion_is_the_steepest_descent_before_the_minimum():
    rates = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    losses = [2.0, 1.9, 1.2, 0.9, 0.8, 5.0]  # falls fastest between 1e-4 and 1e-3
    assert suggest(rates, losses) in (1e-4, 1e-3)
    assert suggest(rates[:2], losses[:2]) is None


def test_bad_sweep_bounds_are_refused(engine):
    with pytest.raises(RecipeError, match="0 < start < end"):
        engine.lr_find(tiny_recipe(), data=tiny_data(), start=1.0, end=1e-3)


def test_the_command_writes_json_and_png(tmp_path):
    from finetunekit.cli import make_cli

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(tiny_recipe(data={"source": "digits", "classes": [0, 1],
                                        "train_per_class": 4, "validation_per_class": 1}
                                  ).to_toml())
    result = CliRunner().invoke(make_cli(entry_points=False), [
        "lr-find", str(recipe), "--out", str(tmp_path / "out"), "--steps", "6",
        "--start", "1e-5", "--end", "1"])
    assert result.exit_code == 0, result.output
    assert "suggested learning rate" in result.output
    found = json.loads((tmp_path / "out" / "lr_find.json").read_text())
    assert found["suggested_learning_rate"] > 0 and len(found["curve"]) >= 3
    assert (tmp_path / "out" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
