"""``bench --merge``: accuracy results measured in parts, put together as one result.

A full accuracy run is hours on a laptop's CPU; split by ``--strategies``, ``--budgets``
or ``--backbones`` (each part its own ``--out``), the parts are merged into one
``bench.json``, ``bench.md`` and figures, with the paired comparisons computed over
every strategy of a (backbone, budget). Parts can be merged only when they measured the
same thing: the same task, seeds, rate grid, run length, backend and, for a backbone in
two parts, the same source model. A run measured twice (the ``full_random`` baseline is
in every part) must agree to the last digit, or the merge is refused: the two parts were
not measured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetunekit.bench.accuracy import RANDOM
from finetunekit.bench.accuracy_report import budget_key, summarise
from finetunekit.core.errors import DataError

SAME = ("seeds", "rates", "test_per_class", "holdout", "min_held_out", "min_steps",
        "min_epochs", "batch_size", "severity", "tune_seed", "image_size", "weights", "data")
"""Settings every merged part must share: they decide what a row means."""

MEASURED = ("id_accuracy", "ood_accuracy", "ood_by_corruption", "rate", "epochs",
            "diverged", "labels_per_class")
"""What two measurements of the same run must agree on (not ``seconds``)."""


def load(folder: Path) -> dict[str, Any]:
    """The ``bench.json`` of an accuracy run in `folder`."""
    path = Path(folder) / "bench.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--merge: '{folder}' has no bench.json. Expected the --out folder "
                        "of a finished 'finetunekit bench --accuracy' run.") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"--merge: could not read '{path}': {exc}.") from None
    if not isinstance(result, dict) or "accuracy" not in result:
        raise DataError(f"--merge: '{path}' holds no accuracy results (a throughput or "
                        "end-to-end run?). Merge only 'bench --accuracy' results.")
    return result


def merge(results: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One result from several accuracy results (`names` name them in errors).

    Raises:
        DataError: the parts measured different things, or disagree on a run both measured.
    """
    first, first_name = results[0], names[0]
    settings = dict(first["accuracy"]["settings"])
    out: dict[str, Any] = {"sources": {}, "rows": [], "tuning": [], "not_applicable": {},
                           "task": first["accuracy"]["task"]}
    strategies: list[str] = []
    backbones: list[str] = []
    budgets: list[Any] = []
    seen: dict[tuple, tuple[dict[str, Any], str]] = {}
    tuned: set[tuple] = set()
    for result, name in zip(results, names):
        part = result["accuracy"]
        _same(result.get("backend"), first.get("backend"), "backend", name, first_name)
        _same(part["task"], out["task"], "task (test split, classes, corruptions)", name,
              first_name)
        for key in SAME:
            _same(part["settings"].get(key), settings.get(key), f"setting '{key}'", name,
                  first_name)
        for backbone, info in part["sources"].items():
            if backbone in out["sources"]:
                _same(_source_id(info), _source_id(out["sources"][backbone]),
                      f"source model of {backbone}", name, first_name)
            else:
                out["sources"][backbone] = info
        for row in part["rows"]:
            key = (row["backbone"], row["budget"], row["strategy"], row["seed"])
            if key in seen:
                earlier, where = seen[key]
                for field in MEASURED:
                    if row.get(field) != earlier.get(field):
                        raise DataError(
                            f"--merge: {row['strategy']} on {row['backbone']}, "
                            f"{row['budget']} labels, seed {row['seed']} was measured in "
                            f"'{where}' and '{name}' with different {field} "
                            f"({earlier.get(field)!r} vs {row.get(field)!r}): the two parts "
                            "were not measured the same way (another version, machine or "
                            "backend?). Merge parts of one setting, or rerun one of them.")
                continue
            seen[key] = (row, name)
            out["rows"].append(row)
        for entry in part["tuning"]:
            key = (entry["backbone"], entry["budget"], entry["strategy"])
            if key not in tuned:
                tuned.add(key)
                out["tuning"].append(entry)
        for backbone, reasons in part.get("not_applicable", {}).items():
            out["not_applicable"].setdefault(backbone, {}).update(reasons)
        for target, values in ((strategies, part["settings"]["strategies"]),
                               (backbones, part["settings"]["backbones"]),
                               (budgets, part["settings"]["budgets"])):
            target.extend(v for v in values if v not in target)
    order = [*strategies, RANDOM]
    out["rows"].sort(key=lambda r: (backbones.index(r["backbone"]) if r["backbone"] in backbones
                                    else len(backbones), budget_key(r["budget"]),
                                    order.index(r["strategy"]) if r["strategy"] in order
                                    else len(order), r["seed"]))
    budgets.sort(key=lambda b: float("inf") if b is None else b)
    out["settings"] = {**settings, "strategies": strategies, "backbones": backbones,
                       "budgets": budgets}
    out["summary"] = summarise(out)
    return {"command": " ".join(["finetunekit bench --merge", *names]),
            "merged_from": [r.get("command") for r in results],
            "backend": first.get("backend"), "device": first.get("device"), "accuracy": out}


def _source_id(info: dict[str, Any]) -> Any:
    """What decides a source model's weights (not whether it was cached)."""
    return info.get("recipe", info.get("given", info))


def _same(value: Any, expected: Any, what: str, name: str, first: str) -> None:
    if value != expected:
        raise DataError(f"--merge: '{name}' and '{first}' differ in their {what} ({value!r} "
                        f"vs {expected!r}), so their rows cannot be compared in one table. "
                        "Merge only parts run with the same settings.")
