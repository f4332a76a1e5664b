"""The command line: the seed's numbers through describe, a run folder, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from finetunekit import Recipe
from finetunekit.cli import main

SEED_RECIPE = """
[backbone]
name = "vgg16"
weights = "none"
input_shape = [150, 150, 3]

[strategy]
name = "{strategy}"
{extra}

[head]
pooling = "flatten"
hidden = [256]
classes = 1

[optimizer]
name = "rmsprop"
learning_rate = 2e-5
"""


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("strategy, extra, trainable", [
    ("feature_extraction", "", 2_097_665),
    ("partial", "unfreeze_from = 15", 9_177_089),
    ("full", "", 16_812_353),
])
def test_describe_reports_the_seeds_parameter_counts(tmp_path, strategy, extra, trainable):
    result = _invoke("describe", _write(tmp_path, SEED_RECIPE.format(strategy=strategy, extra=extra)), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["total_params"] == 16_812_353
    assert info["trainable_params"] == trainable
    assert info["non_trainable_params"] == 16_812_353 - trainable
    assert [stage["trainable_params"] for stage in info["plan"]] == [trainable]
    rows = {row["name"]: row for row in info["layers"]}
    assert rows["block5_conv1"]["trainable"] is (strategy != "feature_extraction")
    assert rows["block4_conv3"]["trainable"] is (strategy == "full")
    assert rows["block1_conv1"]["params"] == 1_792


def test_set_overrides_a_key(tmp_path):
    recipe = _write(tmp_path, SEED_RECIPE.format(strategy="feature_extraction", extra=""))
    result = _invoke("describe", recipe, "--json", "--set", "strategy.name=partial",
                     "--set", "strategy.unfreeze_from=15")
    assert json.loads(result.output)["trainable_params"] == 9_177_089


def test_list_names_each_components_plugin():
    result = _invoke("list", "--json")
    assert result.exit_code == 0
    rows = {(r["kind"], r["name"]): r["plugin"] for r in json.loads(result.output)}
    assert rows[("strategy", "partial")] == "finetunekit.plugins.strategies.basic"
    assert rows[("backbone", "vgg16")] == "finetunekit.plugins.backbones"
    assert ("backbone", "efficientnetv2s") in rows


def test_list_table_keeps_brackets_in_descriptions():
    result = CliRunner().invoke(main, ["list"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert 'pip install "finetunekit[keras-cv]"' in result.output


def _image_folder(root: Path, classes=("cats", "dogs"), per_class=4, size=40) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + 7, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg")
    return root


def test_run_writes_the_run_folder_and_refuses_to_overwrite_it(tmp_path):
    train = _image_folder(tmp_path / "data" / "train")
    validation = _image_folder(tmp_path / "data" / "validation", per_class=2)
    out = tmp_path / "runs" / "cats_dogs"
    recipe = _write(tmp_path, f"""
