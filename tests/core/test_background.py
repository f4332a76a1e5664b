"""Epoch checkpoints are written off the training thread, with the guarantees of a write
in place: the snapshot is the epoch end's state, and the last good checkpoint is on disk
when a run returns or fails."""

from __future__ import annotations

import errno
import platform
import threading
import time

import numpy as np
import pytest

from finetunekit import Engine, PersistenceError, hookimpl
from finetunekit.core import checkpoint
from finetunekit.core.background import BackgroundWrites
from finetunekit.core.checkpoint import read_checkpoint
from finetunekit.testing import tiny_data, tiny_recipe


def _recipe(tmp_path, epochs):
    return tiny_recipe(strategy="full", epochs=epochs, batch_size=2,
                       save={"path": str(tmp_path / "run"), "keep_checkpoints": 5})


class Watcher:
    """Copies the weights at each epoch end (after the checkpoint plugin submitted its
    write) and notes which checkpoint files exist when the next epoch's first step starts."""

    def __init__(self, folder):
        self.folder = folder
        self.weights: dict[int, list[np.ndarray]] = {}
        self.on_disk_at_next_epoch: dict[int, bool] = {}

    @hookimpl(trylast=True)
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        self.weights[epoch] = [np.array(v) for v in run.model.weights]

    @hookimpl
    def finetunekit_batch_start(self, run, stage, batch):
        done = max(self.weights, default=0)
        if batch == 0 and done and done not in self.on_disk_at_next_epoch:
            path = self.folder / "checkpoints" / f"epoch-{done:04d}.ckpt"
            self.on_disk_at_next_epoch[done] = path.exists()


@pytest.fixture
def slow_disk(monkeypatch):
    """Each checkpoint write waits until released (or 20 s), as a slow fsync would."""
    release = threading.Event()
    real = checkpoint.atomic_write

    def slow(path, content):
        release.wait(20)
        return real(path, content)

    monkeypatch.setattr(checkpoint, "atomic_write", slow)
    return release


@pytest.mark.jax
def test_training_goes_on_while_the_checkpoint_is_written_and_it_holds_the_epoch_end(
        tmp_path, slow_disk):
    watcher = Watcher(tmp_path / "run")

    class Release:
        @hookimpl
        def finetunekit_epoch_end(self, run, stage, epoch, logs):
            if epoch == 2:
                slow_disk.set()  # epoch 2 trained while epoch 1 was still being written

    run = Engine([watcher, Release()], entry_points=False).run(
        _recipe(tmp_path, 3), data=tiny_data(n=8))
    # the next epoch started before the file was on disk: the write did not block it
    assert watcher.on_disk_at_next_epoch[1] is False
    for epoch in (1, 2, 3):
        saved = read_checkpoint(tmp_path / "run" / "checkpoints" / f"epoch-{epoch:04d}.ckpt")
        assert saved.epoch == epoch
        # bit-identical to the weights at that epoch's end, though written later
        for value, (_, array) in zip(watcher.weights[epoch], saved.model):
            np.testing.assert_array_equal(value, array)
    assert not np.array_equal(watcher.weights[1][0], watcher.weights[3][0])  # it trained
    assert run.writes.pending is False


def test_a_failed_run_leaves_its_last_checkpoint_on_disk(tmp_path, monkeypatch):
    real = checkpoint.atomic_write

    def slow(path, content):
        time.sleep(1.0)
        return real(path, content)

    monkeypatch.setattr(checkpoint, "atomic_write", slow)

    class Fails:
        @hookimpl
        def finetunekit_batch_start(self, run, stage, batch):
            if run.epoch == 2 and batch == 1:
                raise KeyboardInterrupt  # Ctrl-C during epoch 2

    with pytest.raises(KeyboardInterrupt):
        Engine([Fails()], entry_points=False).run(_recipe(tmp_path, 3), data=tiny_data(n=8))
    # right after the exception, no waiting: epoch 1's checkpoint is complete
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-0001.ckpt").epoch == 1


def test_writes_happen_in_order_one_at_a_time():
    writes, order, running = BackgroundWrites(), [], []

    def write(n):
        def run():
            running.append(n)
            assert len(running) == 1, running  # never two at once
            time.sleep(0.05)
            order.append(n)
            running.remove(n)
        return run

    for n in range(4):
        writes.submit(write(n), what=f"file {n}")
    writes.wait()
    assert order == [0, 1, 2, 3]
    assert not writes.pending


def test_a_failed_write_is_raised_on_the_next_submit_naming_the_file():
    writes = BackgroundWrites()

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    writes.submit(full, what="run/checkpoints/epoch-0002.ckpt")
    with pytest.raises(PersistenceError, match=r"epoch-0002\.ckpt.*no space left"):
        writes.submit(lambda: None, what="run/checkpoints/epoch-0003.ckpt")
    writes.wait()  # the error was raised once, not again


def test_a_failed_write_is_logged_not_raised_while_another_error_goes_up(caplog):
    writes = BackgroundWrites()

    def broken():
        raise ValueError("cannot pickle")

    writes.submit(broken, what="run/checkpoints/epoch-0001.ckpt")
    writes.wait(quiet=True)
    assert "epoch-0001.ckpt" in caplog.text and "cannot pickle" in caplog.text


def test_memory_a_write_freed_is_handed_back_after_every_write(monkeypatch):
    from finetunekit.core import background

    events = []
    monkeypatch.setattr(background, "release_freed_memory", lambda: events.append("trim"))
    writes = BackgroundWrites()
    writes.submit(lambda: events.append("write 1"), what="a")
    writes.submit(lambda: 1 / 0, what="b")  # a failed write frees its copy too
    writes.wait(quiet=True)
    assert events == ["write 1", "trim", "trim"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trims():
    from finetunekit.core.background import release_freed_memory

    assert release_freed_memory() is True
