"""keras-cv's image augmentation layers as an augmentation (optional extra).

``pip install "finetunekit[keras-cv]"``, then ``[augment] name = "keras_cv"`` with
``layers = ["GridMask", "RandomHue"]``. keras-cv 0.9's augmentation layers run on
TensorFlow only, so another backend gets a clear error; keras-cv's named backbones are
not used (they download their config even without weights).

keras-cv's layers augment whatever the ``training`` flag says when they sit in a Keras 3
model, so they are wrapped in :class:`TrainingOnly`: the saved model predicts on the
images as given.
"""

from __future__ import annotations

import inspect

import keras

from finetunekit.core.components import Augmentation
from finetunekit.core.errors import RecipeError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl

_RANGE = {"value_range": (0, 255)}
LAYERS = {
    "AugMix": {**_RANGE},
    "AutoContrast": {**_RANGE},
    "ChannelShuffle": {},
    "Equalization": {**_RANGE},
    "GridMask": {},
    "Posterization": {**_RANGE, "bits": 4},
    "RandomChannelShift": {**_RANGE, "factor": 0.2},
    "RandomColorDegeneration": {"factor": 0.3},
    "RandomCutout": {"height_factor": 0.3, "width_factor": 0.3},
    "RandomGaussianBlur": {"kernel_size": 3, "factor": 1.0},
    "RandomHue": {**_RANGE, "factor": 0.1},
    "RandomSaturation": {"factor": (0.3, 0.7)},
    "RandomSharpness": {**_RANGE, "factor": 0.3},
    "RandomShear": {"x_factor": 0.2, "y_factor": 0.2},
    "Solarization": {**_RANGE},
}
"""keras-cv layer name -> the arguments it is built with (pixels in [0, 255])."""

INSTALL = 'pip install "finetunekit[keras-cv]"'


@keras.saving.register_keras_serializable(package="finetunekit")
class TrainingOnly(keras.layers.Layer):
    """Applies `layer` when ``training`` is true; otherwise returns the input (as float32).

    Args:
        layer: keras.Layer. The augmentation to gate.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)

    def call(self, inputs, training=None):
        if training:
            return self.layer(inputs)
        return keras.ops.cast(inputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        # importing keras-cv registers its layers for deserialisation; without it, a
        # RecipeError with the pip command rather than a bare ImportError
        require_keras_cv(keras.backend.backend())
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


def require_keras_cv(backend: str):
    """The ``keras_cv`` module, or a RecipeError saying why it cannot be used here."""
    if backend != "tensorflow":
        raise RecipeError(
            "augment.name = \"keras_cv\" uses keras-cv's augmentation layers, which run on "
            f"TensorFlow only. Received KERAS_BACKEND={backend}. Run with "
            "KERAS_BACKEND=tensorflow, or use augment.name = \"basic\" or \"randaugment\" "
            "(core Keras layers, every backend)."
        )
    try:
        import keras_cv
    except ImportError as exc:
        raise RecipeError(
            "augment.name = \"keras_cv\" needs the keras-cv package, which is not installed "
            f"({exc}). Install it with: {INSTALL}"
        ) from None
    return keras_cv


def build_keras_cv(input_shape, layers=("GridMask",), seed=None):
    """keras-cv's layers in the order given, applied to training batches only."""
    keras_cv = require_keras_cv(keras.backend.backend())
    built = []
    for name in layers:
        kwargs = dict(LAYERS[name])
        cls = getattr(keras_cv.layers, name)
        if seed is not None and "seed" in inspect.signature(cls.__init__).parameters:
            kwargs["seed"] = seed
        built.append(cls(**kwargs))
    return TrainingOnly(keras.Sequential(built, name="keras_cv_layers"), name="augment")


def _check_layers(value):
    unknown = [name for name in value if name not in LAYERS]
    if unknown or not value:
        return (f"each item must be a keras-cv layer among {', '.join(LAYERS)} (at least "
                f"one); unknown: {unknown}.")
    return None


@hookimpl
def finetunekit_register_augmentations(register):
    register(Augmentation(
        name="keras_cv", build=build_keras_cv,
        params={
            "layers": Param(list, ["GridMask"], items=str, check=_check_layers,
                            help="keras-cv layer names, applied in order"),
            "seed": Param(int, None, nullable=True, min=0),
        },
        description=f"keras-cv's augmentation layers (TensorFlow only; {INSTALL}).",
    ))
