"""The accuracy benchmark's protocol: the test split is never drawn from or tuned on,
budgets are nested, paired seeds share the head's initialisation, and a tiny run through
``run_bench`` writes bench.json, bench.md and both figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finetunekit import Engine
from finetunekit.bench import accuracy as acc
from finetunekit.bench import task as task_module
from finetunekit.bench.runner import run_bench
from finetunekit.bench.sources import SourceSettings
from finetunekit.core.errors import DataError


@pytest.fixture(scope="module")
def task():
    return task_module.digits_task(32, test_per_class=20)


def test_the_test_split_is_fixed_and_apart_from_the_pool(task):
    assert len(task.test) == 100 and not set(task.test) & set(task.pool)
    assert len(task.test) + len(task.pool) == len(task.labels)
    again = task_module.digits_task(32, test_per_class=20)
    assert np.array_equal(again.test, task.test)
    assert np.bincount(task.labels[task.test]).tolist() == [20] * 5


@pytest.mark.parametrize("budget", [2, 5, 50, None])
def test_tuning_and_training_labels_never_touch_the_test_split(task, budget):
    for seed in (0, 1, 1000):
        drawn = task_module.draw(task, budget, seed)
        assert set(drawn) <= set(task.pool) and not set(drawn) & set(task.test)
        fit, held = task_module.tuning_split(task, drawn, 0.2)
        assert not set(fit) & set(held)
        assert set(fit) | set(held) == set(drawn)
        assert not (set(fit) | set(held)) & set(task.test)
        assert np.bincount(task.labels[held], minlength=5).min() >= 1


@pytest.mark.parametrize("budget, folds", [(5, 4), (10, 2), (20, 1), (50, 1), (2, 2)])
def test_small_budgets_tune_on_disjoint_folds_that_pool_enough_held_out_labels(task, budget,
                                                                              folds):
    drawn = task_module.draw(task, budget, 1000)
    splits = task_module.tuning_folds(task, drawn, 0.2, min_held_out=4)
    assert len(splits) == folds
    single = task_module.tuning_split(task, drawn, 0.2)
    assert all(np.array_equal(a, b) for a, b in zip(splits[0], single))  # fold 0: the old split
    held = np.concatenate([h for _, h in splits])
    assert len(set(held)) == len(held)  # every label held out at most once
    for fit, out in splits:
        assert set(fit) | set(out) == set(drawn) and not set(fit) & set(out)
        assert np.bincount(task.labels[fit], minlength=5).min() >= 1
    per_class = np.bincount(task.labels[held], minlength=5)
    assert per_class.min() >= min(4, budget)  # 2 labels: both held out once, no more


def test_tuning_pools_every_folds_held_out_images_and_a_rate_diverging_on_one_scores_nothing(
        task, monkeypatch):
    from types import SimpleNamespace

    trained = []

    def fake_train(engine, source, strategy, rate, seed, task_, fit, settings):
        trained.append((rate, len(fit)))
        if rate == 1e-2 and [r for r, _ in trained].count(1e-2) == 2:  # its 2nd fold
            return None, 1
        return SimpleNamespace(model=rate), 1

    def fake_score(model, images, labels):  # 1e-3 is right on exactly one image per fold
        right = np.zeros(len(labels), bool)
        right[: 1 if model == 1e-3 else 0] = True
        return float(right.mean()), 1.0 / model, right

    monkeypatch.setattr(acc, "train", fake_train)
    monkeypatch.setattr(acc, "score", fake_score)
    settings = acc.AccuracySettings(strategies=("full",), rates=(1e-4, 1e-3, 1e-2))
    tuned = acc.tune(None, None, "full", 5, task, settings, log=lambda line: None)
    assert tuned["folds"] == 4 and tuned["held_out"] == 5 and tuned["fit"] == 20
    by_rate = {t["rate"]: t for t in tuned["trials"]}
    assert by_rate[1e-3]["held_out_accuracy"] == 4 / 20  # one right per fold, 20 pooled
    assert by_rate[1e-4]["held_out_accuracy"] == 0.0 and not by_rate[1e-4]["diverged"]
    assert by_rate[1e-2]["diverged"] and by_rate[1e-2]["held_out_accuracy"] == float("-inf")
    assert tuned["rate"] == 1e-3
    assert [rate for rate, _ in trained] == [1e-4] * 4 + [1e-3] * 4 + [1e-2] * 2


def test_budgets_are_nested_and_paired_by_seed(task):
    small, large = task_module.draw(task, 5, seed=3), task_module.draw(task, 10, seed=3)
    assert set(small) <= set(large)
    assert np.array_equal(small, task_module.draw(task, 5, seed=3))
    assert not np.array_equal(small, task_module.draw(task, 5, seed=4))
    assert np.bincount(task.labels[small]).tolist() == [5] * 5


def test_a_budget_too_small_to_tune_or_too_large_for_the_pool_is_refused(task):
    with pytest.raises(DataError, match="at least 2 labels per class"):
        task_module.tuning_split(task, task_module.draw(task, 1, 0), 0.2)
    with pytest.raises(DataError, match="Lower the budget"):
        task_module.draw(task, 10_000, 0)


def test_runs_are_long_enough_in_steps():
    settings = acc.AccuracySettings(strategies=("full",), min_steps=60, min_epochs=4,
                                    batch_size=8)
    assert acc.epochs_for(settings, 25) == 15  # 4 steps an epoch
    assert acc.epochs_for(settings, 700) == 4  # 88 steps an epoch


@pytest.mark.jax
def test_the_same_seed_gives_every_strategy_the_same_head(tmp_path):
    from finetunekit.bench.sources import Source, backbone_section

    engine = Engine(entry_points=False)
    source = Source("vgg16", backbone_section("vgg16", 32), "none")
    settings = acc.AccuracySettings(strategies=("full",))
    heads = [engine.build(acc.recipe_for(source, name, 1e-3, 4, seed, settings, 5)).head.layer
             for name, seed in (("feature_extraction", 0), ("lora", 0), ("full", 1))]
    first, second, other = ([np.asarray(w) for w in h.get_weights()] for h in heads)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.jax  # the benchmark runs on either backend
def test_a_tiny_accuracy_run_writes_every_output(tmp_path):
    tiny = SourceSettings(train_per_class=4, validation_per_class=2, epochs=1, batch_size=8)
    result = run_bench(
        backbones=["vgg16"], strategies=["feature_extraction"], image_size=None,
        batch_sizes=[], precisions=[], steps=1, repeats=1, accuracy=True, seeds=1,
        quick=True, weights=None, data=None, out=tmp_path / "out", command="test",
        accuracy_options={"budgets": (2,), "rates": (1e-3,), "min_steps": 1, "min_epochs": 1,
                          "test_per_class": 4, "cache": str(tmp_path / "cache"),
                          "sources": {"vgg16": tiny}})
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["accuracy_vs_labels.png", "bench.json", "bench.md", "id_vs_ood.png"]
    saved = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    rows = saved["accuracy"]["rows"]
    assert [(r["strategy"], r["seed"], r["budget"]) for r in rows] == [
        ("feature_extraction", 0, "2"), (acc.RANDOM, 0, "2")]
    assert all(0 <= r["id_accuracy"] <= 1 and 0 <= r["ood_accuracy"] <= 1 for r in rows)
    assert {t["strategy"]: t["rate"] for t in saved["accuracy"]["tuning"]} == {
        "feature_extraction": 1e-3, acc.RANDOM: 1e-3}
    assert result["accuracy"]["sources"]["vgg16"]["cached"] is False
    assert "| 2 (2) | feature_extraction |" in (tmp_path / "out" / "bench.md").read_text()
    assert list((tmp_path / "cache").iterdir())  # the source is cached for the next run


def test_runs_isolated_in_child_processes_measure_what_they_measure_in_process():
    settings = acc.AccuracySettings(
        strategies=("feature_extraction",), backbones=("vgg16",), seeds=(0,), budgets=(2,),
        rates=(1e-2,), min_steps=2, min_epochs=1, test_per_class=4, weights="none")
    results = []
    for isolate in (False, True):
        rows = []
        results.append(acc.run_accuracy(settings, Engine(entry_points=False), log=lambda l: None,
                                        on_row=rows.append, isolate=isolate))
        assert rows == results[-1]["rows"]
    for measured in results:
        for row in measured["rows"]:
            del row["seconds"]
    assert [r["strategy"] for r in results[0]["rows"]] == ["feature_extraction", acc.RANDOM]
    assert results[1]["rows"] == results[0]["rows"]
    assert results[1]["tuning"] == results[0]["tuning"]  # held-out losses to the last bit
