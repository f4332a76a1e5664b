"""KerasHub families beyond ViT and ResNet, each a tiny preset loaded from its folder:
blocks are its transformer layers (or stages), the head pools what it outputs, ``lora``
adapts exactly its attention query and value projections, and ``lora`` and
``norm_only`` pass the conformance helper (test_keras_hub.py runs every strategy on the
ViT and the ResNet).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import Data, Engine, PersistenceError
from finetunekit.core.weight_matching import copy_weights
from finetunekit.testing import check_strategy, tiny_recipe

pytest.importorskip("keras_hub")

from finetunekit.plugins.strategies.lora import lora_layers  # noqa: E402

EAGER = keras.backend.backend() == "tensorflow"

FAMILIES = {
    # family: (first layer of each block after the stem, first layer of the head)
    "dinov2": (["layers_0", "layers_1"], "cls_token"),
    "deit": (["transformer_block_1", "transformer_block_2"], "cls_token"),
    "clip": (["clip_vision_encoder_encoder_block_0", "clip_vision_encoder_encoder_block_1"],
             "cls_token"),
    "siglip": (["sig_lip_vision_encoder_encoder_block_0", "sig_lip_vision_encoder_encoder_block_1"],
               "predictions"),  # pooled by its own attention-pooling head
    "swin": (["stage_0", "stage_1"], "avg_pool"),  # tokens given back as their grid
    "mit": (["patch_and_embed_0", "patch_and_embed_1"], "avg_pool"),
}

PROJECTIONS = ("_query_dense", "_value_dense", "q", "v", "qkv")
"""Attributes holding attention query and value projections: Keras's MultiHeadAttention,
MiT's attention, Swin's fused query-key-value."""


def projections(model) -> set[int]:
    layers = model._flatten_layers(include_self=False, recursive=True)
    return {id(getattr(layer, name)) for layer in layers for name in PROJECTIONS
            if isinstance(getattr(layer, name, None), keras.layers.Layer)}


def hub(preset):
    return {"name": "keras_hub", "preset": preset, "weights": "imagenet"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_blocks_head_and_lora_targets(hub_preset, family):
    starts, head_first = FAMILIES[family]
    run = Engine(entry_points=False).build(
        tiny_recipe(hub(hub_preset(family)), {"name": "lora", "rank": 2}, classes=3))
    assert [block[0] for block in run.blocks[1:]] == starts
    assert run.blocks[0][:2] == ["images", "rescaling"]
    assert run.head.layer.layers[0].name == head_first
    adapted = {id(layer) for layer in lora_layers(run.base)}
    assert adapted and adapted == projections(run.base)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("strategy, params", [("lora", {"rank": 2}), ("norm_only", {})],
                         ids=["lora", "norm_only"])
def test_family_passes_the_strategy_checks(hub_preset, family, strategy, params):
    check_strategy(strategy, params, backbones=[hub(hub_preset(family))],
                   engine=Engine(entry_points=False), eager=EAGER)


ROUND_TRIPS = [(family, "full") for family in FAMILIES] + [
    # the families whose saving needed a fix, also through LoRA's merged copy
    (family, "lora") for family in ("swin", "mit", "dinov2")]


@pytest.mark.parametrize("family, strategy", ROUND_TRIPS, ids=[f"{f}-{s}" for f, s in ROUND_TRIPS])
def test_a_saved_model_reloads_with_the_same_predictions(hub_preset, family, strategy, tmp_path):
    # Swin: its layers could not be saved, then not built on load; MiT: its encoder
    # blocks lost their sequence reduction; DINOv2: its trained position embeddings were
    # saved only if their signed change summed negative (keras_hub.py, hub_families.py)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(8) % 2
    engine = Engine(entry_points=False)
    params = {"name": "lora", "rank": 2} if strategy == "lora" else strategy
    recipe = tiny_recipe(hub(hub_preset(family)), params, save={"path": str(tmp_path / "run")})
    run = engine.run(recipe, data=Data(train=(images, labels)))
    loaded = engine.load_model(tmp_path / "run")
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  run.model.predict(images, verbose=0))
    if strategy == "lora":
        # retrain: the recipe's model (fresh adapters) takes the saved, merged weights,
        # matched by path although the saved model nests its layers differently
        fresh = engine.build(recipe)
        copy_weights(loaded, fresh.model, tmp_path / "run" / "model.keras")
        np.testing.assert_allclose(fresh.model.predict(images, verbose=0),
                                   run.model.predict(images, verbose=0), rtol=0, atol=1e-5)


def _embedding(model):
    return next(layer for layer in model._flatten_layers()
                if type(layer).__name__ == "DINOV2Embedding")


@pytest.mark.jax  # under JAX, a variable assigned from another shared its buffer
def test_dinov2_keeps_its_trained_position_embeddings_interpolated_or_not(hub_preset, tmp_path):
    # a preset pretrained on another grid: the base takes the interpolated embeddings as
    # its own (same predictions as the preset), so they save and load without bicubic
    # resampling; a change whose sum is positive (which keras-hub 0.32 did not save) is kept
    keras_hub = pytest.importorskip("keras_hub")
    preset = hub_preset("dinov2_48")
    engine = Engine(entry_points=False)
    run = engine.build(tiny_recipe(hub(preset), "full"))
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    original = keras_hub.models.Backbone.from_preset(preset)
    np.testing.assert_array_equal(run.base.predict(images, verbose=0),
                                  original.predict({"images": images.astype("float32")}, verbose=0))
    trained = _embedding(run.model).interpolated_position_embeddings
    trained.assign(trained + 0.01)  # as training would move them
    loaded = engine.load_model(engine.save_model(run.model, tmp_path / "model.keras"))
    np.testing.assert_array_equal(_embedding(loaded).interpolated_position_embeddings, trained)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  run.model.predict(images, verbose=0))


def test_a_model_that_would_not_load_back_the_same_is_refused(hub_preset, tmp_path, monkeypatch):
    from finetunekit.plugins.backbones import hub_families

    engine = Engine(entry_points=False)
    run = engine.build(tiny_recipe(hub(hub_preset("mit")), "full"))
    good = engine.save_model(run.model, tmp_path / "model.keras")
    before = good.read_bytes()
    # as keras-hub 0.32 without the fix: MiT's blocks lose their sequence reduction
    monkeypatch.delitem(hub_families.CONFIG_SOURCES, "HierarchicalTransformerEncoder")
    with pytest.raises(PersistenceError, match=r"Refusing to save .*differing by up to .*"
                                               r"previous file there is kept"):
        engine.save_model(run.model, good)
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
