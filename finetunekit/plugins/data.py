"""Built-in data sources: a folder of class sub-folders, and numpy ``.npz`` files.

Images are decoded with Pillow, converted to RGB, resized to the model's input and kept
as uint8; the model normalises them on the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from finetunekit.core.components import Data, DataContext, DataSource
from finetunekit.core.errors import DataError
from finetunekit.core.params import Param
from finetunekit.core.plugins import hookimpl

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _class_folders(root: Path, key: str) -> list[Path]:
    if not root.is_dir():
        raise DataError(
            f"'{key}' must be a folder with one sub-folder per class (e.g. {key}/cats, "
            f"{key}/dogs). Received: '{root}', which is not a folder."
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(
            f"'{root}' ({key}) holds no class sub-folders. Put each class's images in a "
            "sub-folder named after the class."
        )
    return folders


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode one image file to a (height, width, 3) uint8 array at `size`."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def read_folder(root: Path, size: tuple[int, int], key: str, class_names: list[str] | None = None):
    """Read every image under ``root/<class>/``; returns images, labels, class names."""
    folders = _class_folders(root, key)
    names = [f.name for f in folders]
    if class_names is not None and names != class_names:
        raise DataError(
            f"The class folders of '{root}' ({key}) differ from the training folders: "
            f"{names} vs {class_names}. Use the same class sub-folders in both."
        )
    images, labels, bad = [], [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"Class folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        for path in files:
            try:
                images.append(read_image(path, size))
                labels.append(label)
            except Exception as exc:  # Pillow raises many types for bad files
                bad.append(f"{path} ({type(exc).__name__})")
    if bad:
        raise DataError(
            f"{len(bad)} file(s) under '{root}' could not be read as images: "
            f"{'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Remove or fix them."
        )
    return np.stack(images), np.asarray(labels, dtype=np.int32), names


def split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Shuffle with `seed` and hold out `fraction` of the samples for validation."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, int(round(len(x) * fraction)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def load_folder(context: DataContext, train: str, validation: str | None = None,
                validation_split: float | None = None) -> Data:
    if validation and validation_split:
        raise DataError("Give either 'data.validation' or 'data.validation_split', not both.")
    size = context.input_shape[:2]
    x, y, names = read_folder(Path(train), size, "data.train")
    if validation:
        val = read_folder(Path(validation), size, "data.validation", names)[:2]
        return Data(train=(x, y), validation=val, class_names=names)
    if validation_split:
        train_pair, val_pair = split(x, y, validation_split, context.seed)
        return Data(train=train_pair, validation=val_pair, class_names=names)
    return Data(train=(x, y), class_names=names)


def _read_npz(path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
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
    return Data(train=_read_npz(train, "data.train"),
                validation=_read_npz(validation, "data.validation") if validation else None)


@hookimpl
def finetunekit_register_data_sources(register):
    register(DataSource(
        name="folder", load=load_folder,
        params={
            "train": Param(str, help="folder with one sub-folder of images per class"),
            "validation": Param(str, None, nullable=True, help="validation folder, same classes"),
            "validation_split": Param(float, None, nullable=True, min=0.01, max=0.9,
                                      help="fraction of train held out instead"),
        },
        description="Images in class sub-folders (train/cats, train/dogs, ...).",
    ))
    register(DataSource(
        name="arrays", load=load_arrays,
        params={
            "train": Param(str, help=".npz file with x (uint8 NHWC) and y"),
            "validation": Param(str, None, nullable=True, help=".npz file for validation"),
        },
        description="Numpy .npz files holding x (uint8 images) and y (labels).",
    ))
