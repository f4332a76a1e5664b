"""A tiny recipe file on disk for the tests that drive the command line or a subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_recipe(folder: Path, name: str = "recipe", *, epochs: int = 2, strategy: str = "feature_extraction",
                 keep: int = 2, learning_rate: float = 1e-3, data: str | None = None,
                 extra: str = "") -> Path:
    """A recipe for vgg16 at 32x32 with random weights on 12 random images, saving to
    ``folder / name``; returns the recipe file.

    Args:
        data: the ``[data]`` section's body instead of the 12 images (``source = "arrays"``,
            ``folder / "train.npz"``, batch size 4).
        extra: TOML appended after the ``[save]`` section (keys of it, or more sections).
    """
    if data is None:
        arrays = folder / "train.npz"
        if not arrays.exists():
            rng = np.random.default_rng(0)
            np.savez(arrays, x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                     y=np.arange(12) % 2)
        data = f'source = "arrays"\ntrain = "{arrays}"\nbatch_size = 4'
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
learning_rate = {learning_rate}
[data]
{data}
[train]
epochs = {epochs}
seed = 3
[save]
path = "{folder / name}"
keep_checkpoints = {keep}
{extra}
""")
    return path
