"""The accuracy benchmark's summary, tables and figures.

:func:`summarise` turns the rows of :func:`finetunekit.bench.accuracy.run_accuracy` into
one entry per backbone, label budget and strategy: ID and OOD accuracy (mean ± std over
seeds), their gap, the tuned rate, and the paired comparison with the best strategy of
that backbone and budget (:func:`finetunekit.bench.stats.against_best`), in and out of
distribution. A strategy "loses" only where the 95% interval excludes 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetunekit.bench import stats

ACCURACY_FIGURES = ("accuracy_vs_labels.png", "id_vs_ood.png")
"""The figures the accuracy benchmark writes beside bench.json and bench.md."""


def budget_key(label: str) -> float:
    """Sort key of a budget label: numbers in order, "all" last."""
    return float("inf") if label == "all" else float(label)


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (backbone, budget, strategy), in the order the rows came."""
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for row in result["rows"]:
        groups.setdefault((row["backbone"], row["budget"]), {}).setdefault(
            row["strategy"], []).append(row)
    summary = []
    for (backbone, budget), by_strategy in groups.items():
        versus = {metric: stats.against_best(
            {name: {r["seed"]: r[f"{metric}_accuracy"] for r in rows}
             for name, rows in by_strategy.items()}) for metric in ("id", "ood")}
        for name, rows in by_strategy.items():
            entry: dict[str, Any] = {"backbone": backbone, "budget": budget,
                                     "labels_per_class": rows[0]["labels_per_class"],
                                     "strategy": name, "seeds": len(rows),
                                     "rate": rows[0]["rate"],
                                     "trainable_params": rows[0]["trainable_params"],
                                     "diverged": sum(r["diverged"] for r in rows),
                                     "seconds": round(stats.mean_std(
                                         [r["seconds"] for r in rows])[0], 1)}
            for metric in ("id", "ood"):
                mean, std = stats.mean_std([r[f"{metric}_accuracy"] for r in rows])
                entry[metric] = {"mean": round(mean, 4), "std": round(std, 4),
                                 **versus[metric][name]}
            mean, std = stats.mean_std([r["id_accuracy"] - r["ood_accuracy"] for r in rows])
            entry["gap"] = {"mean": round(mean, 4), "std": round(std, 4)}
            summary.append(entry)
    return summary


def crossovers(summary: list[dict[str, Any]], reference: str = "full") -> list[str]:
    """Sentences naming where a strategy's mean ID accuracy crosses `reference`'s as the
    budget grows (between two consecutive budgets)."""
    lines = []
    for backbone in dict.fromkeys(e["backbone"] for e in summary):
        own = [e for e in summary if e["backbone"] == backbone]
        budgets = sorted(dict.fromkeys(e["budget"] for e in own), key=budget_key)
        ref = {e["budget"]: e["id"]["mean"] for e in own if e["strategy"] == reference}
        for name in dict.fromkeys(e["strategy"] for e in own):
            if name == reference:
                continue
            mine = {e["budget"]: e["id"]["mean"] for e in own if e["strategy"] == name}
            signs = [(b, mine[b] - ref[b]) for b in budgets if b in mine and b in ref]
            for (b0, d0), (b1, d1) in zip(signs, signs[1:]):
                if d0 * d1 < 0 or (d0 == 0) != (d1 == 0):
                    ahead = name if d1 > 0 else reference
                    lines.append(f"{backbone}: {name} vs {reference} cross between {b0} and "
                                 f"{b1} labels per class ({ahead} ahead at {b1}).")
    return lines


def _versus(part: dict[str, Any]) -> str:
    paired = part.get("paired")
    if paired is None:
        return "best"
    if paired["low"] is None:
        return f"no interval ({paired['n']} paired seed)"
    ci = f"Δ {paired['mean_difference']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]"
    sign = f"sign {paired['wins']}-{paired['losses']}, p={paired['sign_p']:.2f}"
    verdict = f"**loses to {part['best']}**" if part["loses"] else f"tie with {part['best']}"
    return f"{verdict}: {ci}, {sign}"


