"""The example plugin package, installed the way a user installs it.

``examples/finetunekit-example-strategy`` is pip-installed into a temporary folder; with
that folder on ``sys.path`` its ``finetunekit`` entry point is visible to
``importlib.metadata``, so a fresh :class:`finetunekit.Engine` loads it like any
third-party plugin, and ``Engine(entry_points=False)`` does not.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import finetunekit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetunekit-example-strategy"
MODULE = "finetunekit_example_strategy"
ENTRY_POINT = "example_strategy"  # the plugin's name when loaded from its entry point
LAST_TWO_WEIGHTED = {"block5_conv2", "block5_conv3"}  # VGG16's last two layers with weights


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Pip-install the example into a temporary folder and put that folder on sys.path."""
    pytest.importorskip("setuptools", reason="building the example needs setuptools (--no-build-isolation)")
    root = tmp_path_factory.mktemp("example_plugin")
    # a setuptools build writes build/ and *.egg-info beside the sources; keep them out of the repo
    source = shutil.copytree(EXAMPLE, root / "source")
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
               "--no-index", "--disable-pip-version-check", "--quiet",
               "--target", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"pip install of the example failed:\n{result.stdout}\n{result.stderr}")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()


@pytest.fixture
def example_engine(installed):
    """A fresh engine that loads entry points, the installed example's included."""
    return finetunekit.Engine()


def make_recipe(**strategy):
    return finetunekit.Recipe.from_dict({
        "backbone": {"name": "vgg16", "weights": "none", "input_shape": [32, 32, 3]},
        "head": {"classes": 1},
        "strategy": {"name": "last_conv_layers", **strategy},
        "train": {"epochs": 1},
        "data": {"batch_size": 4},
    })


def test_engine_lists_the_strategy_with_the_plugin_name(example_engine):
    rows = {(row["kind"], row["name"]): row for row in example_engine.components()}
    row = rows[("strategy", "last_conv_layers")]
    assert row["plugin"] == ENTRY_POINT
    assert row["params"]["n"]["default"] == 2


def test_describe_trains_exactly_the_last_two_weighted_layers(example_engine):
    recipe = make_recipe(n=2)
    info = example_engine.describe(recipe)

    trainable = {row["name"] for row in info["layers"] if row["part"] == "base" and row["trainable"]}
    assert trainable == LAST_TWO_WEIGHTED
    assert info["plan"][0]["trainable_layers"] == sorted(LAST_TWO_WEIGHTED)

    run = example_engine.build(recipe)
    expected = sum(run.base.get_layer(name).count_params() for name in LAST_TWO_WEIGHTED)
    expected += run.head.layer.count_params()
    assert info["trainable_params"] == expected


def test_one_training_step_changes_only_the_trained_layers(example_engine):
    before = {}

    class Snapshot:
        @finetunekit.hookimpl
        def finetunekit_run_start(self, run):
            for layer in run.base.layers:
                before[layer.name] = [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]

    example_engine.register(Snapshot())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1, 0, 1])

    run = example_engine.run(make_recipe(n=2), data=finetunekit.Data(train=(x, y)), save=False)

    assert len(run.history) == 1
    after = {layer.name: [keras.ops.convert_to_numpy(w) for w in layer.weights]
             for layer in run.base.layers}
    moved = {name: [not np.array_equal(old, new) for old, new in zip(before[name], after[name], strict=True)]
             for name in before}
    # every other base weight is bit-identical; both trained layers' kernel and bias moved
    assert {name for name, flags in moved.items() if any(flags)} == LAST_TWO_WEIGHTED
    assert all(all(moved[name]) for name in LAST_TWO_WEIGHTED)


def test_n_out_of_range_is_a_recipe_error(example_engine):
    with pytest.raises(finetunekit.RecipeError, match=r"strategy\.n.*Received: strategy\.n=999"):
        example_engine.describe(make_recipe(n=999))
    with pytest.raises(finetunekit.RecipeError, match=r"strategy\.n"):
        example_engine.describe(make_recipe(n=0))


def test_engine_without_entry_points_does_not_see_it(installed):
    engine = finetunekit.Engine(entry_points=False)
    assert "last_conv_layers" not in engine.catalogue.names("strategy")
    with pytest.raises(finetunekit.UnknownComponentError, match="last_conv_layers"):
        engine.describe(make_recipe())


def test_explicit_registration_uses_the_module_name(installed):
    engine = finetunekit.Engine(plugins=[MODULE], entry_points=False)
    assert engine.catalogue.plugin_of("strategy", "last_conv_layers") == MODULE


@pytest.mark.slow  # a second Python process that loads TensorFlow: ~10 s
def test_cli_lists_it(installed):
    paths = [str(installed), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    result = subprocess.run([sys.executable, "-m", "finetunekit", "list", "--json"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    found = [(row["kind"], row["plugin"]) for row in rows if row["name"] == "last_conv_layers"]
    assert found == [("strategy", ENTRY_POINT)]


def test_example_passes_the_conformance_helper(example_engine):
    """The helper outside authors use proves the same semantics on VGG16 and ResNet50."""
    from finetunekit.testing import check_strategy

    # eagerly under TensorFlow: the same step without tracing ResNet50's training graph
    reports = check_strategy("last_conv_layers", {"n": 2}, engine=example_engine,
                             eager=keras.backend.backend() == "tensorflow")
    assert [len(report.changed) for report in reports] == [2, 1]  # ResNet's last two: conv + frozen BN


def test_example_adds_a_format_with_a_clear_error_without_its_dependencies(example_engine, tmp_path):
    from finetunekit import PersistenceError
    from finetunekit.testing import tiny_recipe

    rows = {(row["kind"], row["name"]): row for row in example_engine.components()}
    assert rows[("format", "onnx")]["plugin"] == ENTRY_POINT
    from finetunekit.testing import tiny_data

    model = example_engine.run(tiny_recipe(), data=tiny_data(), save=False).model
    try:
        import onnx  # noqa: F401
    except ImportError:
        with pytest.raises(PersistenceError, match="needs Keras's ONNX exporter"):
            example_engine.save_model(model, tmp_path / "m.onnx", "onnx")
        assert not list(tmp_path.iterdir())  # nothing half-written left behind
    else:
        assert example_engine.save_model(model, tmp_path / "m.onnx", "onnx").stat().st_size > 0
    (tmp_path / "x.onnx").write_bytes(b"onnx")
    with pytest.raises(PersistenceError, match="export for serving"):
        example_engine.load_model(tmp_path / "x.onnx")
