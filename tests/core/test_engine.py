"""The engine's flow: what a run reports is what happened in it."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit import Data, Engine
from finetunekit.testing import tiny_recipe


def test_each_stage_counts_its_own_training_samples_only():
    # 64 training and 10 validation images: an accuracy that counted the previous
    # stage's validation batches too would be k/74, not k/64
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    xv = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    data = Data(train=(x, np.arange(64) % 3), validation=(xv, np.arange(10) % 3))
    recipe = tiny_recipe(strategy={"name": "gradual", "every": 1}, classes=3, epochs=4,
                         batch_size=8)
    run = Engine(entry_points=False).run(recipe, data=data, save=False)
    assert len({row["stage"] for row in run.history}) == 4
    for row in run.history:
        assert abs(row["accuracy"] * 64 - round(row["accuracy"] * 64)) < 1e-4, row
        assert abs(row["val_accuracy"] * 10 - round(row["val_accuracy"] * 10)) < 1e-4, row


def test_describe_plan_json_and_the_run_agree_on_the_layers_that_train(tmp_path):
    import json

    from finetunekit.testing import tiny_data

    engine = Engine(entry_points=False)
    recipe = tiny_recipe("mobilenetv2", {"name": "partial", "unfreeze_blocks": 1},
                         save={"path": str(tmp_path / "run")})
    described = engine.describe(recipe)["plan"][0]["trained_layers"]
    run = engine.run(recipe, data=tiny_data())
    saved = json.loads((tmp_path / "run" / "plan.json").read_text())["stages"][0]["trained_layers"]
    actually = [layer.name for layer in run.base.layers
                if any(w.trainable for w in layer.weights)]
    assert described == saved == actually
    planned = run.plan.stages[0].trainable
    # the plan names the block's BatchNorm and weightless layers too; none of them trains
    assert set(actually) < set(planned)
    assert not [name for name in actually if "bn" in name.lower()]


# -- callbacks and stopping ----------------------------------------------------------


class _Recorder:
    """A Keras callback that records what it is told, built inside the test module so
    that importing keras stays lazy for the rest."""

    @staticmethod
    def make():
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.calls, self.models = [], []

            def on_train_begin(self, logs=None):
                self.calls.append("train_begin")

            def on_epoch_begin(self, epoch, logs=None):
                self.calls.append(("epoch_begin", epoch))
                self.models.append(self.model)

            def on_epoch_end(self, epoch, logs=None):
                self.calls.append(("epoch_end", epoch, sorted(logs)))

            def on_train_end(self, logs=None):
                self.calls.append("train_end")

        return Recorder()


def _calls(loop=None):
    from finetunekit.testing import tiny_data

    engine = Engine(entry_points=False)
    if loop is not None:
        engine.distributions.epoch_loop = lambda name: loop
    recorder = _Recorder.make()
    run = engine.run(tiny_recipe(strategy="two_stage", epochs=2), data=tiny_data(),
                     save=False, callbacks=[recorder])
    return recorder, run


@pytest.mark.slow
def test_callbacks_see_one_training_across_stages_with_global_epochs():
    recorder, run = _calls()
    logs = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert recorder.calls == ["train_begin", ("epoch_begin", 0), ("epoch_end", 0, logs),
                              ("epoch_begin", 1), ("epoch_end", 1, logs), "train_end"]
    assert len({row["stage"] for row in run.history}) == 2
    assert recorder.models[-1] is run.model  # the stage's model (the first: the cached head)
    assert run.stopped is None


@pytest.mark.slow
def test_callbacks_get_the_same_calls_under_the_multi_worker_epoch_loop():
    # the multi_worker path trains with distributions.collective_epoch; run it on
    # TensorFlow's default strategy (one process) to check the callbacks' side
    import functools
    import weakref

    import tensorflow as tf

    from finetunekit.core.distribution import collective_epoch

    loop = functools.partial(collective_epoch, tf.distribute.get_strategy(),
                             weakref.WeakKeyDictionary())
    assert _calls(loop)[0].calls == _calls()[0].calls


def test_keras_early_stopping_ends_the_run_with_a_complete_run_folder(tmp_path):
    import json

    import keras

    from finetunekit.testing import tiny_data

    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=100.0, patience=1)
    recipe = tiny_recipe(epochs=4, save={"path": str(tmp_path / "run")})
    run = Engine(entry_points=False).run(recipe, data=tiny_data(), callbacks=[stop])
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.stopped == {"epoch": 2, "reason": "EarlyStopping set model.stop_training"}
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["stopped"] == run.stopped
    assert (tmp_path / "run" / "model.keras").is_file()
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


def test_recipe_early_stopping_restores_the_best_epoch_weights():
    import keras

    from finetunekit.testing import tiny_data

    class Keep(keras.callbacks.Callback):
        def __init__(self, model):
            super().__init__()
            self.whole, self.weights = model, []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.whole.get_weights())

    engine = Engine(entry_points=False)
    recipe = tiny_recipe(epochs=4, train={"early_stopping": {
        "monitor": "loss", "min_delta": 100.0, "patience": 2, "restore_best": True}})
    run = engine.build(recipe)
    keep = Keep(run.model)
    engine.fit(run, tiny_data(), callbacks=[keep])
    assert run.stopped["epoch"] == 3
    assert run.stopped["reason"].startswith("early stopping: loss did not improve for 2 epoch(s)")
    for got, best in zip(run.model.get_weights(), keep.weights[0]):
        np.testing.assert_array_equal(got, best)


def test_a_lifecycle_hook_can_request_a_stop():
    from finetunekit import hookimpl
    from finetunekit.testing import tiny_data

    class StopAfterTwo:
        @hookimpl
        def finetunekit_epoch_end(self, run, stage, epoch, logs):
            if epoch == 2:
                run.request_stop("enough")

    run = Engine([StopAfterTwo()], entry_points=False).run(
        tiny_recipe(epochs=5), data=tiny_data(), save=False)
    assert len(run.history) == 2 and run.stopped == {"epoch": 2, "reason": "enough"}


def test_early_stopping_on_a_metric_the_run_does_not_log_names_the_ones_it_does():
    from finetunekit import Data, RecipeError
    from finetunekit.testing import tiny_data

    train = tiny_data().train
    recipe = tiny_recipe(epochs=2, train={"early_stopping": {}})  # monitors val_loss
    with pytest.raises(RecipeError, match="monitor = 'val_loss' is not among .*: accuracy, loss"):
        Engine(entry_points=False).run(recipe, data=Data(train=train), save=False)


def test_a_non_finite_loss_stops_keeping_the_last_good_checkpoint_and_no_model(tmp_path):
    import keras

    from finetunekit import NonFiniteLossError
    from finetunekit.core.checkpoint import list_checkpoints
    from finetunekit.testing import tiny_data

    class Poison(keras.callbacks.Callback):  # what a too-high learning rate ends in
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                weight = self.model.trainable_weights[0]
                weight.assign(np.full(weight.shape, np.nan, "float32"))

    recipe = tiny_recipe(epochs=3, save={"path": str(tmp_path / "run")})
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 2 .*Lower "
                                                 "optimizer.learning_rate"):
        Engine(entry_points=False).run(recipe, data=tiny_data(), callbacks=[Poison()])
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["epoch-0001.ckpt"]
    assert not list((tmp_path / "run").glob("model.*"))
