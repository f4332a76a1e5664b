"""``bench --merge``: accuracy results measured in parts become one table, compared over
every strategy; parts that measured different things, or disagree on a run both
measured, are refused with what differs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from finetunekit.bench import merge
from finetunekit.bench.accuracy import RANDOM
from finetunekit.cli import main
from finetunekit.core.errors import DataError

SETTINGS = {"seeds": [0, 1, 2], "budgets": [5], "rates": [0.001, 0.01], "test_per_class": 40,
            "holdout": 0.2, "min_steps": 60, "min_epochs": 4, "batch_size": 8, "severity": 3,
            "tune_seed": 1000, "image_size": 32, "weights": None, "data": None,
            "cache": None, "sources": None, "backbones": ["vgg16"]}
TASK = {"test": 200, "pool": 696, "classes": list("56789"), "corruptions": ["noise"],
        "severity": 3}


def part(strategies, accuracies, *, seeds=(0, 1, 2), **changed):
    """A bench.json of an accuracy run: `accuracies` is {strategy: [ID per seed]}."""
    rows = [{"backbone": "vgg16", "budget": "5", "labels_per_class": 5, "strategy": name,
             "seed": seed, "rate": 0.001, "epochs": 15, "diverged": False,
             "id_accuracy": value, "ood_accuracy": value - 0.1,
             "ood_by_corruption": {"noise": value - 0.1}, "trainable_params": 10,
             "seconds": 1.0 + seed}
            for name in [*strategies, RANDOM] for seed, value in zip(seeds, accuracies[name])]
    tuning = [{"backbone": "vgg16", "budget": "5", "strategy": name, "rate": 0.001,
               "trials": [], "fit": 20, "held_out": 5} for name in [*strategies, RANDOM]]
    settings = {**SETTINGS, "strategies": list(strategies), "seeds": list(seeds), **changed}
    return {"command": f"finetunekit bench --accuracy --strategies {','.join(strategies)}",
            "backend": "tensorflow", "device": "cpu",
            "accuracy": {"settings": settings, "task": TASK, "rows": rows, "tuning": tuning,
                         "not_applicable": {},
                         "sources": {"vgg16": {"val_accuracy": 0.97, "recipe": {"r": 1}, "seconds": 9.0,
                                               "cached": False}}}}


BASELINE = [0.50, 0.52, 0.54]


def test_parts_merge_into_one_table_compared_over_every_strategy():
    first = part(["full"], {"full": [0.80, 0.82, 0.84], RANDOM: BASELINE})
    second = part(["bitfit"], {"bitfit": [0.60, 0.63, 0.66], RANDOM: BASELINE})
    second["accuracy"]["sources"]["vgg16"]["cached"] = True  # the same source, from cache
    result = merge.merge([first, second], ["a", "b"])["accuracy"]
    assert [(r["strategy"], r["seed"]) for r in result["rows"]] == [
        (name, seed) for name in ("full", "bitfit", RANDOM) for seed in (0, 1, 2)]
    assert result["settings"]["strategies"] == ["full", "bitfit"]
    by_name = {e["strategy"]: e for e in result["summary"]}
    # bitfit was measured without full; merged, it is compared with full, the best
    assert by_name["bitfit"]["id"]["best"] == "full" and by_name["bitfit"]["id"]["loses"]
    assert by_name["full"]["id"]["paired"] is None
    assert [t["strategy"] for t in result["tuning"]] == ["full", RANDOM, "bitfit"]


def test_a_run_both_parts_measured_must_agree():
    first = part(["full"], {"full": [0.8] * 3, RANDOM: BASELINE})
    second = part(["bitfit"], {"bitfit": [0.6] * 3, RANDOM: [0.50, 0.52, 0.55]})
    with pytest.raises(DataError, match=r"full_random on vgg16, 5 labels, seed 2 was "
                                        r"measured in 'a' and 'b' with different id_accuracy"):
        merge.merge([first, second], ["a", "b"])


@pytest.mark.parametrize("changed, what", [
    ({"rates": [0.001]}, "setting 'rates'"),
    ({"seeds": [0, 1]}, "setting 'seeds'"),
])
def test_parts_that_measured_differently_are_refused_naming_the_difference(changed, what):
    first = part(["full"], {"full": [0.8] * 3, RANDOM: BASELINE})
    seeds = changed.get("seeds", [0, 1, 2])
    other = part(["bitfit"], {"bitfit": [0.6] * 3, RANDOM: BASELINE}, seeds=seeds,
                 **{k: v for k, v in changed.items() if k != "seeds"})
    with pytest.raises(DataError, match=f"'b' and 'a' differ in their {what}"):
        merge.merge([first, other], ["a", "b"])


def test_another_source_model_is_refused():
    first = part(["full"], {"full": [0.8] * 3, RANDOM: BASELINE})
    second = part(["bitfit"], {"bitfit": [0.6] * 3, RANDOM: BASELINE})
    second["accuracy"]["sources"]["vgg16"]["recipe"] = {"r": 2}
    with pytest.raises(DataError, match="source model of vgg16"):
        merge.merge([first, second], ["a", "b"])


def test_the_command_writes_the_merged_result_and_refuses_bad_folders(tmp_path):
    for name, result in (("a", part(["full"], {"full": [0.8] * 3, RANDOM: BASELINE})),
                         ("b", part(["bitfit"], {"bitfit": [0.6] * 3, RANDOM: BASELINE}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(result), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(main, ["bench", "--merge", str(tmp_path / "a"), "--merge",
                              str(tmp_path / "b"), "--out", str(tmp_path / "ab")])
    assert ok.exit_code == 0, ok.output
    saved = json.loads((tmp_path / "ab" / "bench.json").read_text(encoding="utf-8"))
    assert len(saved["accuracy"]["rows"]) == 9 and len(saved["merged_from"]) == 2
    assert "| bitfit |" in (tmp_path / "ab" / "bench.md").read_text(encoding="utf-8")
    assert (tmp_path / "ab" / "accuracy_vs_labels.png").is_file()

    missing = runner.invoke(main, ["bench", "--merge", str(tmp_path / "a"), "--merge",
                                   str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "has no bench.json" in missing.output
    alone = runner.invoke(main, ["bench", "--merge", str(tmp_path / "a"),
                                 "--out", str(tmp_path / "d")])
    assert alone.exit_code == 2 and "two or more result folders" in alone.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
