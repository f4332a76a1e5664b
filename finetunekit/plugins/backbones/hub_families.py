"""What the ``keras_hub`` backbone knows about each KerasHub image family.

finetunekit freezes a base's top-level layers, so each family's transformer layers must
be top-level layers of the base. This module says, per family:

* which encoder layer hides its transformer blocks and how to call them one by one
  (:data:`UNROLL`: ViT, DeiT, DINOv2; CLIP and SigLIP towers, Swin and MiT already keep
  theirs at the top level);
* which layer classes start a block (:data:`BLOCK_CLASSES`: a transformer layer, a Swin
  stage, a MiT stage's patch embedding), and the name pattern of the others' stages
  (:data:`BLOCK_PATTERNS`: ResNet);
* which output is a grid of patch tokens without a class token (Swin), given back its
  height and width so the head pools it as a CNN's feature map (:func:`feature_map`);
* what a family's layers need to save what they compute with: constructor arguments
  their configs leave out (:data:`CONFIG_SOURCES`: MiT), state to bring up to date
  before a save (:data:`BEFORE_SAVE`: DINOv2), a rebuild that makes saving exact
  (:data:`ON_INPUT_GRID`: DINOv2 pretrained on another grid).

Every family is checked in tests/plugins/backbones/test_hub_families.py on a tiny
configuration built from its class. A family not named here keeps its own top-level
layers, each a block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def _unroll_vit(encoder: Any) -> Callable[[Any], Any]:
    # ViTEncoder.call: dropout, the blocks, the final LayerNormalization
    def call(x, **kwargs):
        if encoder.dropout.rate:
            x = encoder.dropout(x)
        for block in encoder.encoder_layers:
            x = block(x)
        return encoder.layer_norm(x)
    return call


def _unroll_deit(encoder: Any) -> Callable[..., Any]:
    # DeiTEncoder.call returns (tokens, hidden states, attention scores); the backbone
    # uses the tokens only, and the other two are empty unless asked for. A block returns
    # (tokens, None) unless asked for its scores, and a layer of a functional model must
    # return tensors: ask, and drop them
    def call(x, **kwargs):
        for block in encoder.encoder_layers:
            x, _ = block(x, return_attention_scores=True)
        x = encoder.layer_norm(x)
        return x, x, x
    return call


def _unroll_dinov2(encoder: Any) -> Callable[..., Any]:
    # DINOV2Encoder.call returns (tokens, {"stage1": ..., ...}): keep the structure, the
    # backbone's functional graph reads its outputs by position
    def call(x, **kwargs):
        stages = {}
        for index, block in enumerate(encoder.layers, start=1):
            x = block(x)
            stages[f"stage{index}"] = x
        return x, stages
    return call


UNROLL: dict[str, Callable[[Any], Callable[..., Any]]] = {
    "ViTEncoder": _unroll_vit,
    "DeiTEncoder": _unroll_deit,
    "DINOV2Encoder": _unroll_dinov2,
}
"""Encoder class name -> a function of the encoder giving a call that runs its blocks
one by one, each called as a layer of its own (so each becomes a top-level layer)."""

BLOCK_CLASSES = frozenset({
    "ViTEncoderBlock", "DeiTEncoderBlock", "DINOV2Layer", "CLIPEncoderLayer",
    "SigLIPEncoderLayer",              # one block per transformer layer
    "SwinTransformerStage",            # one per stage (its blocks, then patch merging)
    "OverlappingPatchingAndEmbedding",  # MiT: a stage starts with its patch embedding
})
"""Layer classes each of which starts a block; the layers before the first form the stem,
and a layer that is none of these (a final LayerNorm) joins the block before it."""

BLOCK_PATTERNS = (
    r"^(stack\d+)_",  # ResNet: stack0_block0_1_conv ... one block per stage
)
"""Name patterns for families whose blocks are flat layers; the first that matches two
top-level layers groups the base."""


CONFIG_SOURCES: dict[str, dict[str, Callable[[Any], Any]]] = {
    # MiT's encoder block keeps its sequence-reduction ratio on its attention, its drop
    # rate as `drop_prop` and its epsilon on its LayerNorms; its get_config writes none
    # of them, so a block rebuilt from it had sr_ratio=1: no reduction convolution, and
    # a loaded model predicted differently (the unused weights were silently skipped)
    "HierarchicalTransformerEncoder": {
        "sr_ratio": lambda layer: int(layer.attn.sr_ratio),
        "drop_prob": lambda layer: float(layer.drop_path.rate),
        "layer_norm_epsilon": lambda layer: float(layer.norm1.epsilon),
    },
}
"""Layer class name -> constructor argument -> how to read it from a layer whose
``get_config`` leaves it out (:func:`~finetunekit.plugins.backbones.hub_saving.fix_layer_configs`)."""


def _dinov2_on_its_input_grid(hub: Any) -> Any:
    # DINOv2 keeps two position embeddings: `position_embeddings` on the grid it was
    # pretrained at (518x518 in the presets), never used, and `interpolated_position_embeddings`
    # on the input's grid, used and trained. Saved, the trained one is interpolated back
    # to the pretrained grid and, loaded, forward again: bicubic both ways, so a loaded
    # model predicts differently. Rebuilt with the input's grid as its own, interpolation
    # is a copy both ways (and the pretrained model predicts exactly as before).
    config = hub.get_config()
    if list(config["position_embedding_shape"]) == list(config["image_shape"]):
        return hub
    config["position_embedding_shape"] = config["image_shape"]
    rebuilt = type(hub).from_config(config)
    embedding = hub.embeddings
    for source, target in zip(hub.weights, rebuilt.weights):
        value = (embedding.interpolated_position_embeddings
                 if source is embedding.position_embeddings else source)
        target.assign(keras.ops.convert_to_numpy(value))  # a buffer of its own (JAX)
    return rebuilt


ON_INPUT_GRID: dict[str, Callable[[Any], Any]] = {"DINOV2Backbone": _dinov2_on_its_input_grid}
"""Backbone class name -> a function giving the backbone rebuilt so that what it saves
loads back exactly (:func:`on_input_grid`)."""


def on_input_grid(hub: Any) -> Any:
    """`hub`, or the same backbone (same predictions) rebuilt so that a model holding its
    layers saves and loads back exactly (:data:`ON_INPUT_GRID`)."""
    rebuild = ON_INPUT_GRID.get(type(hub).__name__)
    return hub if rebuild is None else rebuild(hub)


def _sync_dinov2_position_embeddings(layer: Any) -> None:
    # DINOV2Embedding.save_own_variables writes the trained embedding into
    # `position_embeddings` only if sum(original - trained) > epsilon: a signed sum,
    # so after about half of all trainings it saves the untrained one, and the loaded
    # model (which interpolates from it) predicts differently. Do it every time.
    # (values through numpy: under JAX, assigning one variable to another shares its
    # buffer, and a jitted step that donates both fails)
    source = keras.ops.convert_to_numpy(layer.interpolated_position_embeddings)
    if tuple(layer.image_shape) == tuple(layer.position_embedding_shape):
        layer.position_embeddings.assign(source)
        return
    layer.position_embeddings.assign(layer._interpolate_position_embeddings(
        source, patch_size=layer.patch_size, source_shape=layer.image_shape,
        target_shape=layer.position_embedding_shape,
        antialias=layer.antialias_in_interpolation))


BEFORE_SAVE: dict[str, Callable[[Any], None]] = {
    "DINOV2Embedding": _sync_dinov2_position_embeddings,
}
"""Layer class name -> what to do to such a layer before its model is written, so that
it saves what it computes with."""


def vision_tower(hub: Any) -> Any:
    """The image encoder of a backbone that pairs one with a text encoder (CLIP, SigLIP,
    MetaCLIP 2 presets); any other backbone as it is."""
    tower = getattr(hub, "vision_encoder", None)
    return tower if isinstance(tower, keras.Model) else hub


def unrolled(hub: Any) -> dict[int, Callable[..., Any]]:
    """For :meth:`keras.Model._run_through_graph`: each encoder operation of `hub` that
    :data:`UNROLL` knows, by id, mapped to the call that unrolls it."""
    return {id(layer): UNROLL[type(layer).__name__](layer) for layer in hub.layers
            if type(layer).__name__ in UNROLL}


def feature_map(hub: Any, outputs: Any) -> Any:
    """A Swin backbone's final patch tokens ``(batch, h * w, dim)`` reshaped to the grid
    ``(batch, h, w, dim)``: patch tokens without a class token, pooled as a CNN's map by
    the head (``avg``). Other outputs are returned as they are."""
    if type(hub).__name__ != "SwinTransformerBackbone":
        return outputs
    stride = hub.patch_size * 2 ** (len(hub.depths) - 1)  # each stage but the last halves
    height, width = hub.image_shape[0] // stride, hub.image_shape[1] // stride
    return keras.layers.Reshape((height, width, outputs.shape[-1]), name="feature_map")(outputs)
