"""Lifecycle plugins with recipe keys and state: the Observer component."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit import Engine, Observer, Param, PluginError, RecipeError, hookimpl
from finetunekit.core.checkpoint import list_checkpoints, read_checkpoint
from finetunekit.testing import tiny_data, tiny_recipe


class Counter:
    """Counts epochs; ``[counter] start`` sets where it starts; resumable."""

    def __init__(self):
        self.count, self.restored = None, None

    @hookimpl
    def finetunekit_register_observers(self, register):
        register(Observer(name="counter", section="counter",
                          params={"start": Param(int, 0, min=0, help="first count")},
                          description="counts epochs", state=self.state, restore=self.restore))

    def state(self):
        return {"count": self.count, "seen": np.arange(self.count)}

    def restore(self, state):
        self.restored = state
        self.count = state["count"]

    @hookimpl
    def finetunekit_run_start(self, run):
        if self.count is None:
            self.count = run.settings["counter"]["start"]

    @hookimpl
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        self.count += 1


def test_an_observer_is_listed_with_its_keys():
    rows = [r for r in Engine([Counter()], entry_points=False).components()
            if r["kind"] == "observer"]
    assert rows == [{"kind": "observer", "name": "counter", "plugin": rows[0]["plugin"],
                     "description": "counts epochs",
                     "params": {"start": {"type": "an integer", "default": 0,
                                          "required": False, "help": "first count"}}}]


def test_its_section_is_validated_and_unknown_sections_are_still_refused():
    engine = Engine([Counter()], entry_points=False)
    engine.validate(tiny_recipe(counter={"start": 3}), data=False)
    with pytest.raises(RecipeError, match="'counter.start' must be >= 0"):
        engine.validate(tiny_recipe(counter={"start": -1}), data=False)
    with pytest.raises(RecipeError, match="Unknown key 'counter.stat'.*Did you mean 'start'"):
        engine.validate(tiny_recipe(counter={"stat": 3}), data=False)
    with pytest.raises(RecipeError, match="Unknown recipe section 'countr'.*Did you mean 'counter'"):
        engine.validate(tiny_recipe(countr={"start": 3}), data=False)
    with pytest.raises(RecipeError, match="Unknown recipe section 'counter'"):
        Engine(entry_points=False).validate(tiny_recipe(counter={}), data=False)
    with pytest.raises(RecipeError, match=r"Unknown recipe section \[stratgy\].*'strategy'"):
        tiny_recipe(stratgy={"name": "full"})


def test_an_observer_cannot_take_an_engine_section():
    class Bad:
        @hookimpl
        def finetunekit_register_observers(self, register):
            register(Observer(name="bad", section="train"))

    with pytest.raises(PluginError, match="observer 'bad' with section 'train'"):
        Engine([Bad()], entry_points=False).components()


@pytest.mark.slow
def test_its_state_travels_in_checkpoints_and_comes_back_on_resume(tmp_path):
    first = Counter()
    recipe = tiny_recipe(epochs=2, counter={"start": 5}, save={"path": str(tmp_path / "run")})
    data = tiny_data()
    run = Engine([first], entry_points=False).run(recipe, data=data)
    assert first.count == 7 and run.settings == {"counter": {"start": 5}}
    state = read_checkpoint(list_checkpoints(tmp_path / "run")[0]).state["observers"]["counter"]
    assert state["count"] == 6
    np.testing.assert_array_equal(state["seen"], np.arange(6))
    (tmp_path / "run" / "model.keras").unlink()  # as if killed before the final save
    for path in list_checkpoints(tmp_path / "run")[1:]:
        path.unlink()  # ... and after epoch 1
    second = Counter()
    Engine([second], entry_points=False).resume(tmp_path / "run", data=data)
    assert second.restored["count"] == 6 and second.count == 7
