"""Loading a weights file into a base (``backbone.weights = "path/to/file"``).

The engine does this for every backbone, so a plugin's backbone gets weights files the
same way the built-ins do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetunekit.core.errors import WeightsError


def load_weights_file(base: Any, path: Path, backbone_name: str) -> None:
    """Load a weights file into `base`, with a clear error if it does not fit."""
    if not path.is_file():
        raise WeightsError(
            f"Weights file not found: '{path}' (backbone.weights). Give the path to a "
            "'.h5', '.weights.h5' or '.keras' file, or \"imagenet\" or \"none\"."
        )
    try:
        base.load_weights(str(path))
    except Exception as exc:
        raise WeightsError(
            f"Weights file '{path}' does not fit backbone '{backbone_name}' at input shape "
            f"{tuple(base.input_shape[1:])}: {type(exc).__name__}: {exc}. Use a file saved "
            "from the same architecture without its top (include_top=False)."
        ) from exc
