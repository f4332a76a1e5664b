"""The strategy library, proven after real training steps.

Every strategy goes through :func:`finetunekit.testing.check_strategy` (frozen variables
bit-identical, trained layers moved, BatchNorm statistics as declared, and each variable's
learning rate measured from its first Adam update) on VGG16 and ResNet50; the tests below
add what is particular to each one. The ``jax`` subset covers the single-stage ones.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from finetunekit import RecipeError
from finetunekit.plugins.strategies.lora import merged_copy
from finetunekit.testing import EXACT_EPSILON, check_strategy, tiny_data, tiny_recipe

# One eager step skips tracing a whole training graph: several times faster under
# TensorFlow. JAX compiles each operation on its own when eager, so there it jits.
EAGER = keras.backend.backend() == "tensorflow"
BACKBONES = ["vgg16", "resnet50"]
# Under JAX (slow to compile on a CPU) the single-stage strategies are checked on VGG16;
# BatchNorm-specific behaviour on ResNet50 has its own jax-marked tests.
BACKBONES_JAX_VGG = [pytest.param("vgg16", marks=pytest.mark.jax), "resnet50"]
VGG_BLOCK4 = {"block4_conv1", "block4_conv2", "block4_conv3"}
VGG_BLOCK5 = {"block5_conv1", "block5_conv2", "block5_conv3"}
LR = 1e-3


def check(engine, name, params=None, backbone="vgg16", **kwargs):
    return check_strategy(name, params, engine=engine, backbones=[backbone], eager=EAGER,
                          learning_rate=LR, **kwargs)


def build(engine, strategy, backbone="vgg16", **kwargs):
    return engine.build(tiny_recipe(backbone, strategy, learning_rate=LR, **kwargs))


def train(engine, run, steps=1):
    """Compile stage 0 and take `steps` training steps on tiny data."""
    engine.compile_stage(run, 0, steps_per_epoch=1)
    run.model.run_eagerly = EAGER
    x, y = tiny_data().train
    for _ in range(steps):
        loss = run.model.train_on_batch(x, y)
    return x, y, loss


def base_step(report):
    """The largest change of any base variable in the step."""
    return max(report.steps[path] for path in report.changed_variables)


@pytest.mark.parametrize("strategy, epochs, fragment", [
    ({"name": "two_stage", "probe_epochs": 3}, 3, "strategy.probe_epochs"),
    ({"name": "two_stage", "lr_factor": 0.0}, 2, "strategy.lr_factor"),
    ({"name": "two_stage", "lr_factor": 1.5}, 2, "strategy.lr_factor"),
    ({"name": "two_stage", "unfreeze_blocks": 7}, 2, "strategy.unfreeze_blocks"),
    ({"name": "gradual", "every": 2}, 2, "strategy.every"),
    ({"name": "gradual", "max_blocks": 7}, 3, "strategy.max_blocks"),
    ({"name": "gradual", "lr_growth": 0.5}, 3, "strategy.lr_growth"),
    ({"name": "discriminative", "lr_min": 1e-5, "decay": 0.5}, 1, "not both"),
    ({"name": "discriminative", "decay": 0.0}, 1, "strategy.decay"),
    ({"name": "discriminative", "decay": 1.5}, 1, "strategy.decay"),
    ({"name": "discriminative", "lr_min": 1e-2}, 1, "strategy.lr_min"),
    ({"name": "discriminative", "unfreeze_blocks": 0}, 1, "strategy.unfreeze_blocks"),
    ({"name": "bitfit", "unfreeze_blocks": 9}, 1, "strategy.unfreeze_blocks"),
    ({"name": "norm_only"}, 1, "base 'vgg16' have none"),
    ({"name": "lora", "rank": 0}, 1, "strategy.rank"),
    ({"name": "lora", "alpha": 0.0}, 1, "strategy.alpha"),
    ({"name": "l2sp", "alpha": -1.0}, 1, "strategy.alpha"),
])
def test_bad_parameters_name_the_key(engine, strategy, epochs, fragment):
    with pytest.raises(RecipeError, match=fragment.replace(".", r"\.")):
        build(engine, strategy, epochs=epochs)


# -- two_stage ----------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_two_stage_probes_the_head_then_fine_tunes_the_base_at_the_lower_rate(engine, backbone):
    probe, tune = check(engine, "two_stage", {"probe_epochs": 2, "lr_factor": 0.1}, backbone,
                        epochs=5)
    assert (probe.stage.epochs, tune.stage.epochs) == (2, 3)
    assert probe.changed == set() and probe.head_changed
    assert tune.changed == tune.expected and tune.expected
    assert not any(name.endswith("_bn") for name in tune.changed)  # train_bn = false
    assert base_step(tune) == pytest.approx(LR * 0.1, rel=0.02)
    assert tune.steps["head/predictions/kernel"] == pytest.approx(LR * 0.1, rel=0.02)


def test_two_stage_can_fine_tune_only_the_last_blocks(engine):
    _, tune = check(engine, "two_stage", {"unfreeze_blocks": 1}, epochs=2)
    assert tune.changed == VGG_BLOCK5


# -- gradual ------------------------------------------------------------------


def test_gradual_plan_unfreezes_a_block_per_period_at_a_growing_rate(engine):
    plan = build(engine, {"name": "gradual", "every": 2, "lr_ratio": 0.25, "lr_growth": 2.0},
                 epochs=9).plan
    blocks = [["block5_conv1"], ["block4_conv1"], ["block3_conv1"], ["block2_conv1"]]
    rows = [(s.name, s.epochs, len([b for b in blocks if b[0] in s.trainable]),
             sorted(set(s.lr_scales.values()))) for s in plan.stages]
    assert rows == [
        ("e1_head", 2, 0, []),
        ("e3_last_1_blocks", 1, 1, [0.25]),
        ("e4_last_1_blocks", 1, 1, [0.5]),
        ("e5_last_2_blocks", 2, 2, []),  # 0.25 * 2**2 reaches the head's rate: aligned
        ("e7_last_3_blocks", 2, 3, []),
        ("e9_last_4_blocks", 1, 4, []),
    ]
    assert plan.epochs == 9


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gradual_trains_the_last_block_first_then_one_more_at_a_growing_rate(engine, backbone):
    head, one, two = check(engine, "gradual", {"max_blocks": 2, "lr_ratio": 0.1,
                                               "lr_growth": 1.5}, backbone, epochs=3)
    assert head.changed == set() and head.head_changed
    assert one.changed and one.changed < two.changed
    if backbone == "vgg16":
        assert (one.changed, two.changed) == (VGG_BLOCK5, VGG_BLOCK4 | VGG_BLOCK5)
    else:
        assert all(name.startswith("conv5_") for name in one.changed)
        assert {name[:5] for name in two.changed} == {"conv4", "conv5"}
    assert base_step(one) == pytest.approx(LR * 0.1, rel=0.02)
    assert base_step(two) == pytest.approx(LR * 0.15, rel=0.02)
    assert two.steps["head/predictions/kernel"] == pytest.approx(LR, rel=0.02)


# -- discriminative -------------------------------------------------------------

FIRST_LAYERS = {  # the first weighted layer of each block, stem first
    "vgg16": [None, "block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"],
    "resnet50": ["conv1_conv", "conv2_block1_1_conv", "conv3_block1_1_conv",
                 "conv4_block1_1_conv", "conv5_block1_1_conv"],
}


@pytest.mark.parametrize("backbone", BACKBONES_JAX_VGG)
def test_discriminative_rates_are_log_spaced_from_the_stem_to_the_head(engine, backbone):
    (report,) = check(engine, "discriminative", None, backbone)
    layers = FIRST_LAYERS[backbone]
    groups = len(layers) + 1  # the blocks, then the head
    for index, layer in enumerate(layers):
        if layer is not None:  # VGG's stem block is its input layer alone
            expected = LR / 100 * 100 ** (index / (groups - 1))  # fastai slice(lr / 100, lr)
            assert report.steps[f"{layer}/kernel"] == pytest.approx(expected, rel=0.02), layer
    assert report.steps["head/predictions/kernel"] == pytest.approx(LR, rel=0.02)
    assert report.changed == report.expected


def test_discriminative_decay_over_the_last_blocks(engine):
    (report,) = check(engine, "discriminative", {"decay": 0.5, "unfreeze_blocks": 2})
    assert report.changed == VGG_BLOCK4 | VGG_BLOCK5
    assert report.steps["block5_conv3/kernel"] == pytest.approx(LR * 0.5, rel=0.02)
    assert report.steps["block4_conv1/kernel"] == pytest.approx(LR * 0.25, rel=0.02)


def test_discriminative_lr_min_sets_the_first_block(engine):
    plan = build(engine, {"name": "discriminative", "lr_min": 1e-6}).plan
    (stage,) = plan.stages
    rates = stage.to_dict()["learning_rates"]
    # VGG16: 6 blocks + head = 7 groups from 1e-6 to 1e-3, a factor 10 ** 0.5 apart
    assert rates["block1_conv1"] == pytest.approx(1e-6 * 10 ** 0.5)
    assert rates["block5_conv1"] == pytest.approx(1e-6 * 10 ** 2.5)


# -- bitfit ---------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES_JAX_VGG)
def test_bitfit_moves_every_bias_and_nothing_else(engine, backbone):
    (report,) = check(engine, "bitfit", None, backbone)
    assert report.changed_variables == report.expected_variables
    assert report.changed_variables and all(p.endswith("/bias") for p in report.changed_variables)
    assert len(report.changed_variables) == {"vgg16": 13, "resnet50": 53}[backbone]


def test_bitfit_with_train_bn_trains_batchnorm_whole(engine):
    (report,) = check(engine, "bitfit", None, "resnet50", train_bn=True)
    moved = report.changed_variables
    assert not any(p.endswith("/kernel") for p in moved)
    assert {p.rsplit("/", 1)[1] for p in moved} == {"bias", "gamma", "beta", "moving_mean",
                                                   "moving_variance"}


# -- norm_only ------------------------------------------------------------------


@pytest.mark.jax
def test_norm_only_trains_gamma_and_beta_in_inference_mode_by_default(engine):
    (report,) = check(engine, "norm_only", None, "resnet50")
    assert report.changed_variables == report.expected_variables
    assert {p.rsplit("/", 1)[1] for p in report.changed_variables} == {"gamma", "beta"}
    assert len(report.changed_variables) == 2 * 53  # every BatchNorm layer of ResNet50
    assert report.statistics == set()  # moving statistics bit-identical


def test_norm_only_with_train_bn_updates_the_statistics_too(engine):
    (report,) = check(engine, "norm_only", None, "resnet50", train_bn=True)
    assert len(report.statistics) == 2 * 53
    assert {p.rsplit("/", 1)[1] for p in report.changed_variables} == {
        "gamma", "beta", "moving_mean", "moving_variance"}


# -- lora -----------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES_JAX_VGG)
def test_lora_trains_only_the_adapters(engine, backbone):
    (report,) = check(engine, "lora", {"rank": 2}, backbone)
    convs = {"vgg16": 13, "resnet50": 53}[backbone]
    assert {p.rsplit("/", 1)[1] for p in report.expected_variables} == {"lora_kernel_a",
                                                                       "lora_kernel_b"}
    assert len(report.expected_variables) == 2 * convs
    # B starts at zero, so A gets no gradient in the first step: only B moves
    assert {p.rsplit("/", 1)[1] for p in report.changed_variables} == {"lora_kernel_b"}
    assert len(report.changed_variables) == convs


def own_kernel(layer):
    """The layer's kernel variable itself (``layer.kernel`` adds the adapters to it)."""
    (kernel,) = [w for w in layer.weights if w.path.endswith("/kernel")]
    return np.array(kernel.numpy())


