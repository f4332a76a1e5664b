"""The ``finetunekit`` command line: an app above the engine (see :mod:`.main`)."""

from finetunekit.cli.main import main

__all__ = ["main"]
