"""train.distribution: data-parallel training gives the weights of one device with the
same global batch (TensorFlow's MirroredStrategy over a CPU split in two, Keras's
DataParallel over two JAX host devices), every strategy and the feature cache work under
it, resume after a kill works, and a choice that does not fit the backend is refused.

The devices must be set up before the backend starts, so each training runs in its own
process (tests/helpers/distributed_worker.py) and writes its final weights to a .npz.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from finetunekit.core.errors import RecipeError
from finetunekit.testing import tiny_data, tiny_recipe

TESTS = Path(__file__).resolve().parents[1] / "helpers"
ROOT = TESTS.parents[1]
TOLERANCE = 1e-4  # float reordering of the all-reduce; a training step moves weights ~1e-3


def _train(out: Path, *args: str, backend: str = "tensorflow", kill: str | None = None,
           check: bool = True) -> dict[str, np.ndarray] | subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.pop("FINETUNEKIT_TEST_KILL", None)
    if kill:
        env["FINETUNEKIT_TEST_KILL"] = kill
    result = subprocess.run([sys.executable, str(TESTS / "distributed_worker.py"), str(out),
                             *args], capture_output=True, text=True, env=env, timeout=600)
    if not check:
        return result
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as archive:
        return dict(archive)


def _weights(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if "/" in k}


def _largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.mark.slow
def test_mirrored_on_two_cpus_gives_the_weights_of_one_device_with_the_same_global_batch(tmp_path):
    mirrored = _train(tmp_path / "m.npz", "--devices", "2", "--set", "train.distribution=mirrored")
    single = _train(tmp_path / "s.npz")
    per_replica = _train(tmp_path / "p.npz", "--set", "data.batch_size=2")
    assert int(mirrored["replicas"]) == 2 and bool(mirrored["scope_left"])
    assert _largest_difference(_weights(mirrored), _weights(single)) < TOLERANCE
    # data.batch_size is the global batch: a per-replica reading would match this run
    assert _largest_difference(_weights(mirrored), _weights(per_replica)) > 10 * TOLERANCE


@pytest.mark.slow
def test_strategies_and_feature_cache_work_under_mirrored(tmp_path):
    strategies = ["two_stage", "lora", "l2sp"]  # two_stage's probe stage uses the cache
    args = [arg for name in strategies for arg in ("--strategy", name)]
    mirrored = _train(tmp_path / "m.npz", "--devices", "2", "--set", "train.distribution=mirrored",
                      *args)
    single = _train(tmp_path / "s.npz", *args)
    assert int(mirrored["cache_computed"]) > 0
    for name in strategies:
        got = {k: v for k, v in _weights(mirrored).items() if k.startswith(f"{name}/")}
        expected = {k: v for k, v in _weights(single).items() if k.startswith(f"{name}/")}
        assert got and _largest_difference(got, expected) < TOLERANCE, name


@pytest.mark.slow
def test_data_parallel_on_two_jax_devices_gives_the_weights_of_one_device(tmp_path):
    args = ("--epochs", "1")
    parallel = _train(tmp_path / "d.npz", "--devices", "2", "--set",
                      "train.distribution=data_parallel", *args, backend="jax")
    single = _train(tmp_path / "s.npz", *args, backend="jax")
    assert int(parallel["replicas"]) == 2 and bool(parallel["scope_left"])
    assert _largest_difference(_weights(parallel), _weights(single)) < TOLERANCE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["--dataset", "--folder", "--arrays"])  # tf.data, files, arrays
def test_two_jax_processes_on_loopback_agree_with_each_other_and_with_one(tmp_path, source):
    # a tf.data.Dataset is sharded by Keras; files and arrays by finetunekit (each process
    # reads its part of every global batch), which Keras refused from several processes
    address = f"127.0.0.1:{_free_port()}"
    args = ["--epochs", "1", source, "--set", "train.distribution=data_parallel"]
    env = dict(os.environ, KERAS_BACKEND="jax", KERAS_DISTRIBUTION_NUM_PROCESSES="2",
               KERAS_DISTRIBUTION_JOB_ADDRESSES=f"{address},{address}",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    workers = [subprocess.Popen([sys.executable, str(TESTS / "distributed_worker.py"),
                                 str(tmp_path / f"w{i}.npz"), *args],
                                env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    first, second = (dict(np.load(tmp_path / f"w{i}.npz")) for i in range(2))
    assert int(first["replicas"]) == 2
    assert _largest_difference(_weights(first), _weights(second)) == 0.0
    one = _train(tmp_path / "one.npz", "--epochs", "1", source, backend="jax")
    assert _largest_difference(_weights(first), _weights(one)) < TOLERANCE
    if source == "--folder":  # each process read its half of every batch, not all of it
        probe = 8  # first_images reads up to 8 files to call the model once
        assert int(one["rows_read"]) - probe == 16
        assert int(first["rows_read"]) - probe == int(second["rows_read"]) - probe == 8


@pytest.mark.slow
def test_sigkill_then_resume_under_mirrored_matches_the_uninterrupted_run(tmp_path):
    common = ("--devices", "2", "--set", "train.distribution=mirrored", "--plugin", "kill_plugin",
              "--strategy", "probe_then_tune")
    whole = _train(tmp_path / "whole.npz", *common, "--save", str(tmp_path / "whole"))
    killed = _train(tmp_path / "cut.npz", *common, "--save", str(tmp_path / "cut"),
                    kill="after-epoch:3", check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _train(tmp_path / "resumed.npz", *common, "--resume", str(tmp_path / "cut"))
    assert int(resumed["replicas"]) == 2
    for key, expected in _weights(whole).items():
        np.testing.assert_allclose(resumed[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.jax
def test_a_distribution_of_the_other_backend_is_refused(engine):
    other = "data_parallel" if keras.backend.backend() == "tensorflow" else "mirrored"
    with pytest.raises(RecipeError, match=rf'"{other}" runs on the .* KERAS_BACKEND='):
        engine.run(tiny_recipe(train={"distribution": other}), data=tiny_data(), save=False)


def test_multi_worker_without_tf_config_is_refused_naming_it(engine, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(RecipeError, match=r'"multi_worker" needs TF_CONFIG.*Received no TF_CONFIG'):
        engine.validate(tiny_recipe(train={"distribution": "multi_worker"}), data=False)


@pytest.mark.slow
@pytest.mark.parametrize("source", [[], ["--folder"]])  # arrays; files streamed from a folder
def test_two_tensorflow_workers_on_loopback_agree_with_each_other_and_with_one(tmp_path, source):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    # two_stage: a frozen-base stage through the feature cache, then the whole model
    strategy = ["--strategy", "two_stage", *source]
    args = [*strategy, "--set", "train.distribution=multi_worker", "--save", str(tmp_path / "run")]
    workers = [subprocess.Popen(
        [sys.executable, str(TESTS / "distributed_worker.py"), str(tmp_path / f"w{i}.npz"), *args],
        env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": i}})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    first, second = (dict(np.load(tmp_path / f"w{i}.npz")) for i in range(2))
    assert int(first["replicas"]) == int(second["replicas"]) == 2
    assert _largest_difference(_weights(first), _weights(second)) == 0.0
    one = _train(tmp_path / "one.npz", *strategy)
    assert _largest_difference(_weights(first), _weights(one)) < TOLERANCE
    # one worker (the chief, worker 0) wrote the run folder; a second writer would have
    # found the folder in use and failed
    assert (tmp_path / "run" / "model.keras").is_file()
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 2
