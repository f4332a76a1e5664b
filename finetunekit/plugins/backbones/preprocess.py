"""Keras layers finetunekit puts in every model.

Images travel as uint8 and are normalised on the device, inside the model: feeding
float32 from the host capped throughput on a GPU (see docs/benchmarks.md). The layer is
registered as serialisable so a saved model loads in Keras's safe mode.
"""

from __future__ import annotations

import keras
from keras import ops

_IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)

MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="finetunekit")
class Preprocess(keras.layers.Layer):
    """Turn uint8 RGB pixels into what a backbone's weights expect.

    Args:
        mode: str. One of:
            ``"caffe"``: RGB to BGR, then subtract the ImageNet mean (VGG, ResNet v1);
            ``"tf"``: scale to [-1, 1] (MobileNet, ResNet v2, Inception, Xception, NASNet);
            ``"torch"``: scale to [0, 1], then ImageNet mean and std (DenseNet);
            ``"none"``: cast to float only, for bases that normalise themselves
            (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3).

    Example:

    >>> import numpy as np
    >>> Preprocess("tf")(np.full((1, 2, 2, 3), 255, "uint8")).numpy().max()
    1.0
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
