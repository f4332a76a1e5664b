"""Weights: a file, none, or ImageNet with a bounded wait offline.

The offline cases point the download probe (``FINETUNEKIT_WEIGHTS_HOST``) at a port on
127.0.0.1 that refuses, or that never answers: no network, nothing patched.
"""

from __future__ import annotations

import contextlib
import socket
import time

import numpy as np
import pytest

from finetunekit import Backbone, Engine, WeightsError, hookimpl
from finetunekit.plugins.backbones.download import HOST_VARIABLE, build_with_imagenet
from finetunekit.testing import tiny_recipe


def test_weights_file_round_trip(engine, tmp_path):
    source = engine.build(tiny_recipe(train={"seed": 1}))
    path = tmp_path / "source.weights.h5"
    source.base.save_weights(str(path))
    loaded = engine.build(tiny_recipe(backbone={"weights": str(path)}, train={"seed": 2}))
    for a, b in zip(source.base.weights, loaded.base.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_of_another_architecture_is_a_clear_error(engine, tmp_path):
    other = engine.build(tiny_recipe("resnet50"))
    path = tmp_path / "resnet.weights.h5"
    other.base.save_weights(str(path))
    with pytest.raises(WeightsError, match=r"does not fit backbone 'vgg16'"):
        engine.build(tiny_recipe(backbone={"weights": str(path)}))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache, so that ImageNet weights would have to be downloaded."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))


@contextlib.contextmanager
def listening(backlog: int = 8):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(backlog)
        yield server.getsockname()


@pytest.fixture
def refusing_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with listening() as (_, port):
        pass
    return port


@pytest.fixture
def silent_port():
    """A loopback port that never answers: a listener that never accepts, whose queue
    (backlog 0) one connection fills; the kernel then drops further handshakes."""
    with listening(backlog=0) as address, socket.create_connection(address):
        yield address[1]


def test_imagenet_offline_fails_fast_with_how_to_supply_a_file(offline, monkeypatch, silent_port):
    """The download host never answers: fail within the deadline, not hang forever."""
    monkeypatch.setenv(HOST_VARIABLE, f"127.0.0.1:{silent_port}")
    engine = Engine(entry_points=False)
    started = time.monotonic()
    with pytest.raises(WeightsError) as info:
        engine.build(tiny_recipe(backbone={"weights": "imagenet", "download_timeout": 1.0}))
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "no answer" in message and "backbone.weights" in message and '"none"' in message


def test_imagenet_unreachable_host_fails_with_the_same_advice(offline, monkeypatch, refusing_port):
    monkeypatch.setenv(HOST_VARIABLE, f"127.0.0.1:{refusing_port}")
    with pytest.raises(WeightsError, match="Connection refused.*backbone.weights"):
        Engine(entry_points=False).build(tiny_recipe(backbone={"weights": "imagenet"}))


def test_a_weights_host_that_is_not_host_and_port_is_named(offline, monkeypatch):
    monkeypatch.setenv(HOST_VARIABLE, "proxy.example")
    with pytest.raises(WeightsError, match=f"{HOST_VARIABLE} must be host:port.*'proxy.example'"):
        Engine(entry_points=False).build(tiny_recipe(backbone={"weights": "imagenet"}))


def test_socket_timeout_is_restored(offline):
    seen = []
    with listening() as host:  # the probe connects
        result = build_with_imagenet("x", lambda: seen.append(socket.getdefaulttimeout()) or 1,
                                     timeout=7, host=host)
    assert result == 1 and seen == [7]
    assert socket.getdefaulttimeout() is None


def test_a_plugin_backbone_gets_imagenet_requests_without_the_keras_probe(offline, monkeypatch,
                                                                         refusing_port):
    """The download guard belongs to the built-in backbones, not the engine: a probe of
    this refusing host would fail the build."""
    monkeypatch.setenv(HOST_VARIABLE, f"127.0.0.1:{refusing_port}")
    seen = []

    class Own:
        @hookimpl
        def finetunekit_register_backbones(self, register):
            def build(input_shape, weights):
                seen.append(weights)
                import keras
                inputs = keras.Input(input_shape)
                return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
            register(Backbone(name="own", build=build))

    engine = Engine(plugins=[Own()], entry_points=False)
    engine.build(tiny_recipe({"name": "own", "weights": "imagenet"}))
    assert seen == ["imagenet"]