@pytest.mark.jax
def test_lora_merged_kernel_is_the_base_plus_the_scaled_adapter_product(engine):
    run = build(engine, {"name": "lora", "rank": 2, "alpha": 6.0, "unfreeze_blocks": 2})
    kernels = {layer.name: own_kernel(layer) for layer in run.base.layers
               if getattr(layer, "lora_enabled", False)}
    assert set(kernels) == VGG_BLOCK4 | VGG_BLOCK5
    train(engine, run, steps=2)  # two steps, so that A has moved too
    plain = merged_copy(run.model)
    plain_base = plain.get_layer(run.base.name)
    for name, w0 in kernels.items():
        layer = run.base.get_layer(name)
        assert np.array_equal(own_kernel(layer), w0)  # frozen
        a, b = np.array(layer.lora_kernel_a.numpy()), np.array(layer.lora_kernel_b.numpy())
        assert np.abs(b).max() > 0
        expected = w0 + 6.0 / 2 * (a @ b)
        merged = plain_base.get_layer(name)
        assert not getattr(merged, "lora_enabled", False)
        np.testing.assert_allclose(np.array(merged.kernel.numpy()), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backbone, fmt, suffix", [
    pytest.param("vgg16", "keras", ".keras", marks=pytest.mark.jax),
    ("vgg16", "h5", ".h5"), ("resnet50", "keras", ".keras")])
