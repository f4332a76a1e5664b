"""Fault injection, in process: bad input, a held or unwritable folder, a full disk, no
memory, crafted files, hostile file names, broken plugins.

Each case asserts the exit code, a message naming the problem, no traceback, and that
nothing the user had changed. The run-folder cases share one finished run, trained once.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from finetunekit import Strategy, hookimpl
from finetunekit.core.checkpoint import list_checkpoints, read_checkpoint
from finetunekit.core.folder_lock import hold_run_folder
from finetunekit.core.run_folder import LOCK_FILE
from tests.faults.conftest import assert_refused, fingerprint, invoke, write_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run folder (checkpoints after epochs 1 and 2); copy it."""
    folder = tmp_path_factory.mktemp("finished")
    result = invoke("run", write_recipe(folder, "run"))
    assert result.exit_code == 0, result.output
    return folder / "run"


def _copy(finished: Path, tmp_path: Path, *, model: bool = True) -> Path:
    run_dir = shutil.copytree(finished, tmp_path / "run")
    if not model:
        (run_dir / "model.keras").unlink()  # as if killed before the final save
    return run_dir


# -- recipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("override, fragment", [
    ("train.epoch=50", "Did you mean 'epochs'"),
    ("optimizer.learning_rate=nan", "optimizer.learning_rate"),
    ("optimizer.learning_rate=inf", "optimizer.learning_rate"),
    ("train.seed=4294967296", "train.seed"),
    ("data.batch_size=0", "data.batch_size"),
    ("strategy.name='parital'", "Did you mean 'partial'"),
])
def test_bad_recipe_keys_are_refused_before_anything_is_written(tmp_path, recipe, override, fragment):
    before = fingerprint(tmp_path)
    assert_refused(invoke("run", recipe, "--set", override), fragment)
    assert fingerprint(tmp_path) == before


def test_partial_without_keys_has_a_default_scope_on_any_backbone(tmp_path):
    recipe = write_recipe(tmp_path, strategy="partial")
    result = invoke("describe", recipe, "--json", "--set", "backbone.name='mobilenetv2'")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plan"][0]["trained_layers"]


# -- the run folder: held, unwritable, edited, finished, crafted ---------------------------


