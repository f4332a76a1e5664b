"""Save and load time, and file size, per format, for the seed's VGG16 model.

Run: ``python -m pytest benchmarks/test_persistence.py --benchmark-only``. The model is
built once, outside the timed region; each format is saved into a fresh temporary path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from finetunekit import Engine, Recipe

SEED = {
    "backbone": {"name": "vgg16", "weights": "none", "input_shape": [150, 150, 3]},
    "strategy": {"name": "partial", "unfreeze_from": 15},
    "head": {"pooling": "flatten", "hidden": [256], "classes": 1},
    "optimizer": {"name": "rmsprop", "learning_rate": 2e-5},
}
FORMATS = {"keras": ".keras", "h5": ".h5", "checkpoint": ".ckpt", "weights": ".weights.h5",
           "savedmodel": ".savedmodel"}


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory):
    engine = Engine(entry_points=False)
    folder = tmp_path_factory.mktemp("seed")
    recipe = Recipe.from_dict(SEED)
    (folder / "recipe.toml").write_text(recipe.to_toml())
    run = engine.build(recipe)
    engine.compile_stage(run, 0, steps_per_epoch=1)
    run.model.optimizer.build(run.model.trainable_variables)
    return engine, run, folder


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", list(FORMATS), ids=[f"save-{n}" for n in FORMATS])
def test_save(benchmark, seed_model, name):
    engine, run, folder = seed_model
    counter = iter(range(10**6))

    def save():
        return engine.save_model(run.model, folder / f"save{next(counter)}{FORMATS[name]}", name, run=run)

    path = benchmark.pedantic(save, rounds=3, iterations=1)
    benchmark.extra_info["megabytes"] = round(_size(path) / 1e6, 1)


@pytest.mark.parametrize("name", list(FORMATS), ids=[f"load-{n}" for n in FORMATS])
def test_load(benchmark, seed_model, name):
    engine, run, folder = seed_model
    path = engine.save_model(run.model, folder / f"model{FORMATS[name]}", name, run=run)
    benchmark.extra_info["megabytes"] = round(_size(path) / 1e6, 1)
    benchmark.pedantic(lambda: engine.load_model(path), rounds=3, iterations=1)
