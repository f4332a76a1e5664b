"""The accuracy benchmark's pretrained models: each backbone trained from random weights
on the digits 0-4 (the source), once, and cached on disk.

Two backbones are set up here: ``vgg16`` (the demo's, trained as ``finetunekit demo``
trains it) and ``vit_tiny``, a small KerasHub ViT (patch 4 on 32x32, 4 transformer
layers, hidden 64, 0.14 M parameters), the transformer beside the CNN. Any other backbone name of the
catalogue is trained like ``vgg16``.

The cache folder holds one sub-folder per source, named by the backbone and a hash of
everything that decides the weights (the source recipe, the ViT's configuration, the
Keras version and backend): ``source.weights.h5``, ``source.json`` (validation accuracy,
seconds, the recipe) and, for the ViT, its preset folder (``preset/``: the architecture,
which the recipe names as ``backbone.preset``). A sub-folder is written under a
temporary name and renamed when complete, so an interrupted run leaves no half source.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetunekit.demo.task import SOURCE_CLASSES

VIT_TINY = {"image_shape": (32, 32, 3), "patch_size": 4, "num_layers": 4, "num_heads": 4,
            "hidden_dim": 64, "mlp_dim": 128}
"""``keras_hub.models.ViTBackbone`` arguments of ``vit_tiny`` (0.14 M parameters)."""

VIT_SCALE = (1 / 127.5, -1.0)
"""The ViT's image converter: pixels to [-1, 1]."""


@dataclass(frozen=True)
class SourceSettings:
    """How a backbone is pretrained on the digits 0-4.

    Args:
        train_per_class: int. Training images per source digit.
        validation_per_class: int. Validation images per source digit.
        epochs: int. Epochs from random weights.
        learning_rate: float. Adam's rate.
        batch_size: int. Batch size.
        seed: int. ``train.seed`` (the data split and the initialisation).
    """

    train_per_class: int = 100
    validation_per_class: int = 20
    epochs: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 8
    seed: int = 0


SOURCES = {
    # the demo's source run (docs/demo.md): 0.97 on the digits 0-4
    "vgg16": SourceSettings(),
    # a ViT from scratch needs more images and epochs than a CNN, and a larger rate;
    # each step costs little at 64 tokens of width 64
    "vit_tiny": SourceSettings(train_per_class=100, validation_per_class=30, epochs=15,
                               learning_rate=1e-3, batch_size=32),
}
"""Source settings per backbone; other catalogue backbones take ``vgg16``'s."""


@dataclass
class Source:
    """A pretrained source, ready for transfer recipes.

    Attributes:
        backbone: str. The benchmark's name (``vgg16``, ``vit_tiny``, ...).
        section: dict. The recipe's ``[backbone]`` section, without ``weights``.
        weights: str. ``backbone.weights`` of the transfer runs (a file, or "imagenet").
        info: dict. ``source.json``: validation accuracy, seconds, whether it was cached.
    """

    backbone: str
    section: dict[str, Any]
    weights: str
    info: dict[str, Any] = field(default_factory=dict)


def default_cache() -> Path:
    """``$FINETUNEKIT_CACHE/bench-sources``, else ``~/.cache/finetunekit/bench-sources``."""
    root = os.environ.get("FINETUNEKIT_CACHE") or Path.home() / ".cache" / "finetunekit"
    return Path(root) / "bench-sources"


def backbone_section(backbone: str, size: int, preset: Path | None = None) -> dict[str, Any]:
    """The ``[backbone]`` section (weights left out) of a benchmark backbone name."""
    if backbone == "vit_tiny":
        return {"name": "keras_hub", "preset": str(preset), "input_shape": [size, size, 3]}
    return {"name": backbone, "input_shape": [size, size, 3]}


def source_recipe(section: dict[str, Any], settings: SourceSettings):
    """Every layer trains from random weights on the digits 0-4."""
    from finetunekit.core.recipe import Recipe

    return Recipe.from_dict({
        "backbone": {**section, "weights": "none"},
        "strategy": {"name": "full"},
        "head": {"classes": len(SOURCE_CLASSES)},
        "optimizer": {"name": "adam", "learning_rate": settings.learning_rate},
        "data": {"source": "digits", "classes": list(SOURCE_CLASSES),
                 "batch_size": settings.batch_size,
                 "train_per_class": settings.train_per_class,
                 "validation_per_class": settings.validation_per_class},
        "train": {"epochs": settings.epochs, "seed": settings.seed},
    })


