"""A research sweep from Python: strategies x seeds, with your own Keras pieces.

Each run gets

* its own Keras callback (``BestEpoch``: the best validation accuracy and its epoch),
* its own Keras optimizer instance (SGD with Nesterov momentum; finetunekit clones it for
  every stage and gives each stage its learning rate),
* a ``tf.data`` input pipeline for training (the digits that ship with scikit-learn,
  resized, uint8: the model normalises them itself),

and the script prints one table row per run. ``--tiny`` runs in well under a minute on a
CPU (random weights, a handful of images): it is what CI runs.

    python examples/research_sweep.py --tiny
    python examples/research_sweep.py --strategies feature_extraction partial full --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from finetunekit import Data, Engine, Recipe
from finetunekit.plugins.data.digits import digits_images


class BestEpoch(keras.callbacks.Callback):
    """Remembers the best ``val_accuracy`` of a run and the epoch it came at."""

    def __init__(self):
        super().__init__()
        self.best, self.epoch = float("-inf"), None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is not None and value > self.best:
            self.best, self.epoch = float(value), epoch + 1


def digits(size: int, classes: list[int], per_class: int, validation: int, batch_size: int,
           seed: int) -> Data:
    """Training digits as a shuffled, batched ``tf.data.Dataset``; validation as arrays."""
    x, y = digits_images((size, size))
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label, digit in enumerate(classes):
        index = rng.permutation(np.flatnonzero(y == digit))
        train.append((index[:per_class], label))
        held.append((index[per_class:per_class + validation], label))

    def pick(parts):
        images = np.concatenate([x[i] for i, _ in parts])
        labels = np.concatenate([np.full(len(i), label, "int32") for i, label in parts])
        return images, labels

    train_x, train_y = pick(train)
    dataset = (tf.data.Dataset.from_tensor_slices((train_x, train_y))
               .shuffle(len(train_x), seed=seed).batch(batch_size))
    return Data(train=dataset, validation=pick(held), class_names=[str(c) for c in classes])


STRATEGY_KEYS = {"partial": {"unfreeze_blocks": 1}}
"""Keys a strategy needs besides its name (partial: train the last block)."""


def recipe(strategy: str, seed: int, args: argparse.Namespace) -> Recipe:
    return Recipe.from_dict({
        "backbone": {"name": args.backbone, "weights": args.weights,
                     "input_shape": [args.size, args.size, 3]},
        "strategy": {"name": strategy, **STRATEGY_KEYS.get(strategy, {})},
        "head": {"classes": len(args.classes)},
        "optimizer": {"learning_rate": args.learning_rate},
        "data": {"batch_size": args.batch_size},
        "train": {"epochs": args.epochs, "seed": seed},
    })


def sweep(args: argparse.Namespace) -> list[dict]:
    rows = []
    for strategy in args.strategies:
        for seed in args.seeds:
            best = BestEpoch()
            engine = Engine(entry_points=False)
            data = digits(args.size, args.classes, args.per_class, args.validation,
                          args.batch_size, seed)
            optimizer = keras.optimizers.SGD(momentum=0.9, nesterov=True)
            began = time.perf_counter()
            run = engine.run(recipe(strategy, seed, args), data=data, save=False,
                             callbacks=[best], optimizer=optimizer)
            rows.append({"strategy": strategy, "seed": seed, "best_val_accuracy": best.best,
                         "best_epoch": best.epoch,
                         "final_val_accuracy": run.history[-1].get("val_accuracy"),
                         "seconds": time.perf_counter() - began})
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'strategy':<20} {'seed':>4} {'best val acc':>12} {'epoch':>5} {'final':>7} {'s':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['strategy']:<20} {r['seed']:>4} {r['best_val_accuracy']:>12.3f} "
                     f"{r['best_epoch'] or '-':>5} {r['final_val_accuracy']:>7.3f} "
                     f"{r['seconds']:>6.1f}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="CI settings: random weights, 32x32, a few images, 1 epoch")
    parser.add_argument("--strategies", nargs="+", default=["feature_extraction", "partial", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--validation", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.tiny:
        args.strategies, args.seeds = ["feature_extraction", "partial"], [0, 1]
        args.weights, args.size, args.classes = "none", 32, [0, 1]
        args.per_class, args.validation, args.epochs, args.batch_size = 4, 4, 1, 4
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    rows = sweep(parse(argv))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
