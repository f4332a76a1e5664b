"""``llrd``: each block at learning_rate x decay^depth from the top, the head at the full rate."""

from __future__ import annotations

import keras
import pytest

from finetunekit import RecipeError
from finetunekit.testing import check_strategy, tiny_recipe

EAGER = keras.backend.backend() == "tensorflow"


def test_rates_decay_by_block_from_the_top(engine):
    described = engine.describe(tiny_recipe("vgg16", {"name": "llrd", "decay": 0.5},
                                            learning_rate=1e-2))
    blocks, rates = described["blocks"], described["plan"][0]["learning_rates"]
    for depth, block in enumerate(reversed(blocks), start=1):
        for name in block:
            assert rates[name] == pytest.approx(1e-2 * 0.5 ** depth)


def test_unfreeze_blocks_trains_the_top_blocks_at_their_depth_rates(engine):
    plan = engine.describe(tiny_recipe("vgg16", {"name": "llrd", "decay": 0.5,
                                                 "unfreeze_blocks": 1}))["plan"][0]
    assert set(plan["trainable_layers"]) == {"block5_conv1", "block5_conv2", "block5_conv3",
                                             "block5_pool"}
    assert plan["learning_rates"]["block5_conv1"] == pytest.approx(1e-3 * 0.5)


@pytest.mark.parametrize("decay", [0.0, 1.5])
def test_decay_outside_zero_one_names_the_key(engine, decay):
    with pytest.raises(RecipeError, match=r"strategy\.decay"):
        engine.build(tiny_recipe("vgg16", {"name": "llrd", "decay": decay}))


def test_every_variable_gets_its_declared_rate(engine):
    check_strategy("llrd", {"decay": 0.5}, engine=engine, backbones=["vgg16"], eager=EAGER)
