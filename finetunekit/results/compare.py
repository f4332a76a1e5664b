"""``finetunekit compare``: several run folders side by side, as one table (Markdown and
JSON) and their validation curves overlaid (PNG)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError
from finetunekit.core.recipe import Recipe
from finetunekit.core.run_folder import atomic_write

COMPARE_FILES = ("compare.md", "compare.json", "compare.png")
"""What ``compare --out DIR`` writes."""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_run(folder: str | Path, name: str | None = None) -> dict[str, Any]:
    """One run folder as a table row, with its history: ``report.json`` where the run
    wrote one (timing), else ``history.json``, ``plan.json`` and ``recipe.toml``."""
    folder = Path(folder)
    report = _json(folder / "report.json") or {}
    history = _json(folder / "history.json") or report.get("history")
    if not history:
        raise PersistenceError(
            f"'{folder}' is not a run folder with a history (history.json or report.json). "
            "Give folders written by 'finetunekit run'.")
    strategy = report.get("strategy")
    if strategy is None and (folder / "recipe.toml").is_file():
        strategy = Recipe.from_toml(folder / "recipe.toml")["strategy"]["name"]
    from finetunekit.results.plots import metric_names

    metric = next(iter(metric_names(history)), None)
    validation = [row for row in history if "val_loss" in row]
    final = history[-1]
    row: dict[str, Any] = {
        "run": name or folder.name, "path": str(folder), "strategy": strategy,
        "trainable_params": report.get("trainable_params"), "metric": metric,
        "epochs": len(history), "seconds": report.get("wall_seconds"),
        "images_per_second": report.get("images_per_second"),
        "final_val_loss": final.get("val_loss"),
        "best_val_loss": min((r["val_loss"] for r in validation), default=None),
    }
    if metric:
        values = [r[f"val_{metric}"] for r in history if f"val_{metric}" in r]
        row[f"final_val_{metric}"] = final.get(f"val_{metric}")
        row[f"best_val_{metric}"] = max(values, default=None)
    row["history"] = history
    return row


def compare_rows(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every run's row; names made unique (``parent/name``) if two folders share one."""
    rows = [read_run(folder) for folder in folders]
    names = [row["run"] for row in rows]
    for row, folder in zip(rows, folders):
        if names.count(row["run"]) > 1:
            row["run"] = str(Path(folder))
    return rows


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if column in ("seconds", "images_per_second") else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def compare_markdown(rows: list[dict[str, Any]]) -> str:
    """The table: one line per run."""
    metric = next((row["metric"] for row in rows if row["metric"]), None)
    columns = ["run", "strategy", "trainable_params", "epochs", "best_val_loss", "final_val_loss"]
    if metric:
        columns += [f"best_val_{metric}", f"final_val_{metric}"]
    columns += ["seconds", "images_per_second"]
    header = [c.replace("_", " ") for c in columns]
    lines = ["| " + " | ".join(header) + " |",
             "| --- | --- |" + " ---: |" * (len(columns) - 2)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def compare_figure_of(rows: list[dict[str, Any]]):
    from finetunekit.results.plots import compare_figure

    metric = next((row["metric"] for row in rows if row["metric"]), "accuracy")
    def label(row: dict[str, Any]) -> str:
        shown = row["strategy"] and row["strategy"] != row["run"]
        return f"{row['run']} ({row['strategy']})" if shown else row["run"]

    return compare_figure([(label(row), row["history"]) for row in rows], metric,
                          f"{len(rows)} runs compared")


def write_compare(out: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``compare.md``, ``compare.json`` and ``compare.png`` into `out`; a folder
    already holding any of them is refused."""
    from finetunekit.results.plots import save_png

    if out.exists() and not out.is_dir():
        raise PersistenceError(f"--out must be a folder. Received: '{out}', which is a file.")
    taken = [name for name in COMPARE_FILES if (out / name).exists()]
    if taken:
        raise PersistenceError(f"'{out}' already holds {', '.join(taken)}; compare does not "
                               "overwrite results. Pass another --out.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "compare.md", "# Runs compared\n\n![validation curves](compare.png)\n\n"
                 + compare_markdown(rows))
    atomic_write(out / "compare.json", json.dumps(
        [{k: v for k, v in row.items() if k != "history"} for row in rows], indent=2))
    save_png(compare_figure_of(rows), out / "compare.png")
    return out