def test_a_held_run_folder_is_refused_naming_the_holder(tmp_path, recipe):
    run_dir = tmp_path / "recipe"
    with hold_run_folder(run_dir, "test-holder"):
        before = fingerprint(tmp_path)
        for args in (["run", recipe], ["resume", run_dir]):
            message = assert_refused(invoke(*args), "in use by another finetunekit process",
                                     f"pid {os.getpid()}", "test-holder")
            assert "started" in message
        assert fingerprint(tmp_path) == before
    assert not run_dir.exists()  # created by the holder, released empty: removed


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, finished, caplog):
    run_dir = _copy(finished, tmp_path, model=False)
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "h", "started": "then",
                                                 "command": "run: killed"}))
    result = invoke("resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "taking over the lock of pid 999999" in caplog.text
    assert not (run_dir / LOCK_FILE).exists()


@pytest.mark.parametrize("how", ["under a file", "read-only"])
def test_an_unwritable_save_path_is_found_before_training(tmp_path, recipe, monkeypatch, how):
    epochs = []

    class Count:
        @hookimpl
        def finetunekit_epoch_end(self, epoch):
            epochs.append(epoch)

    if how == "under a file":
        (tmp_path / "file").write_text("mine")
        target = tmp_path / "file" / "run"
    else:
        target = tmp_path / "ro"
        target.mkdir()
        real_open = os.open

        def read_only(path, flags, *args):
            if str(path).startswith(str(target)) and flags & os.O_CREAT:
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", read_only)
    before = fingerprint(tmp_path)
    result = invoke("run", recipe, "--set", f"save.path='{target}'", plugins=[Count()])
    assert_refused(result, "cannot be written, checked before training", str(target))
    assert epochs == [] and fingerprint(tmp_path) == before


def test_resume_refuses_an_edited_recipe_naming_the_keys(tmp_path, finished):
    run_dir = _copy(finished, tmp_path, model=False)
    text = (run_dir / "recipe.toml").read_text()
    (run_dir / "recipe.toml").write_text(text.replace("epochs = 2", "epochs = 5")
                                         .replace("learning_rate = 0.001", "learning_rate = 0.01"))
    before = fingerprint(tmp_path)
    assert_refused(invoke("resume", run_dir), "differs from the recipe of checkpoint",
                   "train.epochs: checkpoint 2, recipe.toml 5", "optimizer.learning_rate")
    assert fingerprint(tmp_path) == before


def test_resume_of_a_finished_run_says_so(tmp_path, finished):
    run_dir = _copy(finished, tmp_path)
    before = fingerprint(tmp_path)
    assert_refused(invoke("resume", run_dir), "is finished")
    assert fingerprint(tmp_path) == before


def test_resume_without_checkpoint_starts_over_and_removes_only_our_temporary_files(
        tmp_path, finished, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(finished / "recipe.toml", run_dir)
    ours = [run_dir / ".recipe.toml.ab12cd34.tmp", run_dir / ".model.keras.1234abcd.tmp.keras",
            run_dir / "checkpoints" / ".epoch-0001.ckpt.k2j3h4g5.tmp"]
    theirs = [run_dir / "notes.txt", run_dir / ".mine.tmp", run_dir / "checkpoints" / "keep.me"]
    for path in ours + theirs:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 10)
    result = invoke("resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "starting the run over from that recipe" in caplog.text
    assert not any(p.exists() for p in ours) and all(p.read_bytes() == b"x" * 10 for p in theirs)
    assert [p.name for p in list_checkpoints(run_dir)] == ["epoch-0001.ckpt", "epoch-0002.ckpt"]
    assert not (run_dir / LOCK_FILE).exists()


@pytest.mark.parametrize("field, value", [("model_paths", 5), ("epoch", "1"), ("history", {"a": 1})])
def test_a_checkpoint_with_malformed_metadata_names_the_field(tmp_path, finished, field, value):
    run_dir = _copy(finished, tmp_path, model=False)
    newest = list_checkpoints(run_dir)[-1]
    with np.load(newest) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["meta"]))
    meta[field] = value
    arrays["meta"] = np.array(json.dumps(meta))
    with open(newest, "wb") as handle:
        np.savez(handle, **arrays)
    before = fingerprint(tmp_path)
    assert_refused(invoke("resume", run_dir), "the checkpoint's metadata is malformed", f"'{field}'")
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize("module, name, shown", [
    ("os", "system", "os.system"),
    ("builtins", "eval", "builtins.eval"),
])
def test_a_keras_file_naming_a_foreign_callable_says_what_is_wrong(tmp_path, finished, module, name, shown):
    run_dir = _copy(finished, tmp_path)
    model = run_dir / "model.keras"
    with zipfile.ZipFile(model) as source:
        items = [(item, source.read(item.filename)) for item in source.infolist()]
    with zipfile.ZipFile(model, "w") as crafted:
        for item, data in items:
            if item.filename == "config.json":
                config = json.loads(data)
                layer = config["config"]["layers"][1]
                layer.update(module=module, class_name=name, registered_name=None)
                data = json.dumps(config).encode()
            crafted.writestr(item, data)
    images = _images(tmp_path / "images")
    before = fingerprint(tmp_path)
    message = assert_refused(invoke("retrain", run_dir, "--data", images, "--out", tmp_path / "out"),
                             shown, "not a Keras layer, model or function")
    assert "Lambda" not in message
    assert fingerprint(tmp_path) == before


# -- the machine: disk full, no memory ------------------------------------------------------


