"""``finetunekit demo``: transfer learning on the embedded digits, measured end to end.

There are no ImageNet weights offline, so the demo makes its own transfer source, and
says so: it first trains a backbone from random weights on the digits 0-4 (the
"source" run) and saves the base's weights. It then learns the digits 5-9 from a few
labelled images per class four ways, with the same data, epochs, batch size and seed:

- ``feature_extraction``: the transferred base frozen, only the head trains;
- ``partial``: the transferred base's last block(s) and the head train;
- ``full``: every layer of the transferred base trains;
- ``full`` from random weights: the same recipe without transfer, the baseline.

Every run goes through :meth:`finetunekit.Engine.run` with a plain recipe, so the
demo shows nothing a user's recipe could not do. It prints a table (strategy, weights,
trainable parameters, validation accuracy, wall seconds) and, given a folder, writes the
run folders and ``demo.json`` with the same rows.

The images are scikit-learn's real 8x8 scans, upscaled: the numbers show what transfer
does on a small, easy domain, not what ImageNet weights do on photographs. docs/demo.md
has the figures measured with these settings, over three seeds.

The package is both the app and a library (:mod:`finetunekit.bench.accuracy` builds on
it): :mod:`.task` holds the settings, recipes and table rows, :mod:`.runner` runs the
demo, :mod:`.command` adds ``finetunekit demo`` through ``finetunekit_register_commands``.
"""
from finetunekit.demo.runner import EpochStatus, print_table, run_demo
from finetunekit.demo.task import (
    FULL,
    QUICK,
    SOURCE_CLASSES,
    SOURCE_WEIGHTS,
    TARGET_CLASSES,
    DemoSettings,
    Variant,
    demo_recipe,
    source_recipe,
    table_row,
    target_recipe,
    train_source,
    variants,
)

__all__ = [
    "FULL", "QUICK", "SOURCE_CLASSES", "SOURCE_WEIGHTS", "TARGET_CLASSES", "DemoSettings",
    "EpochStatus", "Variant", "demo_recipe", "print_table", "run_demo", "source_recipe",
    "table_row", "target_recipe", "train_source", "variants",
]
