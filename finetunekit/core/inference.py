"""Using a trained model: class probabilities for images, and how good they are.

:meth:`~finetunekit.Engine.predict` and :meth:`~finetunekit.Engine.evaluate` read as
"load, predict, score"; the three steps live here. Everything works on uint8 image
arrays; decoding files (and skipping bad ones) is the data sources' job, done above the
core (:mod:`finetunekit.results`). The metrics are scikit-learn's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import DataError
from finetunekit.core.run_folder import class_names_of, locate_model

ECE_BINS = 15
"""Confidence bins of the expected calibration error (equal width on [0, 1])."""


@dataclass
class LoadedModel:
    """A model loaded for inference, and what it was trained on.

    Attributes:
        model: keras.Model. uint8 images in, probabilities out.
        file: Path or None. The file it came from.
        format: str or None. Its format's name.
        class_names: list of str. Index -> name (``"0"``, ``"1"``, ... if unknown).
        input_shape: tuple of int. (height, width, channels) the model takes.
    """

    model: Any
    file: Path | None
    format: str | None
    class_names: list[str]
    input_shape: tuple[int, ...]


@dataclass
class Predictions:
    """Class probabilities of some images.

    Attributes:
        probabilities: (n, classes) float array; a binary sigmoid head gives two columns
            (1 - p, p), so that column ``i`` is always class ``i``.
        class_names: list of str.
    """

    probabilities: np.ndarray
    class_names: list[str]

    def top_k(self, k: int = 1) -> list[list[tuple[str, float]]]:
        """Per image, the `k` likeliest ``(class name, probability)``, likeliest first."""
        k = max(1, min(k, self.probabilities.shape[1]))
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], float(row[j])) for j in top]
                for row, top in zip(self.probabilities, order)]


@dataclass
class Evaluation:
    """What :meth:`~finetunekit.Engine.evaluate` measured.

    Attributes:
        metrics: dict. JSON-ready: loss, accuracy, top-k, per class, averages, confusion
            matrix, ROC-AUC (binary), expected calibration error, counts.
        labels: (n,) int array. True class of each image.
        probabilities: (n, classes) float array.
        class_names: list of str.
    """

    metrics: dict[str, Any]
    labels: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def worst_errors(self, n: int = 16) -> list[int]:
        """Indices of up to `n` misclassified images, most confidently wrong first."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        confidence = self.probabilities[wrong, self.predicted[wrong]]
        return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:n]]


def load_for_inference(engine: Any, path: str | Path, *, format: str | None = None,
                       safe_mode: bool = True, recipe: Any = None) -> LoadedModel:
    """Load a model file or run folder with its class names, for predicting (a
    :class:`LoadedModel` is passed through)."""
    if isinstance(path, LoadedModel):
        return path
    file, fmt = locate_model(Path(path), engine.catalogue, format)
    model = engine.load_model(file, format=fmt.name, safe_mode=safe_mode, recipe=recipe)
    classes = output_classes(model)
    names = class_names_of(file) or [str(i) for i in range(classes)]
    return LoadedModel(model, file, fmt.name, names, tuple(model.input_shape[1:]))


def output_classes(model: Any) -> int:
    """Classes the model tells apart (2 for a single sigmoid output)."""
    outputs = int(model.output_shape[-1])
    return 2 if outputs == 1 else outputs