def table(summary: list[dict[str, Any]], backbone: str) -> str:
    """Markdown table of one backbone: every budget and strategy."""
    lines = ["| labels/class | strategy | tuned rate | trainable params | ID (mean ± std) "
             "| OOD (mean ± std) | gap ID-OOD | ID vs best (paired 95% CI) "
             "| OOD vs best (paired 95% CI) |",
             "| ---: | --- | ---: | ---: | --- | --- | --- | --- | --- |"]
    for e in summary:
        if e["backbone"] != backbone:
            continue
        params = "-" if e["trainable_params"] is None else f"{e['trainable_params']:,}"
        diverged = f" ({e['diverged']} diverged)" if e["diverged"] else ""
        lines.append(
            f"| {e['budget']} ({e['labels_per_class']}) | {e['strategy']}{diverged} | "
            f"{e['rate']:g} | {params} | {e['id']['mean']:.3f} ± {e['id']['std']:.3f} | "
            f"{e['ood']['mean']:.3f} ± {e['ood']['std']:.3f} | "
            f"{e['gap']['mean']:+.3f} ± {e['gap']['std']:.3f} | {_versus(e['id'])} | "
            f"{_versus(e['ood'])} |")
    return "\n".join(lines)


def tuning_table(tuning: list[dict[str, Any]]) -> str:
    """Markdown table of the tuning trials: held-out accuracy per rate, the chosen one."""
    rates = sorted({t["rate"] for row in tuning for t in row["trials"]})
    lines = ["| backbone | labels/class | strategy | " + " | ".join(f"{r:g}" for r in rates)
             + " | chosen |", "| --- | ---: | --- |" + " ---: |" * len(rates) + " ---: |"]
    for row in tuning:
        by_rate = {t["rate"]: t for t in row["trials"]}
        cells = []
        for r in rates:
            t = by_rate.get(r)
            cells.append("-" if t is None else "diverged" if t["diverged"]
                         else f"{t['held_out_accuracy']:.2f}")
        lines.append(f"| {row['backbone']} | {row['budget']} | {row['strategy']} | "
                     + " | ".join(cells) + f" | {row['rate']:g} |")
    return "\n".join(lines)


def markdown(accuracy: dict[str, Any]) -> list[str]:
    """The accuracy part of bench.md."""
    settings, summary = accuracy["settings"], accuracy["summary"]
    task = accuracy["task"]
    parts = ["## Accuracy per strategy", "",
             f"Target: {len(task['classes'])} classes, test set {task['test']} images (ID) "
             f"and its shifted copy (OOD: {', '.join(task['corruptions'])}, one per image in "
             f"turn, severity {task['severity']}); labels drawn from a pool of "
             f"{task['pool']}. Seeds {settings['seeds']}, paired. Each strategy's rate "
             f"tuned over {settings['rates']} on a held-out {settings['holdout']:.0%} of a "
             f"separate draw of its labels (never the test set), cross-validated until "
             f"{settings.get('min_held_out', 1)} labels per class are held out. 'loses to' "
             "only where the paired 95% t-interval of (best - strategy) excludes 0; Δ = best - strategy.", ""]
    for backbone, info in accuracy["sources"].items():
        source = ("given weights" if info.get("given") else
                  f"source val accuracy {info['val_accuracy']:.3f} on the digits 0-4"
                  + (" (cached)" if info.get("cached") else f" ({info['seconds']:.0f} s)"))
        parts += [f"### {backbone}", "", f"Pretrained: {source}.", "", table(summary, backbone), ""]
        for name, reason in accuracy.get("not_applicable", {}).get(backbone, {}).items():
            parts.append(f"- {name}: not applicable: {reason.split('. ')[0]}.")
        parts.append("")
    found = crossovers(summary)
    parts += ["### Crossovers against full fine-tuning (mean ID accuracy)", "",
              *(f"- {line}" for line in found or ["none within the budgets run."]), "",
              "### Tuning (held-out accuracy per rate)", "", tuning_table(accuracy["tuning"]), "",
              "![accuracy vs labels](accuracy_vs_labels.png)", "", "![ID vs OOD](id_vs_ood.png)",
              ""]
    return parts


