"""Fault injection across processes: two runs on one folder, and ``kill -9`` at moments
sampled over a whole run, start to finish.

Each kill must end in one of two ways: ``resume`` (or ``run``, when nothing was written
yet) produces weights bit-identical to a run never interrupted, or the folder had no
checkpoint and the run started over from its recipe (also bit-identical). A kill after
the model (the last file written) is saved leaves a complete folder, which resume calls
finished. Slow: every case starts TensorFlow in subprocesses.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from finetunekit import Engine
from finetunekit.core.run_folder import LOCK_FILE
from tests.faults.conftest import assert_refused, cli, fingerprint, write_recipe

pytestmark = pytest.mark.slow

KILLS = 4
"""Kill moments sampled over the reference run's wall time (seeded): a handful covers
start-up, building, training before and after the first checkpoint, and the final save,
while the suite stays a few minutes on two cores."""


def _weights(run_dir: Path) -> list[np.ndarray]:
    model = Engine(entry_points=False).load_model(run_dir / "model.keras")
    return [w.numpy() for w in model.weights]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the two-stage recipe: its weights and its wall time."""
    folder = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    done = cli("run", write_recipe(folder, "run", epochs=4, strategy="probe_then_tune", keep=3))
    assert done.returncode == 0, done.stderr[-2000:]
    return _weights(folder / "run"), time.monotonic() - start


def _wait_for(path: Path, process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_two_runs_on_one_folder_one_wins_the_other_exits_2_before_training(tmp_path):
    recipe = write_recipe(tmp_path, epochs=1)
    run_dir = tmp_path / "recipe"
    release = tmp_path / "release"
    first = cli("run", recipe, env={"FINETUNEKIT_TEST_KILL": f"hold:{release}"}, background=True)
    try:
        _wait_for(run_dir / "recipe.toml", first)  # written just before the run starts
        before = fingerprint(run_dir)
        for args in (["run", recipe], ["run", recipe, "--overwrite"], ["resume", run_dir]):
            second = cli(*args)
            assert_refused(second, "in use by another finetunekit process", f"pid {first.pid}",
                           "run:")
            assert fingerprint(run_dir) == before
    finally:
        release.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert (run_dir / "model.keras").is_file() and not (run_dir / LOCK_FILE).exists()


def test_kill_9_anywhere_ends_bit_identical_or_in_a_clean_start_over(tmp_path, reference):
    expected, seconds = reference
    rng = random.Random(12)  # one moment in each of KILLS equal slices of the run
    moments = [rng.uniform(k / KILLS, (k + 1) / KILLS) * seconds for k in range(KILLS)]
    outcomes = []
    for i, moment in enumerate(moments):
        folder = tmp_path / f"kill{i}"
        folder.mkdir()
        recipe = write_recipe(folder, "run", epochs=4, strategy="probe_then_tune", keep=3)
        run_dir = folder / "run"
        process = cli("run", recipe, background=True)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        if process.returncode == 0:
            outcomes.append("finished before the kill")
            continue
        assert process.returncode == -signal.SIGKILL
        if (run_dir / "recipe.toml").exists() or (run_dir / "checkpoints").exists():
            after = cli("resume", run_dir)
            outcome = ("start-over" if "starting the run over" in after.stderr else "resumed")
        else:  # killed before anything was written: the same command again
            after = cli("run", recipe)
            outcome = "start-over"
        if "is finished" in after.stderr:  # killed after the model, the last file, was saved
            outcome = "complete before the kill"
            assert all((run_dir / name).is_file() for name in ("history.json", "plan.json"))
        else:
            assert after.returncode == 0, (moment, after.stderr[-3000:])
        for want, got in zip(expected, _weights(run_dir)):
            np.testing.assert_array_equal(got, want)
        leftovers = [p.name for p in run_dir.rglob(".*")]
        assert leftovers == [], leftovers  # temporary files and the lock are gone
        outcomes.append(outcome)
    print(f"kill -9 at {[round(m, 1) for m in moments]} s of {seconds:.1f} s: {outcomes}")
    assert set(outcomes) <= {"resumed", "start-over", "complete before the kill",
                             "finished before the kill"}
