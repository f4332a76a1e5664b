"""Errors finetunekit raises on purpose.

Every message says what was expected, echoes what was received and suggests a fix.
Each error subclasses the builtin that fits, so callers can catch either.
The CLI turns any :class:`FinetunekitError` into a message on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FinetunekitError(Exception):
    """Base class of every error finetunekit raises on purpose."""


class RecipeError(FinetunekitError, ValueError):
    """A recipe key is unknown, missing, of the wrong type or out of range."""


class UnknownComponentError(FinetunekitError, KeyError):
    """A recipe names a component (backbone, strategy, ...) that no plugin provides."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class PluginError(FinetunekitError, RuntimeError):
    """A plugin broke the contract or raised; the message names the plugin and the hook."""

    def __init__(self, message: str, *, plugin: str | None = None, hook: str | None = None):
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook


class WeightsError(FinetunekitError, RuntimeError):
    """Pretrained weights could not be obtained or do not fit the backbone."""


class DataError(FinetunekitError, ValueError):
    """Training data is missing, malformed or does not fit the model."""


class PersistenceError(FinetunekitError, OSError):
    """A model or run folder could not be saved or loaded."""


class NonFiniteLossError(FinetunekitError, FloatingPointError):
    """The training loss became NaN or infinite; the run stopped without saving a model.

    Attributes:
        epoch: int. The epoch (from 1) whose loss was not finite.
    """

    def __init__(self, message: str, *, epoch: int):
        super().__init__(message)
        self.epoch = epoch


def did_you_mean(received: str, known: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(str(received), list(known), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_message(what: str, received: str, known: Iterable[str]) -> str:
    """Format the standard message for an unknown name: received, known, closest match."""
    known = sorted(known)
    return (
        f"Unknown {what} '{received}'. Known: {', '.join(known) or '(none)'}."
        f"{did_you_mean(received, known)}"
    )
