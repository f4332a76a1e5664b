"""``finetunekit bench``: rows, files, the plain baseline's fairness, bad input, and the
accuracy options. Tiny settings (VGG16 at 32x32, a step or two); no speed is asserted."""

from __future__ import annotations

import json

import keras
import pytest
from click.testing import CliRunner

from finetunekit import Engine
from finetunekit.bench.report import write
from finetunekit.bench.throughput import (
    Config,
    build_baseline,
    build_finetunekit,
)
from finetunekit.cli import main
from finetunekit.core.errors import PersistenceError
from finetunekit.plugins.strategies.freezing import trainable_param_count
from finetunekit.core.precision import precision_scope

THROUGHPUT_FIELDS = ("backbone", "strategy", "batch", "precision", "images_per_s",
                     "baseline_images_per_s", "ratio", "plain_uint8_images_per_s",
                     "ratio_uint8", "device")


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *args])


@pytest.mark.jax
def test_throughput_rows_files_and_ratio(tmp_path):
    out = tmp_path / "results"
    result = _bench("--strategies", "feature_extraction", "--image-size", "32", "--batch-size", "2",
                    "--steps", "1", "--repeats", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    (row,) = saved["throughput"]
    for field in THROUGHPUT_FIELDS:
        assert field in row, field
    assert row["backend"] == keras.backend.backend()
    assert row["ratio"] == pytest.approx(row["images_per_s"] / row["baseline_images_per_s"], rel=0.01)
    assert row["ratio_uint8"] == pytest.approx(
        row["images_per_s"] / row["plain_uint8_images_per_s"], rel=0.01)
    assert "ratio" in result.output
    assert "| feature_extraction |" in (out / "bench.md").read_text(encoding="utf-8")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("strategy", ["feature_extraction", "partial", "full", "two_stage"])
def test_baseline_trains_what_finetunekit_trains(strategy):
    config = Config(strategy=strategy, image_size=32)
    model, stage = build_finetunekit(Engine(entry_points=False), config)
    for uint8 in (False, True):
        baseline = build_baseline(config, stage.trainable, uint8=uint8)
        assert trainable_param_count(baseline) == trainable_param_count(model)
        assert baseline.inputs[0].dtype == ("uint8" if uint8 else "float32")


def test_partial_baseline_is_the_seeds_layers_15_on():
    config = Config(strategy="partial", image_size=32)
    _, stage = build_finetunekit(Engine(entry_points=False), config)
    base = build_baseline(config, stage.trainable).layers[0]
    assert [layer.trainable for layer in base.layers] == [i >= 15 for i in range(len(base.layers))]


def _conv_dtype(model) -> str:
    # the base, not the preprocessing (a small model of core Keras layers too)
    base = next(layer for layer in model.layers
                if any(inner.name == "block1_conv1" for inner in getattr(layer, "layers", ())))
    return base.get_layer("block1_conv1").compute_dtype


def test_both_sides_train_in_the_precision_asked_and_the_policy_is_put_back():
    before = keras.config.dtype_policy().name
    config = Config(strategy="full", precision="mixed_bfloat16", image_size=32)
    model, stage = build_finetunekit(Engine(entry_points=False), config)
    with precision_scope(config.precision):
        baseline = build_baseline(config, stage.trainable)
    assert _conv_dtype(model) == _conv_dtype(baseline) == "bfloat16"
    assert keras.config.dtype_policy().name == before


@pytest.mark.jax
@pytest.mark.parametrize("option, value, named", [
    ("--backbones", "vgg166", "vgg16"),
    ("--strategies", "parital", "partial"),
    ("--precision", "mixed_bfloat61", "mixed_bfloat16"),
])
def test_bad_names_exit_2_naming_the_closest(tmp_path, option, value, named):
    result = _bench(option, value, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert value in result.output and f"Did you mean '{named}'" in result.output
    assert not (tmp_path / "r").exists()


def test_accuracy_refuses_a_too_small_image_before_training_anything(tmp_path):
    result = _bench("--accuracy", "--image-size", "16", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2, result.output
    assert "at least 32x32" in result.output and "Traceback" not in result.output
    assert "source vgg16" not in result.output  # refused before the source run
    assert not (tmp_path / "r").exists()


def test_out_never_overwrites_results(tmp_path):
    (tmp_path / "bench.md").write_text("mine", encoding="utf-8")
    result = _bench("--out", str(tmp_path))
    assert result.exit_code == 2 and "does not overwrite" in result.output
    assert (tmp_path / "bench.md").read_text(encoding="utf-8") == "mine"
    with pytest.raises(PersistenceError, match="already holds bench.md"):
        write({"command": "x", "backend": "b", "device": "d", "throughput": []}, tmp_path)
    file = tmp_path / "a-file"
    file.write_text("mine", encoding="utf-8")
    assert _bench("--out", str(file)).exit_code == 2
    assert file.read_text(encoding="utf-8") == "mine"


END_TO_END_FIELDS = ("source", "engine_images_per_s", "plain_images_per_s", "ratio",
                     "ratio_min", "ratio_max", "between_epochs_s", "run_folder", "device")


@pytest.mark.jax
def test_end_to_end_rows_and_files(tmp_path):
    out = tmp_path / "results"
    result = _bench("--end-to-end", "--sources", "stream", "--image-size", "32",
                    "--batch-size", "2", "--steps", "1", "--epochs", "1", "--repeats", "1",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    (row,) = saved["end_to_end"]
    for field in END_TO_END_FIELDS:
        assert field in row, field
    assert (row["strategy"], row["source"], row["run_folder"]) == ("full", "stream", True)
    assert row["ratio"] == pytest.approx(
        row["engine_images_per_s"] / row["plain_images_per_s"], rel=0.01)
    assert "Engine.run" in result.output
    assert "| vgg16 | full | stream | yes |" in (out / "bench.md").read_text(encoding="utf-8")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--sources", "strem"], "Did you mean 'stream'"),
    (["--strategies", "two_stage"], "one-stage strategies; 'two_stage' trains in 2 stages"),
    (["--accuracy"], "two benchmarks; pass one of them"),
])
def test_end_to_end_refusals_exit_2_before_timing(tmp_path, args, message):
    result = _bench("--end-to-end", *args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "r").exists()
