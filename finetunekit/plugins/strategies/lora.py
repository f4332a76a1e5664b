"""``lora``: low-rank adapters on the base's Dense and convolution kernels.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) freezes
each pretrained kernel ``W0`` and learns ``W = W0 + (alpha / rank) * A @ B`` with ``A``
and ``B`` of rank ``rank``; ``B`` starts at zero, so training starts from the pretrained
model. It is Keras 3's own ``layer.enable_lora(rank, lora_alpha=alpha)``, available on
``Dense``, ``EinsumDense`` and ``Conv1D/2D/3D`` (for a convolution, ``A`` has the
kernel's shape with ``rank`` output channels). Biases stay frozen; BatchNorm layers
follow ``train_bn``.

A top-level layer of the base that is itself Dense or a convolution gets adapters. A
composite layer (a transformer block of a KerasHub ViT) gets them on the attention's
query and value projections inside it (the layers named in :data:`ATTENTION_TARGETS`),
as in the LoRA paper and KerasHub's own ``Backbone.enable_lora``.

Exported models hold no adapters. Keras saves a LoRA layer's kernel merged, but its
config still asks for LoRA, so a reloaded model would rebuild the adapters (at zero). This
plugin therefore answers ``finetunekit_export_model`` for a model with adapters with
:func:`merged_copy`: plain layers whose kernels are the merged ones. The
``checkpoint`` format is left alone: resuming needs the adapters themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import last_blocks_or_all
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl

ADAPTERS = ("lora_kernel_a", "lora_kernel_b")
"""Names Keras gives the two adapter variables of a layer."""

ATTENTION_TARGETS = frozenset({"query", "value", "query_dense", "value_dense", "attention_qkv"})
"""Names of the nested layers adapted inside a composite layer: KerasHub's own targets
(Keras's ``MultiHeadAttention`` names its projections ``query`` and ``value``), and a
Swin's fused query-key-value projection, which has no separate query and value."""

ATTENTION_ATTRIBUTES = ("q", "v")
"""Attributes of an attention layer whose layers are adapted too, for attention layers
whose projections have generic names (KerasHub's MiT: ``Dense`` layers ``dense_4``...)."""

KEEPS_ADAPTERS = frozenset({"checkpoint"})
"""Formats saved as they are: they hold training state to resume, adapters included."""


def is_lora_adapter(layer: Any, variable: Any) -> bool:
    """A variable filter: LoRA adapter matrices only."""
    return variable.path.rsplit("/", 1)[-1] in ADAPTERS


def can_adapt(layer: Any) -> bool:
    """Whether Keras can put LoRA adapters on `layer` (and has not already)."""
    return (callable(getattr(layer, "enable_lora", None)) and getattr(layer, "built", False)
            and not getattr(layer, "lora_enabled", False)
            and getattr(layer, "kernel_constraint", None) is None)


def _sublayers(layer: Any) -> list[Any]:
    # Keras keeps the layers a layer tracks (a block's attention, its projections) there
    return list(layer._flatten_layers(include_self=False, recursive=True))


def adapter_targets(layer: Any) -> list[Any]:
    """The layers `layer` puts adapters on: itself if Keras can adapt it, else its nested
    attention query and value projections (:data:`ATTENTION_TARGETS`,
    :data:`ATTENTION_ATTRIBUTES`)."""
    if can_adapt(layer):
        return [layer]
    inner_layers = _sublayers(layer)
    by_attribute = {id(getattr(inner, attribute)) for inner in inner_layers
                    for attribute in ATTENTION_ATTRIBUTES
                    if isinstance(getattr(inner, attribute, None), keras.layers.Layer)}
    return [inner for inner in inner_layers
            if (inner.name in ATTENTION_TARGETS or id(inner) in by_attribute)
            and can_adapt(inner)]


def plan_lora(context: PlanContext, rank: int = 4, alpha: float | None = None,
              unfreeze_blocks: int | None = None) -> Plan:
    """Put rank-`rank` adapters on every Dense/Conv layer of the last `unfreeze_blocks`
    blocks (all if None); one stage trains the adapters and the head."""
    scope = last_blocks_or_all(context.blocks, unfreeze_blocks)
    names = set(scope)
    targets = [target for layer in context.base.layers if layer.name in names
               for target in adapter_targets(layer)]
    if not targets:
        raise RecipeError(
            f"Strategy 'lora' found no Dense or convolution layer to adapt among the layers it "
            f"may train in base '{context.base.name}' (unfreeze_blocks={unfreeze_blocks}). "
            "Keras supports LoRA on Dense, EinsumDense and Conv1D/2D/3D, not on depthwise or "
            "separable convolutions (inside a composite layer, on attention query and value "
            "projections); raise strategy.unfreeze_blocks or use 'bitfit'."
        )
    for layer in targets:
        layer.enable_lora(rank, lora_alpha=rank if alpha is None else alpha)
    return Plan((Stage("lora", context.epochs, frozenset(scope), context.learning_rate,
                       train_bn=context.train_bn, variables=is_lora_adapter),))


# -------------------------------------------------------------------------
# export: merge the adapters into plain kernels
# -------------------------------------------------------------------------


def _walk(layer: Any) -> Iterator[Any]:
    yield layer
    # every tracked sublayer, not only a model's .layers: adapters may sit inside a block
    for inner in layer._flatten_layers(include_self=False, recursive=False):
        yield from _walk(inner)


def lora_layers(model: Any) -> list[Any]:
    """Every layer of `model`, nested models included, that has LoRA adapters."""
    return [layer for layer in _walk(model) if getattr(layer, "lora_enabled", False)]


def _without_lora(config: Any) -> Any:
    if isinstance(config, list):
        return [_without_lora(item) for item in config]
    if not isinstance(config, dict):
        return config
    return {key: _without_lora(value) for key, value in config.items()
            if key not in ("lora_rank", "lora_alpha")}


def merged_copy(model: Any) -> Any:
    """A copy of `model` without LoRA: each adapted kernel becomes ``W0 + scale * A @ B``.

    Built from the model's config with the LoRA keys removed; every layer's variables
    are copied through ``save_own_variables``, which for a LoRA layer writes the merged
    kernel (Keras's own merge). The copy is compiled like `model` if `model` is.
    """
    config = _without_lora(keras.saving.serialize_keras_object(model))
    plain = keras.saving.deserialize_keras_object(config)
    for source, target in zip(_walk(model), _walk(plain)):
        store: dict[str, Any] = {}
        source.save_own_variables(store)
        target.load_own_variables(store)
    return plain


@hookimpl
def finetunekit_export_model(model, format, run):
    """Save a model that has adapters as its merged copy (except as a checkpoint)."""
    if format.name in KEEPS_ADAPTERS or not lora_layers(model):
        return None  # not ours: the format saves the model as it is
    return merged_copy(model)


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="lora", plan=plan_lora,
        params={
            "rank": Param(int, 4, min=1, help="rank of the adapters A (in x rank) and B (rank x out)"),
            "alpha": Param(float, None, nullable=True, check=lambda v: None if v > 0 else "must be > 0.",
                           help="the update is scaled by alpha / rank; default alpha = rank"),
            "unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                     help="adapt the layers of the last N blocks only; omit for all"),
        },
        description="Low-rank adapters on Dense/Conv kernels, merged on export (LoRA, Hu et al. 2022).",
    ))
