"""Putting a saved model's weights into a freshly built model of its recipe (``retrain``).

A reloaded model does not name its weights as the freshly built one does (a KerasHub
encoder's layers lose their parent's name; Keras numbers unnamed layers per process), and
the fresh model may hold more (a strategy's LoRA adapters): weights are matched by the
longest end of their paths, else in order by variable name and shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError


def copy_weights(source: Any, target: Any, file: Path) -> None:
    """Copy every weight of a loaded model into the recipe's freshly built one.

    Each weight is matched by the longest end of its path (``layer/variable`` at least)
    that names exactly one weight of the target: a reloaded model nests names
    differently (a KerasHub encoder's layers lose their parent's name), and the target
    may have more weights (a strategy's LoRA adapters keep their own initialisation). If
    that fails (auto-numbered layers: ``dense_48`` in one process is ``dense_12`` in
    another), weights are matched in order, by variable name and shape, the target's
    extra weights skipped.
    """
    src, dst = source.weights, target.weights
    pairs = _match_by_path(src, dst) or _match_in_order(src, dst)
    if not pairs or any(tuple(a.shape) != tuple(b.shape) for a, b in pairs):
        raise PersistenceError(
            f"The model in '{file}' does not match its recipe ({len(src)} weights vs "
            f"{len(dst)} in the recipe's model). Pass the recipe it was trained with."
        )
    for a, b in pairs:
        b.assign(a)


def _match_in_order(src: list, dst: list) -> list[tuple[Any, Any]] | None:
    """Pairs in model order, by variable name (``kernel``, ``gamma``) and shape, the
    target's weights of a kind the source has none of skipped; None otherwise."""
    def name(weight: Any) -> str:
        return weight.path.split("/")[-1]

    known = {name(weight) for weight in src}
    pairs, position = [], 0
    for weight in src:
        # skip only a kind of weight the saved model has none of (a LoRA adapter), so a
        # wrong recipe is refused rather than partly loaded
        while position < len(dst) and name(dst[position]) not in known:
            position += 1
        if (position == len(dst) or name(dst[position]) != name(weight)
                or tuple(dst[position].shape) != tuple(weight.shape)):
            return None
        pairs.append((weight, dst[position]))
        position += 1
    return pairs if all(name(w) not in known for w in dst[position:]) else None


def _match_by_path(src: list, dst: list) -> list[tuple[Any, Any]] | None:
    """Pairs (source weight, target weight) by the longest path end they share, or None
    when a source weight has no unique match or two share one."""
    ends: dict[str, list[Any]] = {}
    exact: dict[str, list[Any]] = {}
    for weight in dst:
        parts = weight.path.split("/")
        exact.setdefault(weight.path, []).append(weight)
        for k in range(2, len(parts) + 1):
            ends.setdefault("/".join(parts[-k:]), []).append(weight)
    pairs, used = [], set()
    for weight in src:
        parts = weight.path.split("/")
        found: list[Any] = exact.get(weight.path, [])  # the same whole path first
        for k in range(len(parts), 1, -1):
            if found:
                break
            found = ends.get("/".join(parts[-k:]), [])
        if len(found) != 1 or id(found[0]) in used:
            return None
        used.add(id(found[0]))
        pairs.append((weight, found[0]))
    return pairs
