"""A benchmark part run in a child process: what it logs and measures comes back in
order, its errors come back as themselves, and a child that dies is a clear error."""

from __future__ import annotations

import os
import signal

import pytest

from finetunekit.bench.isolation import in_child
from finetunekit.core.errors import (
    FinetunekitError,
    NonFiniteLossError,
    RecipeError,
    ResourceError,
)


def talks(count, *, log, on_item):
    for k in range(count):
        log(f"line {k}")
        on_item({"k": k})
    return os.getpid()


def refuses(*, log, on_item):
    raise RecipeError("Unknown key 'x' in [strategy].")


def breaks(*, log, on_item):
    return 1 / 0


def diverges(*, log, on_item):
    raise NonFiniteLossError("The loss became NaN in epoch 3.", epoch=3)


def dies(*, log, on_item):
    log("about to die")
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_childs_lines_and_items_come_back_in_order_with_its_result():
    heard = []
    pid = in_child(talks, 3, log=lambda line: heard.append(line),
                   on_item=lambda item: heard.append(item))
    assert pid != os.getpid()
    assert heard == ["line 0", {"k": 0}, "line 1", {"k": 1}, "line 2", {"k": 2}]


def test_errors_come_back_as_themselves_or_with_the_childs_traceback():
    quiet = {"log": lambda line: None, "on_item": lambda item: None}
    with pytest.raises(RecipeError, match="Unknown key 'x'"):
        in_child(refuses, **quiet)
    with pytest.raises(FinetunekitError, match="NaN in epoch 3"):  # keyword-only: no pickle
        in_child(diverges, **quiet)
    with pytest.raises(RuntimeError, match="(?s)worker process failed.*ZeroDivisionError"):
        in_child(breaks, **quiet)


def test_a_child_that_dies_without_a_result_is_a_resource_error():
    heard = []
    with pytest.raises(ResourceError, match="killed by SIGKILL.*out-of-memory"):
        in_child(dies, log=heard.append, on_item=heard.append)
    assert heard == ["about to die"]