def test_saved_lora_model_is_plain_and_predicts_the_same(engine, tmp_path, backbone, fmt, suffix):
    run = build(engine, {"name": "lora", "rank": 2}, backbone)
    x, _, _ = train(engine, run, steps=2)
    path = engine.save_model(run.model, tmp_path / f"model{suffix}", fmt)
    loaded = engine.load_model(path)
    assert not [v.path for v in loaded.weights if "lora" in v.path]
    assert "lora" not in json.dumps(loaded.get_config())
    assert len(loaded.weights) == len(run.model.weights) - 2 * len(
        [layer for layer in run.base.layers if getattr(layer, "lora_enabled", False)])
    # a direct call: predict() would trace a graph per model, slow for ResNet50
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)),
                               keras.ops.convert_to_numpy(run.model(x, training=False)),
                               rtol=0, atol=1e-6)


def test_lora_checkpoint_keeps_the_adapters(engine, tmp_path):
    from finetunekit.core.checkpoint import read_checkpoint

    run = build(engine, {"name": "lora", "rank": 2, "unfreeze_blocks": 1})
    path = engine.save_model(run.model, tmp_path / "model.ckpt", "checkpoint", run=run)
    saved = [p for p, _ in read_checkpoint(path).model]
    assert sum("lora_kernel" in p for p in saved) == 2 * 3  # resuming needs them


