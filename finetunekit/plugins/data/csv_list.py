"""The ``csv`` data source: an image list, one ``path,label`` row per image.

The first line is a header naming the columns ``path`` and ``label`` (any order; other
columns are ignored)::

    path,label
    photos/0001.jpg,cat
    /data/more/0002.png,dog

Relative paths are relative to the CSV file's folder. Labels are class names; the
classes are ``data.classes`` if given, else the training CSV's labels, sorted (as
numbers if they all are). A row whose label is not among them, or that lacks a path or
label, is skipped and reported like a bad image (refused with ``strict``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from finetunekit.core.components import Data, DataContext, DataSource
from finetunekit.core.errors import DataError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl
from finetunekit.plugins.data.scan import SCAN_PARAMS, ImageList, to_data

COLUMNS = ("path", "label")


def read_rows(csv_path: Path, key: str) -> list[tuple[int, str | None, str | None]]:
    """The ``(line, path, label)`` of each data row; missing cells are None.

    Raises:
        DataError: the file is missing or unreadable, or its header lacks a column.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"'{key}' CSV '{csv_path}' is empty. Write a header line "
                                "'path,label', then one row per image.")
            columns = [c.strip().lower() for c in header]
            if not all(c in columns for c in COLUMNS):
                raise DataError(
                    f"'{key}' CSV '{csv_path}' must start with a header naming the columns "
                    f"'path' and 'label'. Received header: {header}. Add a first line "
                    "'path,label'."
                )
            at = [columns.index(c) for c in COLUMNS]
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank lines are layout, not data
                path, label = (row[i].strip() if i < len(row) and row[i].strip() else None for i in at)
                rows.append((reader.line_num, path, label))
            return rows
    except FileNotFoundError:
        raise DataError(f"'{key}' file not found: '{csv_path}'. Give the path of a CSV image "
                        "list (columns path,label).") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"'{key}' CSV '{csv_path}' could not be read: {exc}. Save it as "
                        "UTF-8 text with comma-separated path,label rows.") from exc


def _sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def list_csv(csv_path: Path, key: str, name: str, rows, classes: list[str]) -> ImageList:
    """Turn rows into an :class:`ImageList`; unknown labels and bad rows are skipped."""
    index = {label: i for i, label in enumerate(classes)}
    files = ImageList(name, str(csv_path), [], [], every_class=name == "train")
    for line, path, label in rows:
        if path is None or label is None:
            files.skip("bad_row", f"{csv_path}:{line} (no {'path' if path is None else 'label'})")
        elif label not in index:
            files.skip("unknown_label", f"{csv_path}:{line} (label '{label}')")
        else:
            file = Path(path)
            files.paths.append(file if file.is_absolute() else csv_path.parent / file)
            files.labels.append(index[label])
    return files


def load_csv(context: DataContext, train: str, validation: str | None = None,
             validation_split: float | None = None, classes: list[str] | None = None,
             strict: bool = False, in_memory: bool | str = "auto") -> Data:
    """Load the images a training CSV (and a validation CSV, or a split) lists."""
    if validation and validation_split:
        raise DataError("Give either 'data.validation' or 'data.validation_split', not both. "
                        f"Received: data.validation='{validation}', "
                        f"data.validation_split={validation_split}.")
    train_rows = read_rows(Path(train), "data.train")
    if classes is not None:
        names = [str(c) for c in classes]
        if len(set(names)) != len(names):
            raise DataError(f"'data.classes' must not repeat a name. Received: data.classes={classes}.")
    else:
        names = _sorted_labels({label for _, path, label in train_rows if path and label})
    if len(names) < 2:
        raise DataError(
            f"A classifier needs at least 2 classes, but '{train}' (data.train) has "
            f"{len(names)}: {names}. List images of at least two labels"
            f"{' and name them in data.classes' if classes is not None else ''}."
        )
    lists = [list_csv(Path(train), "data.train", "train", train_rows, names)]
    if validation:
        rows = read_rows(Path(validation), "data.validation")
        lists.append(list_csv(Path(validation), "data.validation", "validation", rows, names))
    return to_data(lists, names, context, strict=strict, validation_split=validation_split,
                   source=train, in_memory=in_memory)


@hookimpl
def finetunekit_register_data_sources(register):
    register(DataSource(
        name="csv", load=load_csv,
        params={
            "train": Param(str, help="CSV image list: header path,label; paths relative to the CSV"),
            "validation": Param(str, None, nullable=True, help="CSV image list for validation"),
            "classes": Param(list, None, nullable=True, items=str,
                             help="class names in label order (default: the train CSV's labels, sorted)"),
            **SCAN_PARAMS,
        },
        description="An image list: a CSV of path,label rows (labels are class names).",
    ))
