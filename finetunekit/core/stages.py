"""Applying a :class:`~finetunekit.Stage` to a model: trainable flags and per-layer
learning rates.

Keras 3 reads ``trainable`` flags when ``compile()`` runs, so the engine calls these
before every stage's compile. Strategies do not call them: they describe a stage and the
engine applies it. The freezing toolbox for strategy authors
(:mod:`finetunekit.plugins.strategies.freezing`, public as ``finetunekit.freezing``)
re-exports the primitives here beside its block helpers.

Per-layer learning rates are not gradient scaling: Adam and RMSprop divide by a running
gradient scale, so a constant factor on the gradient cancels. The factor multiplies the
learning rate inside the optimizer's update step instead, on every backend (Keras 3 calls
``update_step`` once per variable under TensorFlow and JAX).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras


def _as_layers(layers: Any) -> list[Any]:
    if isinstance(layers, keras.layers.Layer):
        return [layers]
    return list(layers)


def is_batch_norm(layer: Any) -> bool:
    """Whether `layer` is a batch-normalisation layer (it keeps moving statistics)."""
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze(layers: Any) -> None:
    """Make a layer or every layer of an iterable non-trainable."""
    for layer in _as_layers(layers):
        layer.trainable = False


def make_trainable(layers: Any, *, train_bn: bool = False) -> None:
    """Make a layer or layers trainable; BatchNorm layers only if `train_bn`.

    A frozen BatchNormalization layer runs in inference mode (it normalises with its
    moving statistics and does not update them), which is what fine-tuning usually wants.
    """
    for layer in _as_layers(layers):
        layer.trainable = train_bn or not is_batch_norm(layer)


def apply_trainable(base: Any, names: Iterable[str], *, train_bn: bool = False,
                    variables: Callable[[Any, Any], bool] | None = None,
                    original: Mapping[str, bool] | None = None) -> None:
    """Train exactly the base's top-level layers in `names`; freeze the rest.

    BatchNorm layers among `names` follow `train_bn`: if True they train whole (batch
    statistics, moving averages, gamma, beta), whatever `variables` says; if False they
    stay frozen in inference mode (moving statistics used and kept) and only the gamma
    and beta that `variables` picks train.

    Args:
        base: keras.Model. The base.
        names: iterable of str. Top-level layer names that train.
        train_bn: bool. Whether BatchNorm layers among them train.
        variables: callable or None. ``variables(layer, variable)`` picks which variables
            of a trainable layer train; None keeps each variable's own flag.
        original: mapping of variable path to its trainable flag before any strategy
            touched it, so one stage's variable choice does not leak into the next.

    Raises:
        ValueError: a name is not a top-level layer of `base`.
    """
    names = set(names)
    known = {layer.name for layer in base.layers}
    missing = sorted(names - known)
    if missing:
        raise ValueError(f"No layer named {missing} in base '{base.name}'.")
    base.trainable = True  # a frozen container would hide every inner flag
    for layer in base.layers:
        if layer.name not in names:
            freeze(layer)
            continue
        make_trainable(layer, train_bn=train_bn)
        batch_norm = is_batch_norm(layer)
        if batch_norm and layer.trainable:
            continue  # trains whole: the filter is about the other layers
        # Keras 3 sets every variable's flag with the layer's; put back each one's own
        # (a LoRA-frozen kernel stays frozen), then apply the stage's variable choice.
        for variable in layer.weights:
            flag = original.get(variable.path, True) if original else variable.trainable
            if batch_norm:
                # A frozen layer runs in inference mode, yet Keras still trains those of
                # its variables flagged trainable: gamma and beta move, statistics stay.
                flag = flag and variables is not None and is_norm_parameter(layer, variable)
            if variables is not None and flag:
                flag = bool(variables(layer, variable))
            variable.trainable = flag


def variable_flags(model: Any) -> dict[str, bool]:
    """Each variable's own trainable flag, by path (to restore between stages)."""
    return {variable.path: variable.trainable for variable in model.weights}


def is_norm_parameter(layer: Any, variable: Any) -> bool:
    """A variable filter: gamma and beta of normalisation layers only."""
    norms = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
             keras.layers.GroupNormalization)
    return isinstance(layer, norms) and variable.path.rsplit("/", 1)[-1] in ("gamma", "beta")


def trainable_param_count(model: Any) -> int:
    """Number of scalars in `model`'s trainable weights."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))


def scale_learning_rates(optimizer: Any, factor_of: Callable[[Any], float]) -> Any:
    """Make `optimizer` use ``learning_rate * factor_of(variable)`` per variable.

    Args:
        optimizer: keras.optimizers.Optimizer, not yet built.
        factor_of: callable. Maps a trainable variable to its learning-rate factor.

    Returns:
        The same optimizer, changed in place.
    """
    if getattr(optimizer, "built", False):
        raise ValueError("scale_learning_rates needs an optimizer that is not built yet.")
    original_build = optimizer.build
    original_update = optimizer.update_step
    factors: list[float] = []

    def build(variables):
        original_build(variables)
        factors[:] = [float(factor_of(variable)) for variable in variables]

    def update_step(gradient, variable, learning_rate):
        factor = factors[optimizer._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = learning_rate * factor
        return original_update(gradient, variable, learning_rate)

    optimizer.build = build
    optimizer.update_step = update_step
    optimizer.learning_rate_factors = factors
    return optimizer
