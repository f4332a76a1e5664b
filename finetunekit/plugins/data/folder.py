"""The ``folder`` data source: one sub-folder of images per class.

The seed's layout (``train/cats``, ``train/dogs``, ``validation/cats``, ...), read with
Pillow into uint8 arrays at the model's input size by one scan before training (see
:mod:`.images`). Class names are the sub-folder names, sorted; label ``i`` is the
``i``-th of them.
"""

from __future__ import annotations

from pathlib import Path

from finetunekit.core.components import Data, DataContext, DataSource
from finetunekit.core.errors import DataError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl
from finetunekit.plugins.data.images import IMAGE_SUFFIXES, list_images
from finetunekit.plugins.data.scan import SCAN_PARAMS, ImageList, to_data


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


def list_folder(root: Path, key: str, name: str) -> tuple[ImageList, list[str]]:
    """List the images of every class sub-folder of `root`; decode nothing yet.

    Raises:
        DataError: `root` is not a folder, has no class sub-folders, or a class folder
            holds no image files.
    """
    folders = _class_folders(root, key)
    files = ImageList(name, str(root), [], [])
    for label, folder in enumerate(folders):
        images, others = list_images(folder)
        if not images:
            hint = f" It holds {others} other file(s)." if others else ""
            raise DataError(
                f"Class folder '{folder}' ({key}) holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}).{hint} Add images or remove the folder."
            )
        files.paths.extend(images)
        files.labels.extend([label] * len(images))
        files.ignored += others
    return files, [f.name for f in folders]


def _same_classes(train: list[str], validation: list[str], root: str) -> None:
    if train == validation:
        return
    only_train = sorted(set(train) - set(validation))
    only_val = sorted(set(validation) - set(train))
    raise DataError(
        f"The class folders of '{root}' (data.validation) differ from the training folders: "
        f"train has {train}, validation has {validation} (only in train: "
        f"{', '.join(only_train) or '-'}; only in validation: {', '.join(only_val) or '-'}). "
        "Use the same class sub-folders in both."
    )


def load_folder(context: DataContext, train: str, validation: str | None = None,
                validation_split: float | None = None, strict: bool = False, in_memory: bool | str = "auto") -> Data:
    """Load ``train`` (and ``validation``, or a ``validation_split`` of train)."""
    if validation and validation_split:
        raise DataError("Give either 'data.validation' or 'data.validation_split', not both. "
                        f"Received: data.validation='{validation}', "
                        f"data.validation_split={validation_split}.")
    train_files, names = list_folder(Path(train), "data.train", "train")
    if len(names) < 2:
        raise DataError(
            f"A classifier needs at least 2 classes, but '{train}' (data.train) has one class "
            f"sub-folder: {names}. Add a sub-folder per class (for a yes/no problem, one for "
            "the other images too)."
        )
    lists = [train_files]
    if validation:
        val_files, val_names = list_folder(Path(validation), "data.validation", "validation")
        _same_classes(names, val_names, validation)
        lists.append(val_files)
    return to_data(lists, names, context, strict=strict, validation_split=validation_split,
                   source=train, in_memory=in_memory)


@hookimpl
def finetunekit_register_data_sources(register):
    register(DataSource(
        name="folder", load=load_folder,
        params={
            "train": Param(str, help="folder with one sub-folder of images per class"),
            "validation": Param(str, None, nullable=True, help="validation folder, same classes"),
            **SCAN_PARAMS,
        },
        description="Images in class sub-folders (train/cats, train/dogs, ...).",
    ))
