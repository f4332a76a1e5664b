"""Run part of a benchmark in a fresh process, so its memory goes back when it ends.

On the TensorFlow backend, every ``fit`` of a compiled model leaves about the size of
the model's weights and optimizer state behind after the model is deleted
(tensorflow/tensorflow#61791, keras-team/keras#17458): 200 MiB a run for the accuracy
benchmark's VGG16 at 32x32, measured with a plain Keras loop of build, compile, fit,
``del``, ``gc.collect()``. ``keras.backend.clear_session()`` does not return it; eager
execution and the JAX backend do not leak. The accuracy benchmark trains hundreds of
models, so on TensorFlow it runs each strategy's runs in a child process
(:func:`in_child`), which hands its log lines and rows back as they come.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Any

from finetunekit.core.errors import FinetunekitError, ResourceError

JOIN_SECONDS = 30
"""How long a finished child is waited for before it is stopped."""


def in_child(function: Callable[..., Any], *args: Any, log: Callable[[str], Any],
             on_item: Callable[[Any], Any]) -> Any:
    """``function(*args, log=..., on_item=...)`` in a fresh (spawned) process.

    The child's ``log`` lines and ``on_item`` values reach this process's `log` and
    `on_item` as the child sends them; its return value is returned. An error the child
    raises is raised here: a finetunekit error as itself, any other as a RuntimeError
    carrying the child's traceback. A child that dies without a result (killed, out of
    memory) raises a ResourceError naming its exit code.

    Args:
        function: a module-level function (the child imports it by name).
        *args: picklable arguments.
        log: callable taking a line of text.
        on_item: callable taking each value the child passes to its ``on_item``.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, function, args),
                              name="finetunekit-bench")
    process.start()
    sender.close()
    try:
        while True:
            try:
                kind, value = receiver.recv()
            except EOFError:
                process.join(JOIN_SECONDS)
                raise ResourceError(_died(process.exitcode)) from None
            if kind == "log":
                log(value)
            elif kind == "item":
                on_item(value)
            elif kind == "result":
                return value
            else:
                raise value
    finally:
        receiver.close()
        process.join(JOIN_SECONDS)
        if process.is_alive():
            process.terminate()
            process.join()


def _died(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if -code == signal.SIGKILL:
            how += " (on Linux, most often the out-of-memory killer: free memory or run fewer at once)"
    else:
        how = f"exited with code {code}"
    return (f"The benchmark's worker process {how} before it finished its runs. The rows "
            "measured so far are kept (rows.partial.jsonl); run the benchmark again.")


def _child_main(sender, function, args) -> None:
    try:
        result = function(*args, log=lambda line: sender.send(("log", line)),
                          on_item=lambda item: sender.send(("item", item)))
        sender.send(("result", result))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        sender.send(("error", _portable(exc)))
    finally:
        sender.close()


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling; a finetunekit error that does not as a
    FinetunekitError with its message; any other error as a RuntimeError with the
    child's traceback (a bug to report, not a user's mistake)."""
    if isinstance(exc, (FinetunekitError, KeyboardInterrupt)):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001 - an error with keyword-only arguments
            return FinetunekitError(str(exc))
    text = "".join(traceback.format_exception(exc))
    return RuntimeError(f"The benchmark's worker process failed:\n{text}")
