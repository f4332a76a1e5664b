"""After one real training step, exactly the layers a strategy trains have moved."""

from __future__ import annotations

import keras
import pytest

from finetunekit import RecipeError
from finetunekit.testing import check_strategy, step_each_stage, tiny_recipe

VGG_BLOCK5 = {"block5_conv1", "block5_conv2", "block5_conv3"}
# One eager step skips tracing a whole training graph: the same semantics, several
# times faster under TensorFlow (JAX compiles each operation on its own when eager).
# Not for the recompile test: an eager step would see new trainable flags without one.
EAGER = keras.backend.backend() == "tensorflow"


@pytest.mark.jax
def test_feature_extraction_moves_only_the_head(engine):
    (report,) = check_strategy("feature_extraction", engine=engine, backbones=["vgg16"],
                               eager=EAGER)
    assert report.changed == set()


@pytest.mark.jax
def test_partial_from_index_15_trains_vgg_block5_like_the_seed(engine):
    (report,) = check_strategy("partial", {"unfreeze_from": 15}, engine=engine,
                               backbones=["vgg16"], eager=EAGER)
    assert report.changed == VGG_BLOCK5


def test_partial_from_layer_name_equals_from_index(engine):
    (by_name,) = check_strategy("partial", {"unfreeze_from": "block5_conv1"}, engine=engine,
                                backbones=["vgg16"], eager=EAGER)
    assert by_name.changed == VGG_BLOCK5


def test_partial_last_block_on_vgg(engine):
    (report,) = check_strategy("partial", {"unfreeze_blocks": 1}, engine=engine,
                               backbones=["vgg16"], eager=EAGER)
    assert report.changed == VGG_BLOCK5


@pytest.mark.jax
def test_full_moves_every_weighted_layer(engine):
    (report,) = check_strategy("full", engine=engine, backbones=["vgg16"], eager=EAGER)
    assert report.changed == report.weighted


def test_resnet_partial_keeps_batchnorm_frozen_by_default(engine):
    (report,) = check_strategy("partial", {"unfreeze_blocks": 1}, engine=engine,
                               backbones=["resnet50"], eager=EAGER)
    assert report.changed and all(name.startswith("conv5_") for name in report.changed)
    assert not any(name.endswith("_bn") for name in report.changed)


def test_resnet_partial_with_train_bn_moves_batchnorm_statistics(engine):
    (report,) = check_strategy("partial", {"unfreeze_blocks": 1}, engine=engine,
                               backbones=["resnet50"], train_bn=True, eager=EAGER)
    bn = {name for name in report.changed if name.endswith("_bn")}
    assert bn and all(name.startswith("conv5_") for name in bn)


def test_resnet_full_without_train_bn_leaves_every_batchnorm_bit_identical(engine):
    (report,) = check_strategy("full", engine=engine, backbones=["resnet50"], eager=EAGER)
    assert not any(name.endswith("_bn") for name in report.changed)
    assert "conv1_conv" in report.changed


def test_resnet_feature_extraction(engine):
    (report,) = check_strategy("feature_extraction", engine=engine, backbones=["resnet50"],
                               eager=EAGER)
    assert report.changed == set()


def test_partial_without_keys_trains_the_last_block(engine):
    run = engine.build(tiny_recipe(strategy={"name": "partial"}))
    assert run.plan.stages[0].trainable == frozenset(run.blocks[-1])


def test_partial_refuses_both_keys(engine):
    with pytest.raises(RecipeError, match="at most one"):
        engine.build(tiny_recipe(strategy={"name": "partial", "unfreeze_from": 15,
                                           "unfreeze_blocks": 1}))


@pytest.mark.parametrize("value, fragment", [
    (19, "strategy.unfreeze_from=19"),
    (99, "below 19"),
    ("block5_cnv1", "Did you mean 'block5_conv1'"),
])
def test_unfreeze_from_out_of_range_names_the_key(engine, value, fragment):
    with pytest.raises(RecipeError, match="strategy.unfreeze_from") as info:
        engine.build(tiny_recipe(strategy={"name": "partial", "unfreeze_from": value}))
    assert fragment in str(info.value)


def test_unfreeze_blocks_out_of_range_names_the_key(engine):
    with pytest.raises(RecipeError, match=r"strategy.unfreeze_blocks.*between 1 and 6"):
        engine.build(tiny_recipe(strategy={"name": "partial", "unfreeze_blocks": 7}))


def test_each_stage_recompiles_so_keras_sees_the_new_flags():
    """A two-stage plan (frozen, then full) from a plugin defined here: the second stage
    trains the base only because the engine recompiles between stages."""
    from finetunekit import Engine, Plan, Stage, Strategy, hookimpl

    class TwoStage:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            def plan(context):
                return Plan((
                    Stage("probe", 1, frozenset(), context.learning_rate),
                    Stage("tune", 1, frozenset(context.layer_names), context.learning_rate / 10),
                ))
            register(Strategy(name="probe_then_tune", plan=plan))

    engine = Engine(plugins=[TwoStage()], entry_points=False)
    probe, tune = step_each_stage(engine, engine.build(tiny_recipe(strategy="probe_then_tune")))
    assert probe.changed == set() and probe.head_changed
    assert tune.changed == tune.weighted
