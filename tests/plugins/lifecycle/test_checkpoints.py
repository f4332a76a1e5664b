"""The epoch checkpoints' interval (``save.checkpoint_every``): which epochs are written,
and a run resumed from an older checkpoint ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import Engine
from finetunekit.core.checkpoint import list_checkpoints, read_checkpoint
from finetunekit.testing import tiny_data, tiny_recipe


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def _recipe(folder, epochs=5, every=2, **train):
    return tiny_recipe(epochs=epochs, train={"seed": 4, **train},
                       save={"path": str(folder), "keep_checkpoints": 10,
                             "checkpoint_every": every})


def _epochs(folder) -> list[int]:
    return [read_checkpoint(path).epoch for path in list_checkpoints(folder)]


def test_every_n_epochs_and_the_last_and_a_resume_replays_the_rest_bit_identically(tmp_path):
    data = tiny_data()
    reference = Engine(entry_points=False).run(_recipe(tmp_path / "whole"), data=data)
    assert _epochs(tmp_path / "whole") == [2, 4, 5]
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 3: its checkpoint is epoch 2's
        Engine(entry_points=False).run(_recipe(tmp_path / "cut"), data=data,
                                       callbacks=[Interrupt(at=3)])
    assert _epochs(tmp_path / "cut") == [2]
    resumed = Engine(entry_points=False).resume(tmp_path / "cut", data=data)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.history == reference.history
    for expected, got in zip(reference.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_a_run_that_stops_early_checkpoints_where_it_stopped(tmp_path):
    # the loss never improves by 100: early stopping ends the run after epoch 3
    recipe = _recipe(tmp_path / "run", epochs=8, every=5, early_stopping={
        "monitor": "loss", "min_delta": 100.0, "patience": 2})
    run = Engine(entry_points=False).run(recipe, data=tiny_data())
    assert run.stopped["epoch"] == 3
    assert _epochs(tmp_path / "run") == [3]
    with pytest.raises(Exception, match="is finished"):
        Engine(entry_points=False).resume(tmp_path / "run", data=tiny_data())


def test_the_interval_must_be_a_positive_number_of_epochs(tmp_path):
    from finetunekit import RecipeError

    with pytest.raises(RecipeError, match="checkpoint_every"):
        _recipe(tmp_path / "run", every=0)
