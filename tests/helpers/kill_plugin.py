"""A plugin the resume tests load with --plugin: a two-stage strategy, and a SIGKILL of
its own process at the moment named by FINETUNEKIT_TEST_KILL:

* ``after-epoch:N``: right after epoch N's checkpoint is in place;
* ``mid-write:N``: halfway through writing epoch N's checkpoint (a truncated temp file);
* ``before-rename:N``: epoch N's checkpoint written in full but not yet renamed;
* ``final-save``: while the final model file is being moved into place;
* ``hold:PATH``: no kill; the run waits at its start, holding its run folder, until PATH
  exists (at most 5 minutes), for the concurrent-run tests.

The faults are injected where the process meets the file system (``numpy.savez``,
``os.replace``), not inside finetunekit's modules: the test does not depend on how the
package is laid out, only on the files it writes. This module is imported only in the
subprocess the test kills.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from finetunekit import Plan, Stage, Strategy, hookimpl

KIND, _, WHEN = os.environ.get("FINETUNEKIT_TEST_KILL", "").partition(":")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _epoch_file(epoch: str) -> str:
    return f"epoch-{int(epoch):04d}.ckpt"


def _name(file) -> str:
    """The path `file` (a path or an open file) writes to."""
    if hasattr(file, "fileno"):
        return os.readlink(f"/proc/self/fd/{file.fileno()}")
    return str(file)


if KIND == "mid-write":
    real_savez = np.savez

    def savez(handle, *args, **kwargs):
        if _epoch_file(WHEN) in _name(handle):
            handle.write(b"PK\x03\x04 half a checkpoint")
            handle.flush()
            _die()
        return real_savez(handle, *args, **kwargs)

    np.savez = savez

if KIND == "before-rename":
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(_epoch_file(WHEN)):
            _die()
        return real_replace(src, dst)

    os.replace = replace

if KIND == "final-save":
    real_save_replace = os.replace

    def final_replace(src, dst):
        if str(dst).endswith("model.keras"):
            _die()
        return real_save_replace(src, dst)

    os.replace = final_replace


@hookimpl
def finetunekit_run_start(run):
    if KIND == "hold":
        deadline = time.monotonic() + 300
        while not os.path.exists(WHEN) and time.monotonic() < deadline:
            time.sleep(0.1)


@hookimpl(trylast=True)
def finetunekit_epoch_end(run, epoch):
    if KIND == "after-epoch" and epoch == int(WHEN):
        _die()


@hookimpl
def finetunekit_register_strategies(register):
    def plan(context):
        return Plan((
            Stage("probe", 2, frozenset(), context.learning_rate),
            Stage("tune", 2, frozenset(context.layer_names[-4:]), context.learning_rate / 10),
        ))

    register(Strategy(name="probe_then_tune", plan=plan, description="test: 2 + 2 epochs"))
