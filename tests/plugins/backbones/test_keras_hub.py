"""The ``keras_hub`` backbone on tiny presets built from the classes and saved to folders
(conftest.py): a ViT (2 transformer layers, hidden 32, patch 8 at 32x32) and a ResNet
(2 stages).

Every strategy passes :func:`finetunekit.testing.check_strategy` on both; a trained model
saves and loads with identical predictions (a LoRA run, merged on export, and a
feature-extraction run); without keras-hub the errors name the extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from finetunekit import Engine, RecipeError, WeightsError
from finetunekit.testing import check_backbone, check_strategy, tiny_data, tiny_recipe

keras_hub = pytest.importorskip("keras_hub")


EAGER = keras.backend.backend() == "tensorflow"


@pytest.fixture
def vit_preset(hub_preset):
    """A folder holding a tiny ViT and its image converter (scale to [-1, 1])."""
    return hub_preset("vit")


@pytest.fixture
def resnet_preset(hub_preset):
    """A folder holding a tiny two-stage ResNet, without an image converter."""
    return hub_preset("resnet")


def hub(preset, **keys):
    return {"name": "keras_hub", "preset": preset, "weights": "imagenet", **keys}


def test_vit_blocks_are_its_transformer_layers(engine, vit_preset):
    described = engine.describe(tiny_recipe(hub(vit_preset), "full"))
    assert described["blocks"] == [["images", "rescaling", "vit_patching_and_embedding"],
                                   ["transformer_block_1"], ["transformer_block_2", "ln"]]
    names = [row["name"] for row in described["layers"]]
    assert names[-3:] == ["cls_token", "cls_pool", "predictions"]  # pooling: auto -> cls


def test_resnet_blocks_are_its_stages(engine, resnet_preset):
    blocks = engine.describe(tiny_recipe(hub(resnet_preset)))["blocks"]
    assert [block[0] for block in blocks] == ["images", "stack0_block0_1_conv",
                                             "stack1_block0_1_pad"]


def test_the_resnet_passes_check_backbone(resnet_preset):
    # check_backbone expects a feature map, so it checks CNN presets; a ViT outputs tokens
    report = check_backbone("keras_hub", {"preset": resnet_preset},
                            eager=EAGER)
    assert report.size == 32


def test_the_base_takes_uint8_and_rescales_with_the_converter(engine, vit_preset):
    run = engine.build(tiny_recipe(hub(vit_preset)))
    rescaling = run.base.get_layer("rescaling")
    assert isinstance(rescaling, keras.layers.Rescaling)
    assert (rescaling.scale, rescaling.offset) == (pytest.approx(1 / 127.5), -1.0)
    assert run.base.inputs[0].dtype == "uint8"


def test_preset_weights_load_and_none_means_random(engine, vit_preset):
    saved = keras_hub.models.Backbone.from_preset(vit_preset)
    kernel = saved.get_layer("vit_patching_and_embedding").weights[1].numpy()
    loaded = engine.build(tiny_recipe(hub(vit_preset))).base
    random = engine.build(tiny_recipe(hub(vit_preset, weights="none"))).base
    np.testing.assert_array_equal(loaded.get_layer("vit_patching_and_embedding").weights[1], kernel)
    assert not np.array_equal(random.get_layer("vit_patching_and_embedding").weights[1], kernel)


STRATEGIES = [
    ("feature_extraction", {}),
    ("partial", {"unfreeze_blocks": 1}),
    ("full", {}),
    ("two_stage", {"unfreeze_blocks": 1}),
    ("gradual", {}),
    ("discriminative", {}),
    ("l2sp", {}),
    ("bitfit", {}),
    ("norm_only", {}),
    ("lora", {"rank": 2}),
    ("llrd", {"decay": 0.5}),
]
MULTI_STAGE = {"two_stage": 2, "gradual": 3}
NO_BIASES = {("bitfit", "resnet")}  # KerasHub's ResNet convolutions have no bias (BatchNorm follows)


@pytest.mark.parametrize("family", ["vit", "resnet"])
@pytest.mark.parametrize("name, params", STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_every_strategy_keeps_its_contract(request, family, name, params):
    preset = request.getfixturevalue(f"{family}_preset")
    if (name, family) in NO_BIASES:
        with pytest.raises(RecipeError, match="trains bias terms.*have none"):
            Engine(entry_points=False).build(tiny_recipe(hub(preset), name))
        return
    check_strategy(name, params, backbones=[hub(preset)], epochs=MULTI_STAGE.get(name, 1),
                   engine=Engine(entry_points=False), eager=EAGER)


def test_lora_adapts_attention_query_and_value_inside_the_blocks(engine, vit_preset):
    run = engine.build(tiny_recipe(hub(vit_preset), {"name": "lora", "rank": 2}))
    adapted = {v.path.rsplit("/", 2)[-2] for v in run.base.trainable_weights}
    assert adapted == {"query", "value"}
    blocks = {v.path.split("/")[1] for v in run.base.trainable_weights}
    assert blocks == {"transformer_block_1", "transformer_block_2"}


def test_norm_only_trains_the_layer_norms_inside_the_blocks(engine, vit_preset):
    run = engine.build(tiny_recipe(hub(vit_preset), "norm_only"))
    paths = sorted(v.path for v in run.base.trainable_weights)
    assert paths and all(p.rsplit("/", 1)[-1] in ("gamma", "beta") for p in paths)
    assert {p.split("/")[-2] for p in paths} == {"ln_1", "ln_2", "ln"}


def test_mean_tokens_and_cls_pool_the_tokens(engine, vit_preset):
    for pooling, first in [("mean_tokens", "patch_tokens"), ("cls", "cls_token")]:
        run = engine.build(tiny_recipe(hub(vit_preset), head={"pooling": pooling}))
        assert run.head.layer.layers[0].name == first


def test_a_map_pooling_on_tokens_says_what_fits(engine, vit_preset):
    with pytest.raises(RecipeError, match="outputs tokens.*cls, mean_tokens"):
        engine.build(tiny_recipe(hub(vit_preset), head={"pooling": "avg"}))


def test_a_wrong_input_shape_names_the_preset_shape(engine, vit_preset):
    with pytest.raises(RecipeError, match=r"input_shape = \[32, 32, 3\]"):
        engine.build(tiny_recipe(hub(vit_preset, input_shape=[64, 64, 3])))


def test_an_unknown_preset_name_suggests_a_known_one(engine):
    with pytest.raises(RecipeError, match="Did you mean 'vit_base_patch16_224_imagenet'"):
        engine.build(tiny_recipe(hub("vit_base_patch16_224_imagenet_x")))


def test_a_preset_name_offline_fails_fast_with_the_copy_advice(engine, monkeypatch, tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    host, port = listener.getsockname()
    monkeypatch.setenv("FINETUNEKIT_WEIGHTS_HOST", f"{host}:{port}")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="copy the folder here"):
        engine.build(tiny_recipe(hub("vit_base_patch16_224_imagenet", download_timeout=2.0)))
    listener.close()


def test_without_keras_hub_building_names_the_extra(engine, vit_preset, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if not installed
    with pytest.raises(RecipeError, match=r"needs the keras-hub package.*finetunekit\[hub\]"):
        engine.build(tiny_recipe(hub(vit_preset)))


@pytest.mark.slow  # a fresh Python process: over 15 s on two shared cores
def test_without_keras_hub_loading_names_the_extra(engine, vit_preset, tmp_path):
    # in a fresh process: here keras-hub's classes are registered with Keras already
    run = engine.build(tiny_recipe(hub(vit_preset)))
    path = engine.save_model(run.model, tmp_path / "model.keras", "keras")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["keras_hub"] = None  # as if not installed
        from finetunekit import Engine, PersistenceError
        try:
            Engine(entry_points=False).load_model({str(path)!r})
        except PersistenceError as exc:
            print("LOAD:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300).stdout
    assert "LOAD:" in out and 'pip install "finetunekit[hub]"' in out, out


@pytest.mark.slow  # over 15 s on two shared cores
def test_an_interrupted_lora_run_resumes_to_the_weights_of_an_uninterrupted_one(vit_preset, tmp_path):
    recipe = tiny_recipe(hub(vit_preset), {"name": "lora", "rank": 2}, epochs=2,
                         save={"path": str(tmp_path / "run"), "keep_checkpoints": 2})
    data = tiny_data(n=8)
    run = Engine(entry_points=False).run(recipe, data=data)
    whole = [np.array(w) for w in run.model.weights]
    # the exported model (adapters merged into the kernels) predicts as the trained one
    loaded = Engine(entry_points=False).load_model(tmp_path / "run" / "model.keras")
    np.testing.assert_allclose(loaded.predict(data.train[0], verbose=0),
                               run.model.predict(data.train[0], verbose=0), atol=1e-6)
    for later in sorted((tmp_path / "run" / "checkpoints").iterdir())[1:]:
        later.unlink()  # as if killed after the first epoch
    (tmp_path / "run" / "model.keras").unlink()
    resumed = Engine(entry_points=False).resume(tmp_path / "run", data=data)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for a, b in zip(whole, resumed.model.weights):
        np.testing.assert_array_equal(a, np.array(b))


@pytest.mark.slow  # over 15 s on two shared cores
def test_a_saved_run_retrains_with_another_strategy(vit_preset, tmp_path):
    engine = Engine(entry_points=False)
    recipe = tiny_recipe(hub(vit_preset), "feature_extraction",
                         save={"path": str(tmp_path / "first")})
    first = engine.run(recipe, data=tiny_data())
    trained_head = [np.array(w) for w in first.head.layer.weights]
    loaded = Engine(entry_points=False).load_model(tmp_path / "first" / "model.keras")
    x = tiny_data().train[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), first.model.predict(x, verbose=0),
                               atol=1e-6)
    again = engine.retrain(tmp_path / "first", data=tiny_data(), overrides=[
        "strategy.name=llrd", f"save.path={tmp_path / 'second'}"])
    assert len(again.history) == 1 and (tmp_path / "second" / "model.keras").is_file()
    # it started from the first run's weights: its head moved from the trained one
    # by one epoch's steps, not from a fresh initialisation
    moved = max(float(np.max(np.abs(np.array(w) - t)))
                for w, t in zip(again.head.layer.weights, trained_head))
    assert moved < 0.05
    assert again.plan.stages[0].name == "llrd"
