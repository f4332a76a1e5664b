"""The decorator that runs an Engine method inside its recipe's scope: the
``train.distribution`` strategy and the ``train.precision`` dtype policy
(:meth:`finetunekit.Engine.scope`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def scoped(method: Callable) -> Callable:
    """Run an Engine method inside ``self.scope`` of its recipe (or its run's)."""
    @functools.wraps(method)
    def wrapper(self: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        with self.scope(getattr(target, "recipe", target)):
            return method(self, target, *args, **kwargs)
    return wrapper