[backbone]
name = "vgg16"
weights = "none"
input_shape = [32, 32, 3]
[strategy]
name = "partial"
unfreeze_from = 15
[head]
classes = 1
[data]
train = "{train}"
validation = "{validation}"
batch_size = 4
[train]
epochs = 2
[save]
path = "{out}"
""")
    result = _invoke("run", recipe)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "curves.png", "history.csv", "history.json", "model.keras", "plan.json",
        "recipe.toml", "report.json", "report.md"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0001.ckpt", "epoch-0002.ckpt"]
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history[0])
    assert history[0]["learning_rate"] == pytest.approx(1e-4)
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,stage")
    assert Recipe.from_toml(out / "recipe.toml") == Recipe.from_toml(recipe)
    assert json.loads((out / "plan.json").read_text())["class_names"] == ["cats", "dogs"]

    before = (out / "model.keras").read_bytes()
    again = _invoke("run", recipe)
    assert again.exit_code == 2
    assert "not empty" in again.output and "--overwrite" in again.output
    assert (out / "model.keras").read_bytes() == before


@pytest.mark.parametrize("text, fragment", [
    ('[backbone]\nname = "vgg16"\n[stratgy]\nname = "full"\n', "Did you mean 'strategy'?"),
    ('[backbone]\nname = "vgg16"\nweights = "none"\n[strategy]\nname = "parital"\n[head]\nclasses = 1\n',
     "Did you mean 'partial'?"),
    ('[backbone]\nname = "vgg16"\nweights = "none"\n[strategy]\nname = "partial"\nunfreze_from = 15\n'
     '[head]\nclasses = 1\n', "Did you mean 'unfreeze_from'?"),
    ('[backbone]\nname = "vgg16"\ninput_shape = "big"\n', "backbone.input_shape"),
    ('[backbone]\nname = "xception"\nweights = "none"\ninput_shape = [64, 64, 3]\n[head]\nclasses = 1\n',
     "at least 71x71"),
    ('[backbone\nname = "vgg16"\n', "not valid TOML"),
    ('[backbone]\nname = "vgg16"\nweights = "/no/such/file.h5"\n[head]\nclasses = 1\n', "no such file"),
    ('[backbone]\nname = "vgg16"\nweights = "none"\n[head]\nclasses = 0\n', "head.classes"),
])
def test_bad_recipes_exit_2_with_a_clear_message(tmp_path, text, fragment):
    result = _invoke("describe", _write(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_missing_recipe_and_bad_override_and_bad_plugin(tmp_path):
    assert "Recipe file not found" in _invoke("describe", tmp_path / "nope.toml").output
    recipe = _write(tmp_path, SEED_RECIPE.format(strategy="full", extra=""))
    bad_set = _invoke("describe", recipe, "--set", "strategy")
    assert bad_set.exit_code == 2 and "section.key=value" in bad_set.output
    bad_plugin = _invoke("describe", recipe, "--plugin", "no_such_module_xyz")
    assert bad_plugin.exit_code == 2 and "no_such_module_xyz" in bad_plugin.output


def test_real_process_exit_code_and_no_traceback(tmp_path):
    recipe = _write(tmp_path, '[backbone]\nname = "vgg_16"\n[head]\nclasses = 1\n')
    proc = subprocess.run([sys.executable, "-m", "finetunekit", "describe", recipe],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Did you mean 'vgg16'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plugin_option_registers_a_module(tmp_path, monkeypatch):
    import types

    from finetunekit import Plan, Stage, Strategy, hookimpl

    module = types.ModuleType("cli_test_plugin")

    @hookimpl
    def finetunekit_register_strategies(register):
        register(Strategy(name="head_only_cli", plan=lambda context: Plan(
            (Stage("head_only_cli", context.epochs, frozenset(), context.learning_rate),))))

    module.finetunekit_register_strategies = finetunekit_register_strategies
    monkeypatch.setitem(sys.modules, "cli_test_plugin", module)
    recipe = _write(tmp_path, SEED_RECIPE.format(strategy="head_only_cli", extra=""))
    without = _invoke("describe", recipe)
    assert without.exit_code == 2 and "Unknown strategy" in without.output
    result = _invoke("describe", recipe, "--json", "--plugin", "cli_test_plugin")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["trainable_params"] == 2_097_665


def test_retrain_on_new_data_from_a_run_folder(tmp_path):
    first = _image_folder(tmp_path / "first")
    more = _image_folder(tmp_path / "more", per_class=3)
    out = tmp_path / "runs" / "first"
    recipe = _write(tmp_path, f"""
[backbone]
name = "vgg16"
weights = "none"
input_shape = [32, 32, 3]
[head]
classes = 1
[data]
train = "{first}"
batch_size = 4
[train]
epochs = 1
[save]
path = "{out}"
""")
    assert _invoke("run", recipe).exit_code == 0
    result = _invoke("retrain", out, "--data", more, "--strategy", "partial",
                     "--set", "strategy.unfreeze_blocks=1", "--epochs", "1")
    assert result.exit_code == 0, result.output
    again = Path(f"{out.resolve()}-retrained")
    assert (again / "model.keras").exists()
    assert Recipe.from_toml(again / "recipe.toml")["strategy"] == {
        "name": "partial", "unfreeze_blocks": 1, "train_bn": False}
    assert Recipe.from_toml(again / "recipe.toml")["data"]["train"] == str(more)
    refused = _invoke("retrain", out, "--data", more)
    assert refused.exit_code == 2 and "not empty" in refused.output
