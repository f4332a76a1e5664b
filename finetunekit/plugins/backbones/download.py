"""Getting pretrained weights without hanging: Keras's downloader has no timeout.

``weights = "imagenet"`` asks Keras to download and cache the file. Offline, Keras's
``urlretrieve`` can wait forever on a connection that never answers, so the backbones
plugin first probes the download host with a hard deadline (in a daemon thread, which also
bounds a hanging DNS look-up) and sets a socket timeout for the download itself.

The probed host is Keras's, unless ``FINETUNEKIT_WEIGHTS_HOST`` names another
``host:port``: the HTTPS proxy Keras's download goes through, or a local port in tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from finetunekit.core.errors import WeightsError

DOWNLOAD_HOST = ("storage.googleapis.com", 443)
DEFAULT_TIMEOUT = 20.0
HOST_VARIABLE = "FINETUNEKIT_WEIGHTS_HOST"
"""Environment variable naming the ``host:port`` to probe instead of :data:`DOWNLOAD_HOST`."""


def download_host() -> tuple[str, int]:
    """The host the probe tries: ``$FINETUNEKIT_WEIGHTS_HOST`` if set, else Keras's.

    Behind a proxy, point it at the proxy (``proxy.example:3128``), which the download
    goes through; tests point it at a local port that refuses or never answers.

    Raises:
        WeightsError: the variable is set but is not ``host:port``.
    """
    value = os.environ.get(HOST_VARIABLE, "").strip()
    if not value:
        return DOWNLOAD_HOST
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise WeightsError(
            f"{HOST_VARIABLE} must be host:port, e.g. \"proxy.example:3128\". "
            f"Received: {HOST_VARIABLE}={value!r}. Fix it, or unset it to probe "
            f"{DOWNLOAD_HOST[0]}:{DOWNLOAD_HOST[1]}."
        )
    return host.strip("[]"), int(port)


def keras_cache_dir() -> Path:
    """Folder where Keras caches downloaded weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def looks_cached(backbone_name: str) -> bool:
    """Whether Keras's cache seems to hold no-top weights for this backbone.

    A heuristic to skip the network probe for a cached file; a wrong guess costs at most
    the socket timeout.
    """
    folder = keras_cache_dir()
    if not folder.is_dir():
        return False
    wanted = _normalise(backbone_name)
    return any(
        wanted in _normalise(f.name) and "notop" in _normalise(f.name) for f in folder.iterdir()
    )


def probe(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Try to open a TCP connection to `host` within `timeout` seconds.

    Returns None if it worked, else a short reason.
    """
    silent = f"no answer from {host[0]}:{host[1]} within {timeout:g} s"
    outcome: dict[str, str | None] = {}

    def attempt() -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            outcome["error"] = None
        except TimeoutError:  # the socket's deadline, a hair before the thread's
            outcome["error"] = silent
        except OSError as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=attempt, name="finetunekit-weights-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return silent
    return outcome.get("error")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _offline_message(backbone_name: str, reason: str) -> str:
    return (
        f"Could not get ImageNet weights for backbone '{backbone_name}': {reason}. "
        "Keras downloads them once and caches them in "
        f"'{keras_cache_dir()}'. Offline, download the weights file on a connected "
        "machine (keras.applications.<Model>(weights='imagenet', include_top=False) "
        "saves it in ~/.keras/models/), copy it here and set backbone.weights = "
        "\"/path/to/file.h5\"; or set backbone.weights = \"none\" to start from random "
        "weights."
    )


def build_with_imagenet(
    backbone_name: str,
    build: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    host: tuple[str, int] | None = None,
) -> Any:
    """Run `build` (a Keras constructor asked for ImageNet weights) with a bounded wait.

    Args:
        backbone_name: str. For the cache look-up and the error message.
        build: callable. Builds the model; Keras downloads the weights inside it.
        timeout: float. Seconds for the probe, and the download's socket timeout.
        host: (host, port) or None. Where to probe; None: :func:`download_host`.

    Raises:
        WeightsError: the weights are not cached and the download host does not answer
            within `timeout`, or the download fails.
    """
    if not looks_cached(backbone_name):
        reason = probe(host or download_host(), timeout)
        if reason is not None:
            raise WeightsError(_offline_message(backbone_name, reason))
    try:
        with _socket_timeout(timeout):
            return build()
    except Exception as exc:  # Keras wraps URL errors in a bare Exception
        if isinstance(exc, OSError) or "URL fetch failure" in str(exc):
            raise WeightsError(_offline_message(backbone_name, str(exc))) from exc
        raise
