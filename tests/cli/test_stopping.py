"""What the command line says when a run stops early or its loss breaks."""

from __future__ import annotations

import json

from click.testing import CliRunner

from finetunekit.cli import main
from tests.helpers.recipes import write_recipe


def _recipe(tmp_path, learning_rate=1e-3):
    return str(write_recipe(tmp_path, "run", epochs=4, learning_rate=learning_rate))


def test_run_prints_the_early_stop_and_the_run_folder_records_it(tmp_path):
    result = CliRunner().invoke(main, [
        "run", _recipe(tmp_path),
        "--set", 'train.early_stopping={monitor = "loss", min_delta = 100.0, patience = 1}'])
    assert result.exit_code == 0, result.output
    assert ("stopped at epoch 2: early stopping: loss did not improve for 1 epoch(s) (best "
            in result.stdout)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["stopped"]["epoch"] == 2 and (tmp_path / "run" / "model.keras").is_file()


def test_a_non_finite_loss_exits_2_with_what_to_lower(tmp_path):
    result = CliRunner().invoke(main, ["run", _recipe(tmp_path, learning_rate=1e300)])
    assert result.exit_code == 2, result.output
    assert "The training loss became" in result.stderr and "optimizer.learning_rate" in result.stderr
    assert "Traceback" not in result.output
    assert not list((tmp_path / "run").glob("model.*"))
