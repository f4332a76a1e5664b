"""The preprocessing finetunekit puts in every model, made of core Keras layers only.

Images travel as uint8 and are normalised on the device, inside the model: feeding
float32 from the host capped throughput on a GPU (see docs/benchmarks.md).

:func:`preprocessing` builds each mode from core Keras layers and operations
(``Rescaling``, ``Normalization``; caffe's channel swap from ``Permute``,
``Cropping2D`` and ``Concatenate``), so a saved model loads with
``keras.saving.load_model`` where finetunekit is not installed, and predicts the same.
:class:`Preprocess`, the layer models of 0.2 and earlier hold, stays registered so that
those files still load; new models never contain it.
"""

from __future__ import annotations

import keras
from keras import ops

_IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)

MODES = ("caffe", "tf", "torch", "none")


def preprocessing(mode: str = "none", name: str = "preprocess") -> keras.Model:
    """A small functional model of core Keras layers that turns uint8 RGB pixels into
    what a backbone's weights expect.

    Args:
        mode: str. One of:
            ``"caffe"``: RGB to BGR, then subtract the ImageNet mean (VGG, ResNet v1):
            a channel swap of ``Permute``/``Cropping2D``/``Concatenate`` layers, then
            ``Normalization(mean, variance=1)``;
            ``"tf"``: scale to [-1, 1] (MobileNet, ResNet v2, Inception, Xception,
            NASNet): ``Rescaling(1/127.5, offset=-1)``;
            ``"torch"``: scale to [0, 1], then ImageNet mean and std (DenseNet):
            ``Rescaling(1/255)`` then ``Normalization(mean, std**2)``;
            ``"none"``: cast to float only, for bases that normalise themselves
            (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3): ``Rescaling(1.0)``.
        name: str. The model's name. Defaults to ``"preprocess"``.

    Each matches ``keras.applications.<module>.preprocess_input`` to float32 rounding
    (tests/plugins/backbones/test_preprocess.py). It holds no weights.

    Example:

    >>> import numpy as np
    >>> float(preprocessing("tf")(np.full((1, 2, 2, 3), 255, "uint8")).numpy().max())
    1.0
    """
    if mode not in MODES:
        raise ValueError(f"Unknown preprocessing mode '{mode}'. Known: {', '.join(MODES)}. "
                         f"Received: mode={mode!r}.")
    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name=f"{name}_pixels")
    if mode == "caffe":
        bgr = _rgb_to_bgr(inputs, name)
        outputs = keras.layers.Normalization(mean=list(_IMAGENET_MEAN_RGB[::-1]),
                                             variance=[1.0, 1.0, 1.0], name="caffe")(bgr)
    elif mode == "tf":
        outputs = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="tf")(inputs)
    elif mode == "torch":
        unit = keras.layers.Rescaling(1 / 255.0, name="torch_scale")(inputs)
        outputs = keras.layers.Normalization(mean=list(_TORCH_MEAN_RGB),
                                             variance=[s * s for s in _IMAGENET_STD_RGB],
                                             name="torch")(unit)
    else:
        # a cast to the compute dtype: the base sees floats, as with the other modes
        outputs = keras.layers.Rescaling(1.0, name="none")(inputs)
    return keras.Model(inputs, outputs, name=name)


def _rgb_to_bgr(pixels, name: str):
    """Reverse the channel axis with core layers that also load from a legacy H5 file
    (which cannot hold ``keras.ops.flip``): channels moved to the front, each cropped out
    in BGR order, concatenated, and moved back. No weights, any height and width."""
    front = keras.layers.Permute((3, 1, 2), name=f"{name}_channels_first")(pixels)
    crops = [((2, 0), (0, 0)), ((1, 1), (0, 0)), ((0, 2), (0, 0))]  # B, G, R
    parts = [keras.layers.Cropping2D(crop, data_format="channels_last",
                                     name=f"{name}_{channel}")(front)
             for channel, crop in zip("bgr", crops)]
    bgr = keras.layers.Concatenate(axis=1, name=f"{name}_bgr")(parts)
    return keras.layers.Permute((2, 3, 1), name=f"{name}_channels_last")(bgr)


@keras.saving.register_keras_serializable(package="finetunekit")
class Preprocess(keras.layers.Layer):
    """The preprocessing layer of models saved by finetunekit 0.2 and earlier.

    Kept, registered, so that those files still load; new models use
    :func:`preprocessing` (core Keras layers only) instead.

    Args:
        mode: str. ``"caffe"``, ``"tf"``, ``"torch"`` or ``"none"`` (see
            :func:`preprocessing`).
    """

    def __init__(self, mode: str = "none", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown preprocessing mode '{mode}'. Known: {', '.join(MODES)}.")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            mean = ops.convert_to_tensor(_IMAGENET_MEAN_RGB[::-1], dtype=self.compute_dtype)
            return x - mean
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
