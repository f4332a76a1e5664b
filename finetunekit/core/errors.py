"""Errors finetunekit raises on purpose.

Every message says what was expected, echoes what was received and suggests a fix.
Each error subclasses the builtin that fits, so callers can catch either.
The CLI turns any :class:`FinetunekitError` into a message on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
import errno
import re
import unicodedata
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


class ResourceError(FinetunekitError, RuntimeError):
    """The machine ran out of something the run needs: memory, disk space, permission.

    Not a plugin's fault and not a bad recipe: the message says what ran out and what to
    reduce or free.
    """


# An escape sequence a terminal would act on: CSI (ESC [ ... final byte), OSC (ESC ] ...
# BEL or ESC \), or ESC and one character.
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")


def _escape_char(char: str) -> str:
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` (a path, a file name, a message) safe to print on one terminal line.

    Terminal escape sequences are removed; every other control or format character
    (newline, carriage return, DEL, C1 controls, bidirectional overrides) is written as
    a Python-style escape (``\\n``, ``\\x1b``, ``\\u202e``), so a file named to split a
    line or recolour the terminal prints as what it is. Used wherever a path is printed.

    Args:
        text: anything; ``str()`` of it is escaped.
        keep_newlines: bool. Leave ``\\n`` as is (for whole messages of several lines).
            Defaults to False.

    Example:

    >>> printable("cats/evil\\nError: all good\\x1b[2J.jpg")
    'cats/evil\\\\nError: all good.jpg'
    """
    text = _TERMINAL_ESCAPE.sub("", str(text))
    return "".join(
        char if (keep_newlines and char == "\n")
        or unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp") else _escape_char(char)
        for char in text)


_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
"""OSError numbers that are the machine's state, not a bug: errno -> words."""


def environment_error(exc: BaseException, doing: str = "") -> FinetunekitError | None:
    """The clear error for an exception that means the machine ran out of something
    (memory, accelerator memory, disk space) or refuses to write; None for any other.

    One place for resource and file-system errors: the command line, the plugin
    wrappers (a full disk is not a plugin's fault) and the engine all use it.

    Args:
        exc: the exception raised.
        doing: str. What was being done, for the message (``"writing checkpoint ..."``).
    """
    while_ = f" while {doing}" if doing else ""
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or name in ("ResourceExhaustedError", "OutOfMemoryError") \
            or (name == "XlaRuntimeError" and "RESOURCE_EXHAUSTED" in str(exc)):
        first = printable(str(exc).strip().splitlines()[0] if str(exc).strip() else name)[:300]
        return ResourceError(
            f"Out of memory{while_} ({name}: {first}). Reduce data.batch_size or "
            "backbone.input_shape (or use a smaller backbone, or train.precision = "
            "'mixed_float16' on a GPU), then run again.")
    if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
        target = f" '{printable(exc.filename)}'" if exc.filename else ""
        what = _OS_ERRORS[exc.errno]
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = ("Files are written under a temporary name and renamed when complete, so "
                      "every file already under its final name (earlier checkpoints, the "
                      "recipe) is intact. Free some space (or lower save.keep_checkpoints) and "
                      "continue with 'finetunekit resume RUN_DIR'.")
        else:
            advice = "Choose a folder you can write (save.path), or fix its permissions."
        verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
        return PersistenceError(f"Could not {verb}{target}{while_}: {what}. {advice}")
    return None
