"""The benchmark's outputs: ``bench.json`` (every row), ``bench.md`` (tables) and
``bench.png`` (a chart), written atomically into a folder that must not hold them yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetunekit.bench.accuracy_report import ACCURACY_FIGURES
from finetunekit.bench.accuracy_report import markdown as accuracy_markdown
from finetunekit.bench.accuracy_report import write_figures
from finetunekit.core.errors import PersistenceError
from finetunekit.core.run_folder import atomic_write

OUTPUTS = ("bench.json", "bench.md", "bench.png", *ACCURACY_FIGURES)
"""The files ``finetunekit bench`` may write (``bench.png``: throughput or end to end; the two figures:
``--accuracy``)."""


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
        parts += accuracy_markdown(result["accuracy"])
    return "\n".join(parts)


def chart(result: dict[str, Any], path: Path) -> None:
    """``bench.png``: throughput bars, finetunekit beside the two plain baselines."""
    from matplotlib.figure import Figure  # not pyplot: no global figure state

    from finetunekit.results.plots import save_png

    panels = [k for k in ("throughput", "end_to_end") if result.get(k)]
    bars = max(len(result.get(k) or []) for k in ("throughput", "end_to_end"))
    figure = Figure(figsize=(max(6, 1.2 * bars), 4 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, kind in zip(axes, panels):
        rows = result[kind]
        xs = range(len(rows))
        if kind == "throughput":
            ax.bar([x - 0.27 for x in xs], [r["images_per_s"] for r in rows], 0.27,
                   label="finetunekit")
            ax.bar(list(xs), [r["baseline_images_per_s"] for r in rows], 0.27,
                   label="plain seed code")
            ax.bar([x + 0.27 for x in xs], [r["plain_uint8_images_per_s"] for r in rows], 0.27,
                   label="plain, uint8 fed")
            ax.set_xticks(list(xs), [r["id"] for r in rows], rotation=30, ha="right",
                          fontsize=7)
            ax.set_ylabel("training images/s")
        else:
            ax.bar([x - 0.2 for x in xs], [r["engine_images_per_s"] for r in rows], 0.4,
                   label="Engine.run")
            ax.bar([x + 0.2 for x in xs], [r["plain_images_per_s"] for r in rows], 0.4,
                   label="plain model.fit")
            ax.set_xticks(list(xs), [f"{r['id']}\nratio {r['ratio']:.2f}" for r in rows],
                          rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("training images/s, end to end")
        ax.legend()
    save_png(figure, path, dpi=110)


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and the figures into `out` (checked first)."""
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "bench.json", json.dumps(result, indent=2))
    atomic_write(out / "bench.md", markdown(result))
    written = [out / "bench.json", out / "bench.md"]
    if result.get("throughput") or result.get("end_to_end"):
        chart(result, out / "bench.png")
        written.append(out / "bench.png")
    if result.get("accuracy"):
        written += write_figures(result["accuracy"]["summary"], out)
    return written
