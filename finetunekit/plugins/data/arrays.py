"""The ``arrays`` data source: numpy ``.npz`` files holding ``x`` and ``y``.

``x`` is uint8 images, NHWC at the model's input size; ``y`` integer labels. The engine
checks shapes, dtype and label range before training.
"""

from __future__ import annotations

import numpy as np

from finetunekit.core.components import Data, DataContext, DataSource
from finetunekit.core.errors import DataError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def read_npz(path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``x`` and ``y`` arrays of a ``.npz`` file.

    Raises:
        DataError: the file is missing, not a ``.npz``, or lacks ``x`` or ``y``.
    """
    try:
        with np.load(path) as archive:
            return archive["x"], archive["y"]
    except FileNotFoundError:
        raise DataError(f"'{key}' file not found: '{path}'.") from None
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(
            f"'{key}' must be a .npz file with arrays 'x' (uint8 images, NHWC) and 'y' "
            f"(integer labels). Received '{path}': {exc}."
        ) from exc


def load_arrays(context: DataContext, train: str, validation: str | None = None) -> Data:
    """Load ``train`` (and ``validation``) ``.npz`` files as they are."""
    splits = {"train": (train, read_npz(train, "data.train"))}
    if validation:
        splits["validation"] = (validation, read_npz(validation, "data.validation"))
    report = {
        "loaded": sum(len(y) for _, (_, y) in splits.values()),
        "skipped": 0,
        "skipped_by_reason": {},
        "converted": {},
        "memory_bytes": sum(int(x.nbytes) for _, (x, _) in splits.values()),
        "splits": {name: {"source": path, "found": len(y), "loaded": len(y)}
                   for name, (path, (_, y)) in splits.items()},
    }
    return Data(train=splits["train"][1],
                validation=splits["validation"][1] if validation else None, report=report)


@hookimpl
def finetunekit_register_data_sources(register):
    register(DataSource(
        name="arrays", load=load_arrays,
        params={
            "train": Param(str, help=".npz file with x (uint8 NHWC) and y"),
            "validation": Param(str, None, nullable=True, help=".npz file for validation"),
        },
        description="Numpy .npz files holding x (uint8 images) and y (labels).",
    ))
