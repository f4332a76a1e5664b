"""data.in_memory = "auto" streams what would not fit in its share of the free memory;
forced into memory, arrays larger than the free memory are refused before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from finetunekit import DataError, Engine
from finetunekit.plugins.data import memory
from finetunekit.plugins.data.stream import FileExamples
from finetunekit.testing import tiny_recipe


def _folder(root, per_class=4):
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def _recipe(train, in_memory):
    return tiny_recipe(data={"source": "folder", "train": str(train), "in_memory": in_memory})


def test_auto_keeps_in_memory_what_fits_its_share_and_streams_the_rest(tmp_path, monkeypatch):
    train = _folder(tmp_path / "train")
    decoded = 8 * 32 * 32 * 3  # 8 images at the input size, uint8
    engine = Engine(entry_points=False)
    fits = decoded * memory.IN_MEMORY_PEAK / memory.MEMORY_SHARE
    monkeypatch.setattr(memory, "available_memory", lambda: int(fits) + 1)
    assert isinstance(engine.load_data(_recipe(train, "auto")).train, tuple)
    monkeypatch.setattr(memory, "available_memory", lambda: int(fits) - 1)
    assert isinstance(engine.load_data(_recipe(train, "auto")).train, FileExamples)
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # not Linux: in memory
    assert isinstance(engine.load_data(_recipe(train, "auto")).train, tuple)


def test_arrays_larger_than_the_free_memory_are_refused_naming_the_way_out(tmp_path,
                                                                          monkeypatch):
    train = _folder(tmp_path / "train")
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"Decoding 8 images at 32x32 needs 24\.6 kB of "
                                        r"memory .* but 1\.0 kB is available\. Set "
                                        r"data\.in_memory = false"):
        Engine(entry_points=False).load_data(_recipe(train, True))


def test_megabytes_reads_as_words():
    assert memory.megabytes(24_576) == "24.6 kB"
    assert memory.megabytes(1_500_000) == "1.5 MB"
    assert memory.megabytes(15_000_000_000) == "15.00 GB"
