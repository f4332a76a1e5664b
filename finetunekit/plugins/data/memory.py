"""The memory budget of the in-memory path: whether a source's images are decoded into
memory or streamed from disk (``data.in_memory``), and the check that refuses arrays
that cannot fit before anything is decoded."""

from __future__ import annotations

from typing import Any

from finetunekit.core.errors import DataError

IN_MEMORY_PEAK = 1.2
"""A training epoch's peak memory over the decoded arrays, in memory (measured:
docs/data.md, "Memory")."""

MEMORY_SHARE = 0.5
"""``in_memory = "auto"`` keeps the images in memory when the peak fits in this share of
the available memory; the rest is left to the model, the framework and other processes."""


def keeps_in_memory(in_memory: Any, images: int, size: tuple[int, int]) -> bool:
    """Whether to decode `images` files into memory (True) or stream them (False).

    ``true`` and ``false`` decide; ``"auto"`` keeps them in memory when
    :data:`IN_MEMORY_PEAK` times the decoded arrays (N x H x W x 3 bytes) fits in
    :data:`MEMORY_SHARE` of the available memory (``MemAvailable``; in memory where the
    system does not tell).
    """
    if isinstance(in_memory, bool):
        return in_memory
    needed = images * size[0] * size[1] * 3
    available = available_memory()
    return available is None or IN_MEMORY_PEAK * needed <= MEMORY_SHARE * available


def check_fits(images: int, size: tuple[int, int]) -> None:
    """Refuse decoding `images` files at `size` into memory that cannot hold them.

    Raises:
        DataError: the uint8 arrays alone exceed the available memory.
    """
    height, width = size
    needed = images * height * width * 3
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(
            f"Decoding {images:,} images at {height}x{width} needs {megabytes(needed)} of "
            f"memory (images x height x width x 3 bytes, kept as uint8) but "
            f"{megabytes(available)} is available. Set data.in_memory = false to stream "
            "them from disk, or use a smaller backbone.input_shape or fewer images.")


def available_memory() -> int | None:
    """``MemAvailable`` in bytes, or None where the system does not tell (not Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def megabytes(n: int) -> str:
    """`n` bytes in words: ``"24.6 kB"``, ``"12.3 MB"`` or ``"1.25 GB"``."""
    if n < 1e6:
        return f"{n / 1e3:,.1f} kB"
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"
