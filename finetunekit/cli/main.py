"""The ``finetunekit`` command line: a click group whose commands all come from plugins.

The group holds no command of its own. The first time it looks one up (to run it, or
to list them for ``--help``) it asks every plugin through
``finetunekit_register_commands(cli)``: the built-in command plugins in
:data:`COMMAND_PLUGINS` first, then the ``finetunekit`` entry-point group. An installed
package adds a command exactly the way ``run`` and ``demo`` are added.

Bad input of any kind ends with a message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from typing import Any

import click

from finetunekit.core.errors import FinetunekitError, PluginError
from finetunekit.core.manager import get_plugin_manager

# Quiet TensorFlow's C++ start-up logging before Keras is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMAND_PLUGINS: tuple[str, ...] = (
    "finetunekit.cli.commands",
    "finetunekit.demo.command",
    "finetunekit.bench.command",
    "finetunekit.results.command",
)
"""Dotted module paths of the built-in command plugins, registered like any other plugin."""

HOOK = "finetunekit_register_commands"


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def handle_errors(fn):
    """Turn finetunekit's own errors into exit code 2 with the message; for commands.

    A plugin's command can use it too: ``@handle_errors`` under ``@cli.command()``.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FinetunekitError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


class CommandPluginError(click.ClickException):
    """A plugin could not add its commands: exit code 2, like every bad input."""

    exit_code = 2


class PluginGroup(click.Group):
    """A click group that collects its commands from plugins the first time it needs one.

    Args:
        plugins: iterable. Extra command plugins (modules, dotted module paths or
            objects), asked after the built-ins and the entry points.
        entry_points: bool. Ask the ``finetunekit`` entry-point group. Defaults to True.
    """

    def __init__(self, *args: Any, plugins: Iterable[Any] = (), entry_points: bool = True,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.plugins = tuple(plugins)
        self.entry_points = entry_points
        self.owners: dict[str, str] = {}
        """Command name to the plugin that added it."""
        self._adding: str | None = None
        self._loaded = False

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Add a command; a name another plugin already added is refused, naming both."""
        name = name or cmd.name
        owner = self._adding or "(added directly)"
        if name in self.commands:
            raise PluginError(
                f"Duplicate command name '{name}': plugin '{owner}' adds it in '{HOOK}', but "
                f"plugin '{self.owners[name]}' already did. Rename one, or uninstall one of "
                "the two packages.",
                plugin=owner,
                hook=HOOK,
            )
        super().add_command(cmd, name)
        self.owners[name] = owner

    def load_commands(self) -> None:
        """Ask every command plugin once; a failure is a clear error naming the plugin."""
        if self._loaded:
            return
        self._loaded = True
        try:
            pm = get_plugin_manager([*COMMAND_PLUGINS, *self.plugins], builtins=False,
                                    entry_points=self.entry_points)
            impls = getattr(pm.hook, HOOK).get_hookimpls()
            # built-in commands first, so a clash blames the outside plugin
            for impl in sorted(impls, key=lambda impl: impl.plugin_name not in COMMAND_PLUGINS):
                self._register(impl)
        except FinetunekitError as exc:
            self.commands.clear()  # a half-registered command line must not run
            self.owners.clear()
            raise CommandPluginError(str(exc)) from exc

    def _register(self, impl: Any) -> None:
        plugin = impl.plugin_name
        if impl.wrapper or impl.hookwrapper:
            raise PluginError(
                f"Plugin '{plugin}' implements '{HOOK}' as a wrapper; it takes plain "
                "implementations that add commands.",
                plugin=plugin,
                hook=HOOK,
            )
        self._adding = plugin
        try:
            impl.function(**{arg: self for arg in impl.argnames})
        except FinetunekitError:
            raise
        except Exception as exc:
            raise PluginError(
                f"Plugin '{plugin}' failed in hook '{HOOK}': {type(exc).__name__}: {exc}. "
                "Fix or uninstall that plugin; the command line cannot start without it.",
                plugin=plugin,
                hook=HOOK,
            ) from exc
        finally:
            self._adding = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_commands()
        return super().get_command(ctx, cmd_name)


def make_cli(plugins: Iterable[Any] = (), *, entry_points: bool = True) -> PluginGroup:
    """Make a ``finetunekit`` command line with its own plugins.

    ``finetunekit.cli.main`` is ``make_cli()``; a test or an embedding app makes its own,
    so that its plugins' commands do not leak into another.

    Args:
        plugins: iterable. Extra command plugins, asked after the built-ins and the
            installed entry points.
        entry_points: bool. Ask the ``finetunekit`` entry-point group. Defaults to True.

    Example:

    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(make_cli(entry_points=False), ["list", "--help"]).exit_code
    0
    """

    @click.group(cls=PluginGroup, name="finetunekit", plugins=plugins,
                 entry_points=entry_points,
                 context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="finetunekit")
    def cli():
        """Fine-tune pretrained image CNNs; every part of the recipe is a plugin."""

    return cli


main = make_cli()
"""The ``finetunekit`` console script."""
