"""The engine's flow: what a run reports is what happened in it."""

from __future__ import annotations

import numpy as np

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
