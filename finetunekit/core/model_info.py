"""What a saved model file carries beside the model: its class names (``finetunekit.json``
inside a zip, an HDF5 attribute, or a file in a SavedModel folder)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

MODEL_INFO = "finetunekit.json"
"""Name of the JSON that finetunekit stores inside a saved model (its class names)."""


def write_model_info(path: Path, info: dict[str, Any]) -> None:
    """Store `info` inside a saved model, whatever its format, so a bare model file
    knows its class names: an entry ``finetunekit.json`` of a zip (``.keras``, a
    ``.ckpt`` checkpoint), an attribute ``finetunekit`` of an HDF5 file (``.h5``,
    ``.weights.h5``), a file ``finetunekit.json`` in a folder (SavedModel). Keras and
    TensorFlow ignore all three when they load the model."""

    import h5py

    text = json.dumps(info)
    if path.is_dir():
        (path / MODEL_INFO).write_text(text, encoding="utf-8")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path, "a") as archive:
            if MODEL_INFO not in archive.namelist():
                archive.writestr(MODEL_INFO, text)
    elif h5py.is_hdf5(str(path)):
        with h5py.File(str(path), "a") as handle:
            handle.attrs["finetunekit"] = text


def read_model_info(path: Path) -> dict[str, Any]:
    """What :func:`write_model_info` stored in a saved model; {} if nothing."""

    import h5py

    try:
        if path.is_dir():
            file = path / MODEL_INFO
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if MODEL_INFO in archive.namelist():
                    return json.loads(archive.read(MODEL_INFO))
        elif h5py.is_hdf5(str(path)):
            with h5py.File(str(path), "r") as handle:
                if "finetunekit" in handle.attrs:
                    return json.loads(handle.attrs["finetunekit"])
    except (OSError, ValueError):
        pass
    return {}
