"""TensorFlow SavedModel, for serving: written with ``model.export``.

Keras 3 cannot train a model loaded from a SavedModel: loading gives an inference-only
Keras model (a ``keras.layers.TFSMLayer`` behind a uint8 input), and ``retrain`` refuses
it, pointing to ``keras`` or ``checkpoint``. Needs the TensorFlow backend.
"""

from __future__ import annotations

from pathlib import Path

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl


def _need_tensorflow() -> None:
    if keras.backend.backend() != "tensorflow":
        raise PersistenceError(
            f"Format 'savedmodel' needs the TensorFlow backend; this process runs "
            f"'{keras.backend.backend()}'. Use format 'keras' (or run with KERAS_BACKEND=tensorflow)."
        )


def save_savedmodel(model, path, run=None) -> None:
    _need_tensorflow()
    model.export(str(path), format="tf_saved_model", verbose=False)


def load_savedmodel(path, safe_mode=True, template=None):
    _need_tensorflow()
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise PersistenceError(
            f"'{path}' is not a SavedModel folder (no saved_model.pb inside)."
        )
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve")
    spec = _input_spec(path)
    inputs = keras.Input(shape=spec[0], dtype=spec[1], name="image")
    return keras.Model(inputs, layer(inputs), name="savedmodel_inference")


def _input_spec(path: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    spec = list(loaded.signatures["serving_default"].structured_input_signature[1].values())[0]
    return tuple(spec.shape[1:]), spec.dtype.name


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="savedmodel", suffix=".savedmodel", save=save_savedmodel, load=load_savedmodel,
        trainable=False,
        description="TensorFlow SavedModel for serving (model.export); inference only.",
    ))