# -- l2sp -----------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_l2sp_trains_the_whole_base(engine, backbone):
    (report,) = check(engine, "l2sp", {"alpha": 0.1, "beta": 0.01}, backbone)
    assert report.changed == report.expected == {
        name for name in report.weighted if not name.endswith("_bn")}


def _squares(arrays):
    return sum(float(np.sum(np.square(a.astype("float64")))) for a in arrays)


@pytest.mark.jax
def test_l2sp_penalty_equals_its_formula_and_is_in_the_loss(engine):
    alpha, beta = 0.5, 0.25
    run = build(engine, {"name": "l2sp", "alpha": alpha, "beta": beta})
    w0 = {v.path: np.array(v.numpy()) for v in run.base.trainable_weights}
    head = run.head.layer.trainable_weights

    def penalty():
        return float(keras.ops.convert_to_numpy(keras.ops.sum(run.model.losses)))

    start = beta / 2 * _squares([np.array(v.numpy()) for v in head])
    assert penalty() == pytest.approx(start, rel=1e-5)  # w = w0: only the head's term
    x, y = tiny_data().train
    probabilities = run.model.predict(x, verbose=0)[:, 0]
    _, _, loss = train(engine, run)
    eps = keras.backend.epsilon()
    p = np.clip(probabilities.astype("float64"), eps, 1 - eps)
    bce = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    loss = float(np.ravel(loss)[0])
    assert loss == pytest.approx(bce + start, rel=1e-4)  # the step minimised the penalised loss
    after = (alpha / 2 * _squares([np.array(v.numpy()) - w0[v.path] for v in run.base.trainable_weights])
             + beta / 2 * _squares([np.array(v.numpy()) for v in head]))
    assert after > start
    assert penalty() == pytest.approx(after, rel=1e-5)


