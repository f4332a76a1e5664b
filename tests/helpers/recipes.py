"""A tiny recipe file on disk for the tests that drive the command line or a subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_recipe(folder: Path, name: str = "recipe", *, epochs: int = 2, strategy: str = "feature_extraction",
                 keep: int = 2, extra: str = "") -> Path:
    """A recipe for vgg16 at 32x32 with random weights on 12 random images, saving to
    ``folder / name``; returns the recipe file."""
    data = folder / "train.npz"
    if not data.exists():
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), y=np.arange(12) % 2)
    path = folder / f"{name}.toml"
    path.write_text(f"""
[backbone]
name = "vgg16"
weights = "none"
input_shape = [32, 32, 3]
[strategy]
name = "{strategy}"
[head]
classes = 1
hidden = [8]
dropout = 0.5
[optimizer]
name = "adam"
learning_rate = 1e-3
[data]
source = "arrays"
train = "{data}"
batch_size = 4
[train]
epochs = {epochs}
seed = 3
[save]
path = "{folder / name}"
keep_checkpoints = {keep}
{extra}
""")
    return path
