"""Built-in backbones: every keras.applications model, without its top.

The table of families (preprocessing, minimum input size, block structure) is plain data
in :mod:`finetunekit.plugins.backbones.families`; this module turns each row into a
:class:`~finetunekit.Backbone`.
"""

from __future__ import annotations

import functools

import keras

from finetunekit.core.components import Backbone
from finetunekit.plugins.strategies.freezing import group_blocks
from finetunekit.plugins.backbones.preprocess import preprocessing
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl
from finetunekit.plugins.backbones.download import DEFAULT_TIMEOUT, build_with_imagenet
from finetunekit.plugins.backbones.families import BACKBONES


def build_application(constructor: str, name: str, input_shape, weights,
                      download_timeout: float = DEFAULT_TIMEOUT):
    """Build ``keras.applications.<constructor>`` without its top.

    ImageNet weights come through Keras's download and cache, bounded by
    `download_timeout` seconds (Keras's own downloader has no timeout).
    """
    factory = getattr(keras.applications, constructor)

    def build():
        return factory(include_top=False, weights=weights, input_shape=tuple(input_shape))

    if weights == "imagenet":
        return build_with_imagenet(name, build, timeout=download_timeout)
    return build()


def blocks_by_pattern(pattern: str, base) -> list[list[str]]:
    """Group the base's top-level layers into blocks with the family's pattern."""
    return group_blocks([layer.name for layer in base.layers], pattern)


def backbone_from_row(row: dict) -> Backbone:
    """Make a :class:`Backbone` from one resolved row of ``BACKBONES``."""
    mode = row["preprocess"]
    return Backbone(
        name=row["name"],
        build=functools.partial(build_application, row["constructor"], row["name"]),
        preprocess=functools.partial(preprocessing, mode, name="preprocess"),
        min_size=row["min_size"],
        blocks=functools.partial(blocks_by_pattern, row["block_pattern"]),
        params={"download_timeout": Param(
            float, DEFAULT_TIMEOUT, min=0.1,
            help="seconds to wait for the ImageNet weights host before failing")},
        description=(f"keras.applications.{row['constructor']} ({row['family']}; "
                     f"ImageNet size {row['default_size']}, preprocessing '{mode}')"),
    )


@hookimpl
def finetunekit_register_backbones(register):
    for row in BACKBONES:
        register(backbone_from_row(row))