def _key(backbone: str, size: int, settings: SourceSettings) -> str:
    import keras

    described = {"backbone": backbone, "size": size, "settings": asdict(settings),
                 "vit": VIT_TINY if backbone == "vit_tiny" else None,
                 "keras": keras.__version__, "backend": keras.backend.backend(), "format": 1}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]


def _write_vit_preset(folder: Path, size: int) -> None:
    import keras_hub

    from finetunekit.plugins.backbones.keras_hub import from_backbone, require_keras_hub

    require_keras_hub()
    vit = keras_hub.models.ViTBackbone(**{**VIT_TINY, "image_shape": (size, size, 3)})
    converter = keras_hub.layers.ViTImageConverter(image_size=(size, size), scale=VIT_SCALE[0],
                                                   offset=VIT_SCALE[1])
    from_backbone(vit, folder, converter)


def pretrained(engine, backbone: str, size: int, *, cache: Path | None = None,
               settings: SourceSettings | None = None, log=print) -> Source:
    """The backbone pretrained on the digits 0-4: from the cache, or trained now and
    cached.

    Args:
        engine: the :class:`~finetunekit.Engine`.
        backbone: str. ``vit_tiny`` or a catalogue backbone name.
        size: int. Input height and width.
        cache: Path or None. The cache folder (:func:`default_cache` if None).
        settings: :class:`SourceSettings` or None (:data:`SOURCES`).
        log: callable taking a line of progress text.
    """
    settings = settings or SOURCES.get(backbone, SOURCES["vgg16"])
    cache = Path(cache) if cache is not None else default_cache()
    folder = cache / f"{backbone}-{_key(backbone, size, settings)}"
    preset = folder / "preset" if backbone == "vit_tiny" else None
    section = backbone_section(backbone, size, preset)
    if (folder / "source.json").is_file():
        info = json.loads((folder / "source.json").read_text(encoding="utf-8"))
        log(f"source {backbone}: cached in {folder} (val accuracy {info['val_accuracy']:.3f})")
        return Source(backbone, section, str(folder / "source.weights.h5"), {**info, "cached": True})
    from finetunekit.plugins.strategies.freezing import trainable_param_count

    partial = cache / f".{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if preset is not None:
            _write_vit_preset(partial / "preset", size)
        started = time.perf_counter()
        # trained against the partial folder's preset; the recipe kept names the final one
        run = engine.run(source_recipe(backbone_section(backbone, size, partial / "preset"),
                                       settings), save=False)
        run.base.save_weights(str(partial / "source.weights.h5"))
        info = {"backbone": backbone, "val_accuracy": run.history[-1].get("val_accuracy"),
                "seconds": round(time.perf_counter() - started, 1),
                "trainable_params": trainable_param_count(run.model),
                "settings": asdict(settings),
                "recipe": source_recipe(section, settings).to_dict()}
        (partial / "source.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        try:
            partial.rename(folder)
        except OSError:  # another process finished the same source first: keep theirs
            if not (folder / "source.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"source {backbone}: val accuracy {info['val_accuracy']:.3f} on the digits 0-4 "
        f"({info['seconds']:.0f} s), cached in {folder}")
    return Source(backbone, section, str(folder / "source.weights.h5"), {**info, "cached": False})


def given(backbone: str, size: int, weights: str) -> Source:
    """A source from ``--weights`` (``"imagenet"`` or a file): nothing is trained."""
    if backbone == "vit_tiny":
        from finetunekit.core.errors import RecipeError

        raise RecipeError("--weights does not apply to vit_tiny, which the benchmark "
                          "pretrains itself. Received: --backbones vit_tiny with --weights.")
    return Source(backbone, backbone_section(backbone, size), weights,
                  {"backbone": backbone, "val_accuracy": None, "given": weights})
