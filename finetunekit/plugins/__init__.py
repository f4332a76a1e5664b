"""The built-in plugins, one folder per concern; each module is an ordinary plugin.

Where a new piece goes:

===============  ===============================================================
folder           holds
===============  ===============================================================
``backbones/``   the keras.applications backbones (families stored once), their
                 preprocessing layer and the bounded ImageNet download; KerasHub
                 presets (``keras_hub.py``, keras-hub imported only when used)
``strategies/``  one module per strategy, and the freezing toolbox they share
``heads/``       classification heads
``optimizers/``  optimizer factories
``formats/``     persistence formats, one module each
``data/``        data sources, one module each, and the image decoding they share
``augment/``     augmentations (in-model layers, label mixing, keras-cv)
``lifecycle/``   observers of a run: epoch checkpoints, curves.png and report.md,
                 the CLI's progress bar
===============  ===============================================================
"""

BUILTINS: tuple[str, ...] = (
    "finetunekit.plugins.backbones",
    "finetunekit.plugins.backbones.keras_hub",
    "finetunekit.plugins.strategies.basic",
    "finetunekit.plugins.strategies.two_stage",
    "finetunekit.plugins.strategies.gradual",
    "finetunekit.plugins.strategies.discriminative",
    "finetunekit.plugins.strategies.bitfit",
    "finetunekit.plugins.strategies.norm_only",
    "finetunekit.plugins.strategies.lora",
    "finetunekit.plugins.strategies.l2sp",
    "finetunekit.plugins.strategies.llrd",
    "finetunekit.plugins.heads.dense",
    "finetunekit.plugins.optimizers.keras_optimizers",
    "finetunekit.plugins.formats.native",
    "finetunekit.plugins.formats.h5",
    "finetunekit.plugins.formats.savedmodel",
    "finetunekit.plugins.formats.checkpoint",
    "finetunekit.plugins.formats.weights",
    "finetunekit.plugins.lifecycle.checkpoints",
    "finetunekit.plugins.lifecycle.report",
    "finetunekit.plugins.data.folder",
    "finetunekit.plugins.data.csv_list",
    "finetunekit.plugins.data.arrays",
    "finetunekit.plugins.data.digits",
    "finetunekit.plugins.augment.basic",
    "finetunekit.plugins.augment.kerascv",
)
"""Dotted module paths of the built-in plugins, registered like any other plugin."""
