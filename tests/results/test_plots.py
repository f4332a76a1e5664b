"""The figures' content: titles, axis labels, tick labels, lines; and the PNG is drawn on."""

from __future__ import annotations

import numpy as np
from PIL import Image

from finetunekit.results.plots import compare_figure, confusion_figure, errors_figure, save_png

NAMES = ["cat", "dog", "owl"]


def test_confusion_figure_counts_and_row_shares(tmp_path):
    figure = confusion_figure([[2, 0, 0], [1, 1, 0], [0, 0, 4]], NAMES)
    counts, shares = figure.axes[:2]  # then their two colour bars
    assert counts.get_title() == "Counts" and shares.get_title().startswith("Row-normalised")
    for axes in (counts, shares):
        assert [t.get_text() for t in axes.get_xticklabels()] == NAMES
        assert [t.get_text() for t in axes.get_yticklabels()] == NAMES
        assert axes.get_xlabel() == "predicted class" and axes.get_ylabel() == "true class"
    assert [t.get_text() for t in counts.texts][:3] == ["2", "0", "0"]
    assert [t.get_text() for t in shares.texts][3:5] == ["0.50", "0.50"]
    path = save_png(figure, tmp_path / "cm.png")
    pixels = np.asarray(Image.open(path).convert("L"))
    assert pixels.shape[1] > 600 and (pixels < 100).mean() > 0.02


def test_errors_figure_titles_each_image():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    rows = [{"true": "dog", "predicted": "cat", "confidence": 0.91},
            {"true": "owl", "predicted": "dog", "confidence": 0.5}]
    figure = errors_figure(images, rows)
    titles = [axes.get_title() for axes in figure.axes if axes.images]
    assert titles == ["true dog\npredicted cat (91%)", "true owl\npredicted dog (50%)"]
    empty = errors_figure(images[:0], [])
    assert empty.axes[0].texts[0].get_text() == "no misclassified images"


def test_compare_figure_overlays_one_line_per_run():
    history = [{"epoch": 1, "val_loss": 1.0, "val_accuracy": 0.4},
               {"epoch": 2, "val_loss": 0.8, "val_accuracy": 0.6}]
    figure = compare_figure([("a", history), ("b", history[:1])], "accuracy")
    loss, accuracy = figure.axes
    assert loss.get_title() == "Validation loss per epoch"
    assert accuracy.get_title() == "Validation accuracy per epoch"
    assert [line.get_label() for line in accuracy.lines] == ["a", "b"]
    assert list(accuracy.lines[0].get_ydata()) == [0.4, 0.6]
