"""The ``finetunekit`` command line: an app above the engine, whose commands are plugins
(``finetunekit_register_commands``; see :mod:`.main`)."""

from finetunekit.cli.main import handle_errors, main, make_cli

__all__ = ["handle_errors", "main", "make_cli"]