def labels_figure(summary: list[dict[str, Any]]):
    """ID accuracy (mean ± std) against labels per class, a line per strategy, a panel
    per backbone."""
    from matplotlib.figure import Figure

    backbones = list(dict.fromkeys(e["backbone"] for e in summary))
    figure = Figure(figsize=(6 * len(backbones), 4.4), layout="constrained")
    axes = figure.subplots(1, len(backbones), squeeze=False)[0]
    for ax, backbone in zip(axes, backbones):
        own = [e for e in summary if e["backbone"] == backbone]
        for index, name in enumerate(dict.fromkeys(e["strategy"] for e in own)):
            points = sorted((e["labels_per_class"], e["id"]["mean"], e["id"]["std"])
                            for e in own if e["strategy"] == name)
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[p[2] for p in points], marker="o", markersize=4, capsize=3,
                        color=f"C{index % 10}", linestyle="--" if name == "full_random" else "-",
                        label=name)
        ax.set_xscale("log")
        ax.set_xlabel("labelled images per class")
        ax.set_ylabel("test accuracy (ID)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"{backbone}: accuracy vs labels (mean ± std over seeds)", fontsize=10)
        ax.legend(fontsize=7)
    return figure


def shift_figure(summary: list[dict[str, Any]]):
    """OOD against ID accuracy per strategy (mean ± std), a panel per backbone and budget;
    the diagonal is 'no drop under shift'."""
    from matplotlib.figure import Figure

    cells = list(dict.fromkeys((e["backbone"], e["budget"]) for e in summary))
    columns = min(4, len(cells))
    rows = -(-len(cells) // columns)
    figure = Figure(figsize=(4.2 * columns, 4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flat
    names = list(dict.fromkeys(e["strategy"] for e in summary))
    for ax, (backbone, budget) in zip(axes, cells):
        for e in summary:
            if (e["backbone"], e["budget"]) != (backbone, budget):
                continue
            color = f"C{names.index(e['strategy']) % 10}"
            ax.errorbar(e["id"]["mean"], e["ood"]["mean"], xerr=e["id"]["std"],
                        yerr=e["ood"]["std"], marker="o", color=color, capsize=2,
                        label=e["strategy"])
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("ID accuracy")
        ax.set_ylabel("OOD accuracy")
        ax.set_title(f"{backbone}, {budget} labels/class", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes):
        ax.set_axis_off()
    return figure


def write_figures(summary: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write :data:`ACCURACY_FIGURES` into `out`."""
    from finetunekit.results.plots import save_png

    paths = [out / name for name in ACCURACY_FIGURES]
    save_png(labels_figure(summary), paths[0], dpi=110)
    save_png(shift_figure(summary), paths[1], dpi=110)
    return paths


def from_partial(rows_file: Path, settings: dict[str, Any], sources: dict[str, Any],
                 task: dict[str, Any]) -> dict[str, Any]:
    """The ``accuracy`` part of a result rebuilt from ``rows.partial.jsonl`` (a run cut
    short): the rows it measured, their summary, and the chosen rate of each tuning (its
    trials are not in the rows)."""
    import json

    rows = [json.loads(line) for line in Path(rows_file).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    tuning = list({(r["backbone"], r["budget"], r["strategy"]): {
        "backbone": r["backbone"], "budget": r["budget"], "strategy": r["strategy"],
        "rate": r["rate"], "trials": []} for r in rows}.values())
    return {"settings": settings, "sources": sources, "rows": rows, "tuning": tuning,
            "not_applicable": {}, "task": task, "summary": summarise({"rows": rows})}
