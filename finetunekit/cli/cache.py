"""``finetunekit cache list`` and ``finetunekit cache clear``: the feature cache on disk.

A command plugin (``finetunekit_register_commands``), like ``demo`` and ``bench``. It
reads the folder through :mod:`finetunekit.core.feature_store` alone, so it starts
without importing Keras, and removes entries the way eviction does: an entry another
process has open is kept and reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from finetunekit.cli.main import handle_errors
from finetunekit.core import feature_folder, feature_store
from finetunekit.core.errors import FinetunekitError, printable
from finetunekit.core.manager import hookimpl

DIR_OPTION = click.option(
    "--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The cache folder (default: $FINETUNEKIT_CACHE_DIR, else "
         "~/.cache/finetunekit/features).")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _row(entry: feature_folder.Entry) -> dict:
    manifest = entry.manifest
    return {"key": entry.key, "backbone": manifest.get("backbone"),
            "rows": manifest.get("rows"), "shape": manifest.get("shape"),
            "bytes": entry.size, "last_used": _when(entry.last_used),
            "created": _when(manifest.get("created", 0)), "path": str(entry.path)}


@click.group()
def cache():
    """The feature cache on disk: list its entries, clear them."""


@cache.command("list")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_entries(folder, as_json):
    """Each entry (least recently used first), the folder and the total."""
    folder = folder or feature_store.default_folder()
    found = feature_folder.entries(folder)
    left = feature_folder.leftovers(folder)
    total = sum(entry.size for entry in found)
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "total_bytes": total,
                               "limit_bytes": feature_store.default_disk_limit(),
                               "entries": [_row(e) for e in found],
                               "leftovers": [str(p) for p in left]}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(printable(folder)))
    table.add_column("key", no_wrap=True, min_width=12)  # what `cache clear` takes
    table.add_column("backbone", no_wrap=True)
    for column in ("rows", "features", "size", "last used", "created"):
        table.add_column(column, justify="right" if column in ("rows", "size") else "left",
                         overflow="fold")  # a narrow terminal wraps, never cuts, a date
    for entry in found:
        row = _row(entry)
        table.add_row(entry.key[:12], escape(printable(row["backbone"] or "-")),
                      str(row["rows"]), "x".join(map(str, row["shape"] or [])),
                      _size(entry.size), row["last_used"], row["created"][:10])
    console = Console()
    if found:
        console.print(table)
    else:
        click.echo(f"No entries in {printable(folder)}.")
    click.echo(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}, {_size(total)} "
               f"(limit {_size(feature_store.default_disk_limit())}, "
               f"${feature_store.LIMIT_ENV}).")
    if left:
        click.echo(f"{len(left)} folder(s) left by interrupted computations: "
                   "`finetunekit cache clear --all` removes them.")


@cache.command(short_help="Remove entries: by key, all, or unused for some days.")
@click.argument("keys", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS", default=None,
              help="Remove entries not used for DAYS days.")
@DIR_OPTION
@handle_errors
def clear(keys, everything, older_than, folder):
    """Remove entries: KEY... (a key or its start, as `cache list` shows), --all, or
    --older-than DAYS. An entry another process is using is kept."""
    if sum((bool(keys), everything, older_than is not None)) != 1:
        raise FinetunekitError(
            "cache clear needs exactly one of KEY..., --all or --older-than DAYS. Received: "
            f"{'keys ' + ' '.join(keys) if keys else 'no keys'}"
            f"{', --all' if everything else ''}"
            f"{f', --older-than {older_than:g}' if older_than is not None else ''}. "
            "See `finetunekit cache list` for the keys.")
    folder = folder or feature_store.default_folder()
    found = feature_folder.entries(folder)
    if keys:
        chosen = []
        for key in keys:
            matches = [e for e in found if e.key.startswith(key.lower())]
            if len(matches) != 1:
                known = ", ".join(e.key[:12] for e in found) or "none"
                what = "matches no entry" if not matches else (
                    f"matches {len(matches)} entries; give more of it")
                raise FinetunekitError(f"Key '{printable(key)}' {what} in {printable(folder)}. "
                                       f"Known keys: {known}. Nothing was removed.")
            chosen.append(matches[0])
    elif everything:
        chosen = found
    else:
        cutoff = time.time() - older_than * 86400
        chosen = [e for e in found if e.last_used < cutoff]
    removed, kept = [], []
    for entry in chosen:
        (removed if feature_store.remove(entry.path) else kept).append(entry)
    leftovers = feature_folder.leftovers(folder) if everything else []
    for path in leftovers:
        feature_store.remove(path)
    for entry in removed:
        click.echo(f"Removed {entry.key[:12]} ({entry.manifest.get('backbone')}, "
                   f"{entry.manifest.get('rows')} rows, {_size(entry.size)}).")
    for entry in kept:
        click.echo(f"Kept {entry.key[:12]}: another process is using it.")
    if leftovers:
        click.echo(f"Removed {len(leftovers)} folder(s) left by interrupted computations.")
    click.echo(f"Freed {_size(sum(e.size for e in removed))} in {printable(folder)}.")


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``finetunekit cache``."""
    cli.add_command(cache)
