"""Resume after a kill: the same final weights as a run never interrupted, and no corrupt
file under a final name, whenever the process dies.

The kill tests run the CLI in subprocesses (two per case, each loading TensorFlow), so
they are marked ``slow``; the clear error on a folder without checkpoints stays in the
default suite, in process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finetunekit import Engine
from tests.helpers.recipes import write_recipe
from finetunekit.core.checkpoint import list_checkpoints, read_checkpoint

TESTS = Path(__file__).resolve().parents[1] / "helpers"


def _recipe(tmp_path: Path, name: str) -> Path:
    return write_recipe(tmp_path, name, epochs=4, strategy="probe_then_tune", keep=3)


def _cli(*args, kill: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.pop("FINETUNEKIT_TEST_KILL", None)
    if kill:
        env["FINETUNEKIT_TEST_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "finetunekit", *map(str, args), "--plugin", "kill_plugin"],
                          capture_output=True, text=True, env=env, timeout=600)


def _weights(run_dir: Path) -> list[np.ndarray]:
    model = Engine(entry_points=False).load_model(run_dir / "model.keras")
    return [w.numpy() for w in model.weights]


def _assert_no_corrupt_final_files(run_dir: Path) -> None:
    for path in list_checkpoints(run_dir):
        read_checkpoint(path)  # raises on a truncated or foreign file
    model = run_dir / "model.keras"
    if model.exists():
        Engine(entry_points=False).load_model(model)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    result = _cli("run", _recipe(tmp_path, "reference"))
    assert result.returncode == 0, result.stderr
    return _weights(tmp_path / "reference")


@pytest.mark.slow
@pytest.mark.parametrize("kill", [
    "after-epoch:2",     # at the stage boundary
    "mid-write:3",       # a half-written checkpoint in the second stage
    "before-rename:2",   # epoch 2's checkpoint complete but never renamed
    "final-save",        # while the final model moves into place
])
def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path, uninterrupted, kill):
    recipe = _recipe(tmp_path, "cut")
    killed = _cli("run", recipe, kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = tmp_path / "cut"
    _assert_no_corrupt_final_files(run_dir)
    resumed = _cli("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for expected, got in zip(uninterrupted, _weights(run_dir)):
        np.testing.assert_array_equal(got, expected)
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_resume_without_checkpoints_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from finetunekit.cli import main

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["resume", str(tmp_path / "empty")])
    assert result.exit_code == 2, result.output
    assert "No checkpoint in" in result.stderr and "Traceback" not in result.output


def test_resume_of_a_finished_run_says_so_and_leaves_it_alone(tmp_path):
    from finetunekit import Engine, PersistenceError
    from finetunekit.testing import tiny_data, tiny_recipe

    engine = Engine(entry_points=False)
    recipe = tiny_recipe(epochs=1, save={"path": str(tmp_path / "run")})
    engine.run(recipe, data=tiny_data())
    model = tmp_path / "run" / "model.keras"
    before = model.stat().st_mtime_ns, model.read_bytes()
    with pytest.raises(PersistenceError, match="is finished: it trained all 1 epoch"):
        engine.resume(tmp_path / "run", data=tiny_data())
    assert (model.stat().st_mtime_ns, model.read_bytes()) == before


@pytest.mark.slow
def test_resume_with_early_stopping_makes_the_same_stop_bit_identically(tmp_path):
    import keras

    from finetunekit.testing import tiny_data, tiny_recipe

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt  # after epoch 2's checkpoint: early stopping waits 1

    def recipe(name):  # the loss never improves by 100: stop after 1 + patience epochs
        return tiny_recipe(epochs=6, head={"hidden": [8], "dropout": 0.5},
                           train={"seed": 3, "early_stopping": {
                               "monitor": "loss", "min_delta": 100.0, "patience": 2}},
                           save={"path": str(tmp_path / name), "keep_checkpoints": 1})

    data = tiny_data()
    reference = Engine(entry_points=False).run(recipe("reference"), data=data)
    with pytest.raises(KeyboardInterrupt):
        Engine(entry_points=False).run(recipe("cut"), data=data, callbacks=[Interrupt()])
    assert read_checkpoint(list_checkpoints(tmp_path / "cut")[-1]).state["callbacks"] == {
        "train.early_stopping": {"wait": 1, "best": reference.history[0]["loss"],
                                 "best_epoch": 1, "best_weights": None}}
    resumed = Engine(entry_points=False).resume(tmp_path / "cut", data=data)
    assert reference.stopped["epoch"] == resumed.stopped["epoch"] == 3
    assert resumed.stopped == reference.stopped and resumed.history == reference.history
    for expected, got in zip(_weights(tmp_path / "reference"), _weights(tmp_path / "cut")):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(Exception, match="is finished: it stopped at epoch 3 \\(early stopping"):
        Engine(entry_points=False).resume(tmp_path / "cut", data=data)
