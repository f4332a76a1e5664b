"""``finetunekit evaluate``'s work: load labelled images the way training loads them,
score the model (:meth:`finetunekit.Engine.evaluate`), and write the results folder:
``metrics.json``, ``report.md``, ``confusion_matrix.png`` and ``errors.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetunekit.core.components import Data, DataContext
from finetunekit.core.errors import PersistenceError
from finetunekit.core.inference import Evaluation, LoadedModel
from finetunekit.core.run_folder import atomic_write

EVALUATION_FILES = ("metrics.json", "report.md", "confusion_matrix.png", "errors.png")
"""The files an evaluation writes."""

ERRORS_SHOWN = 16
"""Misclassified images in ``errors.png``, most confidently wrong first."""


def load_labelled(engine: Any, loaded: LoadedModel, path: str | Path, *, strict: bool = False,
                  batch_size: int = 32) -> Data:
    """Decode a folder of class sub-folders, or a CSV image list (``path,label``), at the
    model's input size with the training data's rules: the ``folder`` or ``csv`` data
    source, unusable files skipped and reported in ``Data.report`` (refused if `strict`).

    A CSV's labels are matched to the model's class names (a row with another label is
    skipped, counted as ``unknown_label``); a folder's sub-folders must be among them.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv" and path.is_file():
        source, params = "csv", {"train": str(path), "classes": list(loaded.class_names)}
    else:
        source, params = "folder", {"train": str(path)}
    component = engine.catalogue.get("data", source)
    context = DataContext(input_shape=tuple(loaded.input_shape), batch_size=batch_size, seed=0)
    return engine.catalogue.call("data", component, "load", context,
                                 params={**params, "strict": strict},
                                 expect=(lambda d: isinstance(d, Data), "a finetunekit.Data"))


def default_out(model_path: Path) -> Path:
    """``evaluation``, ``evaluation-2``, ... in the run folder (or the model file's folder):
    the first that does not exist yet."""
    folder = model_path if model_path.is_dir() and not model_path.suffix else model_path.parent
    out, n = folder / "evaluation", 1
    while out.exists():
        n += 1
        out = folder / f"evaluation-{n}"
    return out


def check_out(out: Path) -> None:
    """Refuse a folder that exists already: results are never overwritten."""
    if out.exists():
        raise PersistenceError(
            f"'{out}' exists already; evaluate never overwrites results. Pass another --out, "
            "or leave --out out to get a fresh evaluation folder beside the model.")


def error_rows(evaluation: Evaluation, n: int = ERRORS_SHOWN) -> list[dict[str, Any]]:
    """The `n` most confidently wrong images: index, true and predicted class, confidence."""
    names = evaluation.class_names
    return [{"index": i, "true": names[evaluation.labels[i]],
             "predicted": names[evaluation.predicted[i]],
             "confidence": float(evaluation.probabilities[i].max())}
            for i in evaluation.worst_errors(n)]


def write_evaluation(out: Path, evaluation: Evaluation, images: Any, *, model: str,
                     data: str) -> Path:
    """Write the results folder (which must not exist yet)."""
    from finetunekit.results.plots import confusion_figure, errors_figure, save_png

    check_out(out)
    out.mkdir(parents=True)
    metrics = {"model": model, "data": data, **evaluation.metrics}
    errors = error_rows(evaluation)
    metrics["worst_errors"] = errors
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write(out / "report.md", evaluation_markdown(metrics))
    save_png(confusion_figure(metrics["confusion_matrix"], evaluation.class_names,
                              f"Confusion matrix: {metrics['images']} images of {Path(data).name}"),
             out / "confusion_matrix.png")
    save_png(errors_figure(images[[row["index"] for row in errors]] if errors else images[:0],
                           errors, f"Most confident mistakes ({len(errors)} of "
                                   f"{int((evaluation.predicted != evaluation.labels).sum())})"),
             out / "errors.png")
    return out


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def evaluation_markdown(m: dict[str, Any]) -> str:
    """``report.md`` of an evaluation."""
    lines = [f"# Evaluation of {m['model']}", "", f"Data: `{m['data']}`, {m['images']} images"
             + (f", {m['skipped']} file(s) skipped" if m.get("skipped") else "") + ".", "",
             "| metric | value |", "| --- | ---: |",
             f"| loss (cross-entropy) | {_f(m['loss'])} |", f"| accuracy | {_f(m['accuracy'])} |"]
    lines += [f"| top-{k} accuracy | {_f(v)} |" for k, v in m["top_k_accuracy"].items()]
    if "roc_auc" in m:
        lines.append(f"| ROC-AUC | {_f(m['roc_auc'])} |")
    lines.append(f"| expected calibration error | {_f(m['expected_calibration_error'])} |")
    lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in m["per_class"].items():
        lines.append(f"| {name} | {_f(row['precision'])} | {_f(row['recall'])} | "
                     f"{_f(row['f1'])} | {row['support']} |")
    for average in ("macro", "weighted"):
        a = m[f"{average}_avg"]
        lines.append(f"| *{average} average* | {_f(a['precision'])} | {_f(a['recall'])} | "
                     f"{_f(a['f1'])} | {m['images']} |")
    lines += ["", "## Confusion matrix", "", "Rows: true class; columns: predicted class.", "",
              "![confusion matrix](confusion_matrix.png)", "",
              "| true \\ predicted | " + " | ".join(m["classes"]) + " |",
              "| --- |" + " ---: |" * len(m["classes"])]
    for name, row in zip(m["classes"], m["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "## Most confident mistakes", "", "![errors](errors.png)", ""]
    skipped = m.get("skipped_files") or {}
    if skipped:
        lines += ["## Skipped files", ""]
        for reason, entries in skipped.items():
            lines += [f"- {reason}: {len(entries)}"] + [f"  - `{e}`" for e in entries[:20]]
        lines.append("")
    return "\n".join(lines)
