"""Saving and loading models and run folders: the part of :class:`~finetunekit.Engine`
that goes through the format components and the ``finetunekit_export_model`` hook. The
files themselves (atomic writes, the run files, where a model lies) are
:mod:`finetunekit.core.run_folder`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import require_result
from finetunekit.core.recipe import Recipe
from finetunekit.core.run_folder import locate_model, recipe_beside, save_model, write_run_files
from finetunekit.core.schedules import write_optimizer_record
from finetunekit.core.training import Run


class Saving:
    """Write a run folder, save a model in a format, load one back."""

    def save_run(self, run: Run) -> Path:
        """Write the run folder: the model, the recipe as run, history and plan."""
        if run.path is None:
            raise PersistenceError("This run has no save.path; set one to save it.")
        fmt, _ = self.select(run.recipe, "save")
        run.path.mkdir(parents=True, exist_ok=True)
        write_run_files(run.path, run.recipe, run.history, {
            "stages": [{**stage.to_dict(), "trained_layers": run.trained_layers(index)}
                       for index, stage in enumerate(run.plan.stages)],
            "class_names": run.class_names, "stopped": run.stopped})
        write_optimizer_record(run)  # an optimizer from Python: what each stage used
        # the model last: a folder with its model is complete, so resume may call it
        # finished; killed before, resume saves again from the last checkpoint
        self.save_model(run.model, run.path / f"model{fmt.suffix}", fmt.name, run=run)
        return run.path

    def save_model(self, model: Any, path: str | Path, format: str = "keras", *,
                   run: Run | None = None) -> Path:
        """Write `model` to `path` in `format`, atomically (temporary name, then rename).
        A plugin may give another model to write (``finetunekit_export_model``: LoRA's
        merged copy)."""
        fmt = self.catalogue.get("format", format, key="save.format")
        exported = self.call("finetunekit_export_model", model=model, format=fmt, run=run)
        if exported is not None:
            model = require_result(self.pm, "finetunekit_export_model", exported,
                                   lambda m: isinstance(m, keras.Model), "a keras.Model or None")
        path = Path(path)

        def check(written: Path) -> None:
            def reload() -> Any:
                return self._load(written, fmt, True, run.recipe if run is not None else None,
                                  beside=path)
            self.call("finetunekit_check_saved_model", model=model, path=path, format=fmt,
                      run=run, reload=reload)

        return save_model(self.catalogue, fmt, model, path, run, check)

    def load_model(self, path: str | Path, *, format: str | None = None, safe_mode: bool = True,
                   recipe: Recipe | None = None) -> Any:
        """Load a model saved by :meth:`save_model`, or a run folder's model.

        Args:
            path: a model file, or a run folder holding ``model.<suffix>``.
            format: str or None. Format name; None picks it from the file name.
            safe_mode: bool. Refuse models that carry Python code (lambdas).
            recipe: :class:`~finetunekit.Recipe` or None. For formats that hold weights
                but no architecture; None reads ``recipe.toml`` beside the file.
        """
        file, fmt = locate_model(Path(path), self.catalogue, format)
        return self._load(file, fmt, safe_mode, recipe)

    def _load(self, file: Path, fmt: Any, safe_mode: bool, recipe: Recipe | None,
              beside: Path | None = None) -> Any:
        """Load `file` with format component `fmt`; a weights-only format rebuilds
        `recipe`, or the recipe beside `beside` (default: `file`)."""
        def template(stage: int | None = None, steps_per_epoch: int | None = None,
                     own_recipe: Recipe | None = None):
            run = self.build(own_recipe or recipe or recipe_beside(beside or file))
            if stage is not None:
                self.compile_stage(run, stage, steps_per_epoch)
            return run.model

        return self.catalogue.call("format", fmt, "load", file, safe_mode, template,
                                   expect=(lambda m: isinstance(m, keras.Model), "a keras.Model"))
