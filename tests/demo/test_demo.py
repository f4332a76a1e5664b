"""``finetunekit demo --quick``: the whole flow on the embedded digits, end to end.

One quick demo (a few runs of VGG16 at 32x32 on a handful of images) is shared by the
tests that read its output; it takes about 45 s on two CPU cores, so those tests are
marked ``slow``. The guard against overwriting a previous demo trains nothing and stays
in the default suite.
"""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from finetunekit.core.errors import PersistenceError
from finetunekit.demo import QUICK, SOURCE_WEIGHTS, run_demo, variants

STRATEGIES = ("feature_extraction", "partial", "full")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    console = Console(record=True, width=160)
    rows = run_demo(out, quick=True, console=console)
    return out, rows, console.export_text()


def _target(rows, strategy, weights):
    matches = [r for r in rows if r["task"].startswith("target")
               and r["strategy"] == strategy and r["weights"] == weights]
    assert len(matches) == 1, (strategy, weights, rows)
    return matches[0]


@pytest.mark.slow
def test_one_row_per_strategy_and_the_baseline(quick_demo):
    _, rows, _ = quick_demo
    assert rows[0]["task"].startswith("source") and rows[0]["weights"] == "random"
    for strategy in STRATEGIES:
        _target(rows, strategy, "transferred")
    _target(rows, "full", "random")
    assert len(rows) == 1 + len(variants(QUICK))


@pytest.mark.slow
def test_table_is_printed(quick_demo):
    _, _, text = quick_demo
    for word in (*STRATEGIES, "transferred", "random", "val acc", "trainable"):
        assert word in text


@pytest.mark.slow
def test_demo_json_has_the_same_rows(quick_demo):
    out, rows, _ = quick_demo
    saved = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert saved["rows"] == rows
    assert saved["quick"] is True
    assert saved["settings"]["backbone"] == QUICK.backbone


@pytest.mark.slow
def test_accuracies_are_fractions(quick_demo):
    _, rows, _ = quick_demo
    for row in rows:
        assert 0.0 <= row["val_accuracy"] <= 1.0
        assert 0.0 <= row["train_accuracy"] <= 1.0
        assert row["seconds"] > 0
        assert math.isfinite(row["val_loss"])


@pytest.mark.slow
def test_trainable_params_grow_with_what_the_strategy_unfreezes(quick_demo):
    _, rows, _ = quick_demo
    fe, partial, full = (_target(rows, s, "transferred")["trainable_params"] for s in STRATEGIES)
    assert 0 < fe < partial < full
    assert _target(rows, "full", "random")["trainable_params"] == full
    assert all(row["total_params"] == rows[0]["total_params"] for row in rows)


@pytest.mark.slow
def test_run_folders_and_source_weights_are_written(quick_demo):
    out, rows, _ = quick_demo
    assert (out / SOURCE_WEIGHTS).is_file()
    for row in rows:
        folder = out / row["run_folder"]
        assert (folder / "recipe.toml").is_file() and (folder / "history.json").is_file()
    transferred = (out / _target(rows, "full", "transferred")["run_folder"] / "recipe.toml")
    assert SOURCE_WEIGHTS in transferred.read_text(encoding="utf-8")


@pytest.mark.slow
def test_refuses_to_overwrite_a_previous_demo(quick_demo):
    out, _, _ = quick_demo
    with pytest.raises(PersistenceError, match="already holds a demo"):
        run_demo(out, quick=True, console=Console(quiet=True))


def test_refuses_a_folder_that_holds_a_demo_before_training(tmp_path):
    (tmp_path / "demo.json").write_text("{}", encoding="utf-8")
    with pytest.raises(PersistenceError, match="already holds a demo"):
        run_demo(tmp_path, quick=True, console=Console(quiet=True))
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json"]


def test_demo_compares_its_transfer_runs(quick_demo):
    out, rows, _ = quick_demo
    compared = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert [row["run"] for row in compared] == [row["run_folder"] for row in rows[1:]]
    assert (out / "compare.png").stat().st_size > 10_000
    assert (out / "feature_extraction" / "curves.png").is_file()


def test_fresh_folder_never_reuses_one(tmp_path):
    from finetunekit.demo.runner import fresh_folder

    first = fresh_folder(tmp_path)
    first.mkdir()
    second = fresh_folder(tmp_path)
    assert second != first and second.name.startswith(first.name) and not second.exists()