def predict_probabilities(model: Any, images: np.ndarray, *, batch_size: int = 32,
                          tta: bool = False) -> np.ndarray:
    """(n, classes) probabilities of uint8 `images`, in batches; with `tta`, averaged
    with those of the horizontally flipped images."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise DataError(f"Images must be an (n, height, width, channels) array. Received "
                        f"shape {images.shape}.")
    expected = tuple(model.input_shape[1:])
    if tuple(images.shape[1:]) != expected:
        raise DataError(f"The model takes images of shape {expected}; received "
                        f"{tuple(images.shape[1:])}. Decode them at the model's input size.")

    def run(x: np.ndarray) -> np.ndarray:
        out = [_as_array(model(x[i:i + batch_size], training=False))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])))

    p = run(images)
    if tta:
        p = (p + run(images[:, :, ::-1, :])) / 2
    p = p.astype("float64")
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    return p


def _as_array(output: Any) -> np.ndarray:
    if isinstance(output, dict):  # a SavedModel's endpoint may name its output
        output = next(iter(output.values()))
    return np.asarray(keras.ops.convert_to_numpy(output))


def score(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Every metric of an evaluation, as plain JSON-ready values (scikit-learn's)."""
    from sklearn import metrics as sk

    y = np.asarray(labels).astype(int)
    p = np.clip(probabilities, 1e-7, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    classes = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y, predicted, labels=classes, zero_division=0)
    result: dict[str, Any] = {
        "images": int(len(y)),
        "classes": list(class_names),
        "loss": float(sk.log_loss(y, p, labels=classes)),
        "accuracy": float(sk.accuracy_score(y, predicted)),
        "top_k_accuracy": {str(k): float(sk.top_k_accuracy_score(y, p, k=k, labels=classes))
                           for k in range(2, len(classes)) if k <= 5},
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(class_names)},
    }
    for average in ("macro", "weighted"):
        a = sk.precision_recall_fscore_support(y, predicted, labels=classes, average=average,
                                               zero_division=0)
        result[f"{average}_avg"] = {"precision": float(a[0]), "recall": float(a[1]),
                                    "f1": float(a[2])}
    result["confusion_matrix"] = sk.confusion_matrix(y, predicted, labels=classes).tolist()
    if len(classes) == 2:
        both = len(set(y.tolist())) == 2
        result["roc_auc"] = float(sk.roc_auc_score(y, p[:, 1])) if both else None
    result["expected_calibration_error"] = expected_calibration_error(y, probabilities)
    return result


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-label confidence: the gap between
    confidence and accuracy per equal-width bin, weighted by the bin's share of images.
    (scikit-learn has no ECE; its ``calibration_curve`` is binary only.)"""
    if not len(labels):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap)


def evaluate_arrays(loaded: LoadedModel, images: np.ndarray, labels: np.ndarray, *,
                    batch_size: int = 32, tta: bool = False,
                    report: dict[str, Any] | None = None) -> Evaluation:
    """Predict `images` and score the predictions against `labels`."""
    labels = np.asarray(labels).astype(int)
    if len(labels) != len(images):
        raise DataError(f"{len(images)} images but {len(labels)} labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(loaded.class_names)):
        raise DataError(f"Labels must lie in 0..{len(loaded.class_names) - 1} (the model's "
                        f"classes {loaded.class_names}). Received {labels.min()}..{labels.max()}.")
    probabilities = predict_probabilities(loaded.model, images, batch_size=batch_size, tta=tta)
    metrics = score(labels, probabilities, loaded.class_names)
    if report is not None:
        metrics["skipped"] = report.get("skipped", 0)
        metrics["skipped_files"] = {reason: entries for split in report.get("splits", {}).values()
                                    for reason, entries in split.get("skipped", {}).items()}
    return Evaluation(metrics, labels, probabilities, loaded.class_names, report)


def labelled_arrays(data: Any, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """``(images, labels, report)`` from ``(x, y)`` or a Data, labels renumbered to the
    model's `class_names` when the data names its own classes."""
    from finetunekit.core.components import Data

    if isinstance(data, Data):
        split = data.validation if data.validation is not None else data.train
        if not (isinstance(split, tuple) and len(split) == 2):
            raise DataError("evaluate needs (images, labels) arrays; received a "
                            f"{type(split).__name__}. Load the images with a folder or csv source.")
        images, labels = split
        if data.class_names is not None and list(data.class_names) != list(class_names):
            unknown = [n for n in data.class_names if n not in class_names]
            if unknown:
                raise DataError(
                    f"The data has classes the model was not trained on: {unknown}. The "
                    f"model knows {class_names}. Remove those classes, or evaluate another model.")
            mapping = np.array([class_names.index(n) for n in data.class_names])
            labels = mapping[np.asarray(labels).astype(int)]
        return images, labels, data.report
    images, labels = data
    return images, labels, None
