"""What an engine tells about a recipe or a trained model without training a run:
``describe``, ``lr_find``, ``evaluate`` and ``predict``. :class:`Analysis` is a part of
:class:`~finetunekit.Engine` (it uses the engine's build, data and model loading), kept
apart so that ``engine.py`` holds the training flow alone.
"""

from __future__ import annotations

from typing import Any

from finetunekit.core import assembly, inference
from finetunekit.core.components import Data
from finetunekit.core.inference import Evaluation, Predictions
from finetunekit.core.lr_find import LRFinding, lr_sweep
from finetunekit.core.recipe import Recipe
from finetunekit.core.schedules import with_python_optimizer
from finetunekit.core.scoping import scoped


class Analysis:
    """Describe a recipe, sweep its learning rate, evaluate and predict with a model."""

    @scoped
    def describe(self, recipe: Recipe) -> dict[str, Any]:
        """Build without training; report layers, parameter counts and the plan."""
        return assembly.describe(self.build(recipe))

    @scoped
    def lr_find(self, recipe: Recipe, *, data: Data | None = None, start: float = 1e-7,
                end: float = 10.0, steps: int = 100, optimizer: Any = None) -> LRFinding:
        """Sweep the learning rate exponentially, one batch per step, and suggest one
        (Smith 2017; fastai's ``lr_find``; :mod:`finetunekit.core.lr_find`).

        Trains the recipe's first stage that has epochs, with its trainable layers and
        optimizer, from `start` to `end` over `steps` batches (the data cycled if it has
        fewer), stopping once the smoothed loss passes 4x its best. Nothing is saved and
        every weight is put back after. Returns the rates, losses (raw and smoothed) and
        ``suggested_learning_rate``, the rate where the smoothed loss falls fastest.
        """
        recipe = with_python_optimizer(recipe, optimizer)
        self.validate(recipe, data=data is None)
        run = self.build(recipe)
        run.optimizer = optimizer
        data = data if data is not None else self.load_data(recipe)
        return lr_sweep(self.catalogue, run, data, start=start, end=end, steps=steps)

    def evaluate(self, model_or_run_dir: Any, data: Data | tuple, *, batch_size: int = 32,
                 tta: bool = False, safe_mode: bool = True) -> Evaluation:
        """Score a trained model on labelled images with scikit-learn's metrics.

        `model_or_run_dir` is a run folder, a model file (any format that loads) or a
        :class:`~finetunekit.core.inference.LoadedModel`; `data` is ``(images, labels)``
        uint8 arrays at the model's input size or a :class:`~finetunekit.Data` (its
        validation split if it has one; labels matched to the model's classes by name).
        `tta` averages with the horizontally flipped images. Returns the metrics (loss,
        accuracy, top-k, per class, averages, confusion matrix, ROC-AUC, calibration
        error), the labels and the probabilities.
        """
        loaded = inference.load_for_inference(self, model_or_run_dir, safe_mode=safe_mode)
        images, labels, report = inference.labelled_arrays(data, loaded.class_names)
        return inference.evaluate_arrays(loaded, images, labels, batch_size=batch_size,
                                         tta=tta, report=report)

    def predict(self, model_or_run_dir: Any, images: Any, *, batch_size: int = 32,
                tta: bool = False, safe_mode: bool = True) -> Predictions:
        """Class probabilities of uint8 `images` ((n, h, w, c) at the model's input size),
        with the class names the model was trained with; arguments as :meth:`evaluate`.
        For files and folders: :func:`finetunekit.results.predict_files`."""
        loaded = inference.load_for_inference(self, model_or_run_dir, safe_mode=safe_mode)
        return Predictions(inference.predict_probabilities(
            loaded.model, images, batch_size=batch_size, tta=tta), loaded.class_names)
