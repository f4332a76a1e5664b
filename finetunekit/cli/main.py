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

from finetunekit.core.errors import FinetunekitError, PluginError, environment_error, printable
from finetunekit.core.manager import get_plugin_manager

DEBUG_ENV = "FINETUNEKIT_DEBUG"
"""Set to 1 (or pass ``--debug``) to see the backend's start-up logging."""

# Quiet TensorFlow's C++ logging before Keras is imported (``--debug`` lifts it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if os.environ.get(DEBUG_ENV) == "1" else "3")


def quiet_backend_import() -> None:
    """Import the Keras backend with its C++ start-up lines (absl's, oneDNN's, cuInit's)
    kept off the terminal, unless ``FINETUNEKIT_DEBUG=1``.

    TensorFlow writes them from C++ before absl's logging is set up, where
    ``TF_CPP_MIN_LOG_LEVEL`` does not reach, so stderr's file descriptor is pointed at
    the null device while TensorFlow loads and looks for its devices, then put back.
    Python errors still surface: they are exceptions, printed later.
    """
    if os.environ.get(DEBUG_ENV) == "1" or "tensorflow" in sys.modules:
        return
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()
                import absl.logging

                absl.logging.set_verbosity(absl.logging.ERROR)
            except ImportError:
                pass  # Keras reports a missing backend itself
    finally:
        os.dup2(saved, 2)
        os.close(saved)

COMMAND_PLUGINS: tuple[str, ...] = (
    "finetunekit.cli.commands",
    "finetunekit.cli.lr_find",
    "finetunekit.demo.command",
    "finetunekit.bench.command",
    "finetunekit.results.command",
    "finetunekit.cli.cache",
)
"""Dotted module paths of the built-in command plugins, registered like any other plugin."""

HOOK = "finetunekit_register_commands"


def _fail(message: str) -> None:
    # one line, whatever a path inside the message holds (a newline, a terminal escape)
    click.echo(f"Error: {printable(message)}", err=True)
    sys.exit(2)


def handle_errors(fn):
    """Turn finetunekit's own errors into exit code 2 with the message; for commands.

    The machine's errors get the same path (:func:`~finetunekit.core.errors.environment_error`):
    out of memory (``MemoryError``, TensorFlow's ``ResourceExhaustedError``, found by class
    name so TensorFlow need not be installed), a full disk, a read-only or forbidden
    folder. Any other exception is a bug and keeps its traceback.

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
        except Exception as exc:
            cause = environment_error(exc)
            if cause is None:
                raise
            _fail(str(cause))

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
    @click.option("--debug", is_flag=True, help="Show the backend's start-up logging "
                  f"(as {DEBUG_ENV}=1).")
    def cli(debug):
        """Fine-tune pretrained image CNNs; every part of the recipe is a plugin."""
        if debug:
            os.environ[DEBUG_ENV] = "1"
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

    return cli


main = make_cli()
"""The ``finetunekit`` console script."""