def test_a_full_disk_at_a_checkpoint_is_not_blamed_on_the_plugin(tmp_path, recipe, monkeypatch):
    from finetunekit.core import checkpoint

    real_write = checkpoint.atomic_write

    def full(path, content):
        if path.name == "epoch-0002.ckpt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, content)

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    message = assert_refused(invoke("run", recipe), "no space left on the device", "intact")
    assert "Plugin '" not in message and "failed" not in message
    run_dir = tmp_path / "recipe"
    assert read_checkpoint(run_dir / "checkpoints" / "epoch-0001.ckpt").epoch == 1
    monkeypatch.undo()
    result = invoke("resume", run_dir)  # space freed: nothing was lost
    assert result.exit_code == 0, result.output
    assert (run_dir / "model.keras").is_file()


def _resource_exhausted():
    return type("ResourceExhaustedError", (Exception,), {})("OOM when allocating tensor")


@pytest.mark.parametrize("where", ["build", "training"])
def test_out_of_memory_says_what_to_reduce(tmp_path, recipe, monkeypatch, where):
    from finetunekit.core import engine

    class Greedy:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            def plan(context):
                raise MemoryError()
            register(Strategy(name="greedy", plan=plan))

    args = ["run", recipe]
    if where == "build":
        args += ["--set", "strategy.name='greedy'"]
    else:
        monkeypatch.setattr(engine, "fit_epoch", lambda *a, **k: (_ for _ in ()).throw(_resource_exhausted()))
    message = assert_refused(invoke(*args, plugins=[Greedy()]), "Out of memory", "data.batch_size",
                             "backbone.input_shape")
    assert "Plugin '" not in message


# -- data: hostile names, links, folders named like images -----------------------------------


def _images(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / label / f"{i}.png")
    return root


def test_hostile_file_names_links_and_folders_are_reported_escaped(tmp_path, recipe):
    images = _images(tmp_path / "images")
    (images / "a" / "evil\nError: all fine\x1b[2J.png").write_bytes(b"not an image")
    (images / "a" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (images / "b" / "album.jpg").mkdir()
    before = fingerprint(tmp_path)
    result = invoke("run", recipe, "--strict", "--set", "data.source='folder'",
                    "--set", f"data.train='{images}'")
    message = assert_refused(result, "3 unusable file(s)", "evil\\nError: all fine.png",
                             "broken symbolic link", "not a file (a folder)")
    assert "\x1b" not in result.stderr and "\nError: all fine" not in result.stderr
    assert message.startswith("Error: ") and sum(
        line.startswith("Error: ") for line in result.stderr.splitlines()) == 1
    assert fingerprint(tmp_path) == before


# -- plugins ---------------------------------------------------------------------------------


def test_a_plugin_raising_in_its_component_is_named(tmp_path, recipe):
    class Broken:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            def plan(context):
                raise RuntimeError("boom")
            register(Strategy(name="broken", plan=plan))

    before = fingerprint(tmp_path)
    assert_refused(invoke("run", recipe, "--set", "strategy.name='broken'", plugins=[Broken()]),
                   "Strategy 'broken'", "plan()", "boom")
    assert fingerprint(tmp_path) == before


def test_an_observer_raising_mid_run_is_named_and_the_folder_stays_resumable(tmp_path, recipe):
    class Observer:
        @hookimpl
        def finetunekit_epoch_end(self, epoch):
            if epoch == 2:
                raise ValueError("observer bug")

    assert_refused(invoke("run", recipe, plugins=[Observer()]), "failed in hook", "observer bug")
    run_dir = tmp_path / "recipe"
    assert not (run_dir / LOCK_FILE).exists()
    assert invoke("resume", run_dir).exit_code == 0


def test_a_plugin_module_exiting_at_import_is_a_named_error(tmp_path, recipe, monkeypatch):
    (tmp_path / "exiting_fault_plugin.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_refused(invoke("describe", recipe, "--plugin", "exiting_fault_plugin"),
                   "exiting_fault_plugin")