def test_l2sp_anchors_at_the_weights_training_starts_from(engine):
    """A retrained model's weights arrive after the plan: the pull is toward them."""
    run = build(engine, {"name": "l2sp", "alpha": 1.0, "beta": 0.0})
    kernel = run.base.get_layer("block5_conv3").kernel
    kernel.assign(kernel + 1.0)  # as retrain copies the loaded weights in
    moved = float(keras.ops.convert_to_numpy(keras.ops.sum(run.model.losses)))
    assert moved == pytest.approx(0.5 * np.prod(kernel.shape), rel=1e-5)
    engine.call("finetunekit_run_start", run=run)
    assert float(keras.ops.convert_to_numpy(keras.ops.sum(run.model.losses))) == 0.0


# -- describe -------------------------------------------------------------------


def test_describe_shows_every_stage_with_its_rates_and_batchnorm_mode(engine):
    recipe = tiny_recipe("resnet50", {"name": "gradual", "max_blocks": 1, "train_bn": True},
                         epochs=3, learning_rate=LR)
    plan = json.loads(json.dumps(engine.describe(recipe)["plan"]))  # JSON-ready, as --json
    assert [(s["name"], s["epochs"]) for s in plan] == [
        ("e1_head", 1), ("e2_last_1_blocks", 1), ("e3_last_1_blocks", 1)]
    head, first, second = plan
    assert head["trainable_layers"] == [] and head["trainable_params"] == 2049
    assert all(name.startswith("conv5_") for name in first["trainable_layers"])
    assert list(first["learning_rates"]) == first["trainable_layers"]
    assert all(rate == pytest.approx(LR * 0.1) for rate in first["learning_rates"].values())
    assert all(rate == pytest.approx(LR * 0.15) for rate in second["learning_rates"].values())
    assert {s["batchnorm"] for s in plan} == {"train"}


def test_describe_counts_only_what_the_variable_filters_train(engine):
    lora = engine.describe(tiny_recipe(strategy={"name": "lora", "rank": 1, "unfreeze_blocks": 1}))
    (stage,) = lora["plan"]
    assert stage["variables"] == "is_lora_adapter"
    # block5: three 3x3 convs 512 -> 512; A is (3, 3, 512, 1), B is (1, 512); head 513
    assert stage["trainable_params"] == 3 * (3 * 3 * 512 + 512) + 513
    bitfit = engine.describe(tiny_recipe(strategy="bitfit"))
    assert bitfit["plan"][0]["variables"] == "is_bias"


def test_exact_epsilon_is_what_makes_the_rate_check_exact():
    # Adam's first step is lr * g / (|g| + eps / sqrt(1 - beta_2)); with the tiny epsilon
    # a gradient of 1e-9 still moves by lr (Keras's default 1e-7 would move it by ~3e-4 lr)
    g = 1e-9
    assert g / (g + EXACT_EPSILON / np.sqrt(1 - 0.999)) == pytest.approx(1, rel=1e-5)
