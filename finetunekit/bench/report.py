"""The benchmark's outputs: ``bench.json`` (every row), ``bench.md`` (tables) and
``bench.png`` (a chart), written atomically into a folder that must not hold them yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError
from finetunekit.core.run_folder import atomic_write

OUTPUTS = ("bench.json", "bench.md", "bench.png")
"""The files ``finetunekit bench`` writes."""


def check_out(out: Path) -> None:
    """Refuse a file, or a folder that already holds a benchmark's outputs."""
    if out.exists() and not out.is_dir():
        raise PersistenceError(f"--out must be a folder. Received: '{out}', which is a file.")
    taken = [name for name in OUTPUTS if (out / name).exists()]
    if taken:
        raise PersistenceError(
            f"'{out}' already holds {', '.join(taken)}; the benchmark does not overwrite "
            "results. Pass another --out, or move those files first."
        )


def check_matplotlib() -> None:
    """Refuse to start, rather than fail after measuring, when bench.png cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise PersistenceError(
            "finetunekit bench draws bench.png with matplotlib, which is not installed. "
            "Install it (pip install matplotlib, or the project's [test] extra)."
        )


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of throughput rows: finetunekit, the same-run baseline, the ratio."""
    lines = ["| backbone | strategy (stage timed) | batch | precision | size | finetunekit img/s "
             "| plain seed code img/s | ratio | plain, uint8 fed img/s | ratio | device |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        stage = r["strategy"] if r["stage"] == r["strategy"] else f"{r['strategy']} ({r['stage']})"
        lines.append(f"| {r['backbone']} | {stage} | {r['batch']} | {r['precision']} | "
                     f"{r['image_size']} | {r['images_per_s']:,.1f} | "
                     f"{r['baseline_images_per_s']:,.1f} | {r['ratio']:.2f} | "
                     f"{r['plain_uint8_images_per_s']:,.1f} | {r['ratio_uint8']:.2f} | "
                     f"{r['device']} |")
    return "\n".join(lines)


def end_to_end_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of end-to-end rows: Engine.run epochs, plain fit, the ratio."""
    lines = ["| backbone | strategy | source | run folder | batch | precision | size | "
             "images/epoch | Engine.run img/s | plain fit img/s | ratio (min-max) | "
             "CPU ratio | s between epochs | device |",
             "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: "
             "| ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['strategy']} | {r['source']} | "
                     f"{'yes' if r['run_folder'] else 'no'} | {r['batch']} | {r['precision']} | "
                     f"{r['image_size']} | {r['steps'] * r['batch']} | "
                     f"{r['engine_images_per_s']:,.1f} | {r['plain_images_per_s']:,.1f} | "
                     f"{r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) | "
                     f"{r['cpu_ratio']:.3f} | {r['between_epochs_s']:.3f} | {r['device']} |")
    return "\n".join(lines)


def accuracy_table(summary: list[dict[str, Any]]) -> str:
    """Markdown table of the accuracy summary, flagging losses to simpler strategies."""
    lines = ["| strategy | weights | trainable params | val accuracy (mean ± std) | seeds "
             "| seconds per run | note |",
             "| --- | --- | ---: | --- | ---: | ---: | --- |"]
    for s in summary:
        if s.get("not_applicable"):
            reason = s["not_applicable"].replace("|", "/").split(". ")[0]
            lines.append(f"| {s['strategy']} | - | - | not applicable | 0 | - | {reason} |")
            continue
        near = set(s.get("within_std", ()))
        names = [f"{n} (within std)" if n in near else n for n in s.get("loses_to", ())]
        note = f"loses to {', '.join(names)}" if names else ""
        lines.append(f"| {s['strategy']} | {s['weights']} | {s['trainable_params']:,} | "
                     f"{s['mean']:.3f} ± {s['std']:.3f} | {s['seeds']} | {s['seconds']:.1f} | "
                     f"{note} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """``bench.md``: the command, then a table per benchmark that ran."""
    parts = ["# finetunekit bench", "", f"Command: `{result['command']}`", "",
             f"Backend {result['backend']}, device {result['device']}.", ""]
    if result.get("throughput"):
        parts += ["## Training throughput", "",
                  "Median images/s over repeats (warm-up excluded); the plain seed code is "
                  "timed in the same run as written (float32 images scaled on the host) and "
                  "fed uint8 (Rescaling in the model); each ratio = finetunekit / that plain "
                  "code.", "",
                  throughput_table(result["throughput"]), ""]
    if result.get("end_to_end"):
        parts += ["## End to end: Engine.run epochs against plain model.fit", "",
                  "Images/s over the timed epochs (the engine's first epoch, tracing, "
                  "excluded; the plain side warmed up once), median of the repeats, the two "
                  "alternating; ratio = Engine.run / plain fit, median (min-max) of the "
                  "repeats' ratios. 'CPU ratio': the process's CPU seconds per epoch, plain / "
                  "Engine.run (median; steadier than wall time on a shared machine). 'run "
                  "folder': the engine wrote its checkpoint and "
                  "report at every epoch end; 's between epochs': the engine's time from an "
                  "epoch's end to the next one's begin (those writes, the data order, the "
                  "next fit call's set-up).", "",
                  end_to_end_table(result["end_to_end"]), ""]
    if result.get("accuracy"):
        parts += ["## Accuracy per strategy", "",
                  "Last-epoch validation accuracy over seeds. 'loses to' names a simpler "
                  "strategy (fewer trainable parameters; at equal count, the seed's 'full') "
                  "or the no-transfer baseline with a higher mean; '(within std)': by no "
                  "more than the two stds summed.", "",
                  accuracy_table(result["accuracy"]["summary"]), ""]
    return "\n".join(parts)


def chart(result: dict[str, Any], path: Path) -> None:
    """``bench.png``: throughput bars (finetunekit beside the baseline) and accuracy bars
    with their std, one panel per benchmark that ran."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; never a window
    from matplotlib.figure import Figure  # not pyplot: no global figure state

    panels = [k for k in ("throughput", "end_to_end", "accuracy") if result.get(k)]
    figure = Figure(figsize=(max(6, 1.2 * _bars(result)), 4 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, kind in zip(axes, panels):
        if kind == "throughput":
            rows = result["throughput"]
            xs = range(len(rows))
            ax.bar([x - 0.27 for x in xs], [r["images_per_s"] for r in rows], 0.27,
                   label="finetunekit")
            ax.bar(list(xs), [r["baseline_images_per_s"] for r in rows], 0.27,
                   label="plain seed code")
            ax.bar([x + 0.27 for x in xs], [r["plain_uint8_images_per_s"] for r in rows], 0.27,
                   label="plain, uint8 fed")
            ax.set_xticks(list(xs), [r["id"] for r in rows], rotation=30, ha="right",
                          fontsize=7)
            ax.set_ylabel("training images/s")
            ax.legend()
        elif kind == "end_to_end":
            rows = result["end_to_end"]
            xs = range(len(rows))
            ax.bar([x - 0.2 for x in xs], [r["engine_images_per_s"] for r in rows], 0.4,
                   label="Engine.run")
            ax.bar([x + 0.2 for x in xs], [r["plain_images_per_s"] for r in rows], 0.4,
                   label="plain model.fit")
            ax.set_xticks(list(xs), [f"{r['id']}\nratio {r['ratio']:.2f}" for r in rows],
                          rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("training images/s, end to end")
            ax.legend()
        else:
            summary = [s for s in result["accuracy"]["summary"] if not s.get("not_applicable")]
            xs = range(len(summary))
            ax.bar(list(xs), [s["mean"] for s in summary], yerr=[s["std"] for s in summary],
                   capsize=3, color=["C3" if s["loses_to"] else "C0" for s in summary])
            ax.set_xticks(list(xs), [s["strategy"] for s in summary], rotation=30, ha="right")
            ax.set_ylabel("validation accuracy")
            ax.set_ylim(0, 1)
            ax.set_title("mean ± std over seeds; red: loses to a simpler strategy", fontsize=9)
    figure.savefig(path, dpi=110, format="png")


def _bars(result: dict[str, Any]) -> int:
    return max(len(result.get("throughput") or []), len(result.get("end_to_end") or []),
               len((result.get("accuracy") or {}).get("summary", [])))


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into `out` (checked first)."""
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "bench.json", json.dumps(result, indent=2))
    atomic_write(out / "bench.md", markdown(result))
    tmp = out / ".bench.png.tmp"
    chart(result, tmp)
    tmp.replace(out / "bench.png")
    return [out / name for name in OUTPUTS]
