"""Example finetunekit plugin: the ``last_conv_layers`` strategy and an ``onnx`` format.

Trains only the last N layers of the base that have weights (convolutions, dense or
BatchNorm layers), plus the head. Pooling, activation and other weightless layers are
skipped when counting, so ``n = 2`` on VGG16 means ``block5_conv2`` and ``block5_conv3``.

Written only against finetunekit's public API, as any third-party plugin would be.
"""

from finetunekit import Format, Param, Plan, RecipeError, Stage, Strategy, hookimpl


def plan_last_conv_layers(context, n):
    """One stage that trains the last `n` weighted layers of the base."""
    weighted = [layer.name for layer in context.base.layers if layer.weights]
    if n > len(weighted):
        raise RecipeError(
            f"'strategy.n' must be between 1 and {len(weighted)} (base '{context.base.name}' "
            f"has {len(weighted)} layers with weights). Received: strategy.n={n}."
        )
    stage = Stage(
        name="last_conv_layers",
        epochs=context.epochs,
        trainable=frozenset(weighted[-n:]),
        learning_rate=context.learning_rate,
        train_bn=context.train_bn,
    )
    return Plan((stage,))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="last_conv_layers",
        plan=plan_last_conv_layers,
        params={"n": Param(int, 2, min=1, help="how many weighted base layers train, from the top")},
        description="Train the last N layers of the base that have weights, and the head.",
    ))


# -- a persistence format: ONNX, for serving outside Keras ------------------


def save_onnx(model, path, run=None):
    """Export through Keras's ONNX exporter (needs the optional ``onnx`` packages)."""
    from finetunekit import PersistenceError

    try:
        model.export(str(path), format="onnx", verbose=False)
    except ImportError as exc:
        raise PersistenceError(
            f"Format 'onnx' needs Keras's ONNX exporter dependencies ({exc}). Install them "
            "(pip install onnx onnxscript, plus tf2onnx on TensorFlow), or save as 'keras'."
        ) from exc


def load_onnx(path, safe_mode=True, template=None):
    from finetunekit import PersistenceError

    raise PersistenceError(
        f"'{path}' is an ONNX export for serving (onnxruntime.InferenceSession); Keras "
        "cannot load or train it. Keep the run's model.keras for that."
    )


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="onnx", suffix=".onnx", save=save_onnx, load=load_onnx, trainable=False,
        description="ONNX export for serving (needs the onnx packages); inference only.",
    ))
