"""Shared pieces of the fault-injection suite: a tiny recipe on disk, the command line in
process and in a subprocess, and a fingerprint of a folder.

Every fault test asserts the same four things (:func:`assert_refused`): the exit code,
a message that names the problem, no traceback, and (with :func:`fingerprint`) that
nothing the user had was changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers.recipes import write_recipe  # noqa: F401 (the suite's tests use it)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


def invoke(*args, plugins=()):
    """The command line in this process (fast); ``result.stderr`` holds the message.

    `plugins` are objects with hookimpls, given to the command as ``--plugin NAME`` (a
    name in ``sys.modules`` for the call), as a user gives a module.
    """
    from finetunekit.cli.main import make_cli

    names = [f"fault_plugin_{id(plugin)}" for plugin in plugins]
    sys.modules.update(zip(names, plugins))
    extra = [part for name in names for part in ("--plugin", name)]
    try:
        return CliRunner().invoke(make_cli(entry_points=False), [str(a) for a in args] + extra)
    finally:
        for name in names:
            sys.modules.pop(name, None)


def cli(*args, env: dict | None = None, **popen) -> subprocess.Popen | subprocess.CompletedProcess:
    """``python -m finetunekit ARGS --plugin kill_plugin`` in a subprocess (the test
    plugin of tests/helpers: kill points, the probe_then_tune strategy, holds)."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")]))
    full.pop("FINETUNEKIT_TEST_KILL", None)
    full.update(env or {})
    command = [sys.executable, "-m", "finetunekit", *map(str, args), "--plugin", "kill_plugin"]
    if popen.pop("background", False):
        return subprocess.Popen(command, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, capture_output=True, text=True, env=full, timeout=600,
                          check=False)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` (names relative, symlinks not followed) and a hash of its
    bytes: equal fingerprints mean nothing there changed."""
    if not folder.exists():
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = "link:" + os.readlink(path)
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "dir"
    return found


def assert_refused(result, *fragments: str, code: int = 2) -> str:
    """The command ended with `code`, a one-line message holding every fragment, and no
    traceback; returns the message."""
    stderr = result.stderr
    output = getattr(result, "output", "") or getattr(result, "stdout", "")
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert exit_code == code, (exit_code, stderr[-3000:], getattr(result, "exception", None))
    assert "Traceback" not in stderr + output, stderr[-3000:]
    if hasattr(result, "exception"):
        assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert errors, stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[-1], (fragment, errors[-1])
    return errors[-1]


@pytest.fixture
def recipe(tmp_path) -> Path:
    """The tiny recipe of :func:`write_recipe`, saving to ``tmp_path / 'recipe'``."""
    return write_recipe(tmp_path)
