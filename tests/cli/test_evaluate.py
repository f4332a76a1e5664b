"""``finetunekit evaluate``, ``predict`` and ``compare`` on two tiny run folders trained
once for the module (folder source, 3 classes, 32x32, one epoch each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from finetunekit.cli.main import make_cli

CLASSES = ("cat", "dog", "owl")


def _images(root, per_class):
    rng = np.random.default_rng(len(str(root)))
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
            pixels[..., c] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from finetunekit import Engine
    from finetunekit.testing import tiny_recipe

    root = tmp_path_factory.mktemp("evaluate")
    train, validation = _images(root / "train", 4), _images(root / "validation", 2)
    (validation / "dog" / "broken.png").write_bytes(b"not an image")
    engine = Engine(entry_points=False)
    folders = []
    for name, strategy in (("probe", "feature_extraction"), ("bitfit", "bitfit")):
        recipe = tiny_recipe(strategy=strategy, classes=3, save={"path": str(root / name)},
                             data={"source": "folder", "train": str(train),
                                   "validation": str(validation)})
        engine.run(recipe)
        folders.append(root / name)
    return root, validation, folders


def _invoke(*args):
    return CliRunner().invoke(make_cli(entry_points=False), [str(a) for a in args])


def test_evaluate_writes_the_results_folder(runs):
    root, validation, (probe, _) = runs
    result = _invoke("evaluate", probe, "--data", validation)
    assert result.exit_code == 0, result.output
    out = probe / "evaluation"
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png", "errors.png", "metrics.json", "report.md"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(CLASSES) and metrics["images"] == 6
    assert metrics["skipped"] == 1 and metrics["skipped_files"]["not_an_image"][0].endswith("broken.png")
    assert set(metrics["per_class"]) == set(CLASSES) and "2" in metrics["top_k_accuracy"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    assert "1 file(s) skipped" in result.output
    report = (out / "report.md").read_text()
    assert "| owl |" in report and "broken.png" in report
    # a second evaluation gets a fresh folder; an existing --out is refused
    assert _invoke("evaluate", probe, "--data", validation).exit_code == 0
    assert (probe / "evaluation-2" / "metrics.json").is_file()
    refused = _invoke("evaluate", probe, "--data", validation, "--out", out)
    assert refused.exit_code == 2 and "never overwrites" in refused.output


def test_evaluate_reads_a_csv_with_the_models_class_names(runs, tmp_path):
    root, validation, (probe, _) = runs
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(
        f"{validation / name / '0.png'},{name}\n" for name in CLASSES) + "x.png,yak\n")
    out = tmp_path / "results"
    assert _invoke("evaluate", probe / "model.keras", "--data", listing, "--out", out).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["skipped_files"] == {"unknown_label": [f"{listing}:5 (label 'yak')"]}


def test_predict_prints_and_writes(runs, tmp_path):
    root, validation, (probe, _) = runs
    shown = _invoke("predict", probe, validation / "cat", "--top-k", "2", "--tta")
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.output.splitlines() if "\t" in line]
    assert len(lines) == 2 and all(len(line.split("\t")[1].split("  ")) == 2 for line in lines)
    out = tmp_path / "preds.json"
    written = _invoke("predict", probe, validation, "--out", out)
    assert written.exit_code == 0 and "not an image" in written.output
    result = json.loads(out.read_text())
    assert len(result["predictions"]) == 6 and result["predictions"][0]["predicted"] in CLASSES
    assert _invoke("predict", probe, validation, "--out", out).exit_code == 2
    csv_out = tmp_path / "preds.csv"
    assert _invoke("predict", probe, validation / "owl", "--out", csv_out, "--top-k", "3").exit_code == 0
    assert csv_out.read_text().splitlines()[0] == (
        "path,predicted,confidence,class_1,probability_1,class_2,probability_2,class_3,probability_3")


def test_compare_writes_table_json_and_plot(runs, tmp_path):
    root, _, folders = runs
    result = _invoke("compare", *folders, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "| probe | feature_extraction |" in result.output and "| bitfit | bitfit |" in result.output
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [row["strategy"] for row in rows] == ["feature_extraction", "bitfit"]
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]
    assert all(row["images_per_second"] and row["best_val_accuracy"] is not None for row in rows)
    assert _invoke("compare", *folders, "--out", tmp_path / "cmp").exit_code == 2
