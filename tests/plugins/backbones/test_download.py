"""Weights: a file, none, or ImageNet with a bounded wait offline."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from finetunekit import Backbone, Engine, WeightsError, hookimpl
from finetunekit.plugins.backbones import download as weights_mod
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


def test_imagenet_offline_fails_fast_with_how_to_supply_a_file(monkeypatch, tmp_path):
    """The download host never answers: fail within the deadline, not hang forever."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def hang(*args, **kwargs):
        time.sleep(60)

    monkeypatch.setattr(weights_mod.socket, "create_connection", hang)
    engine = Engine(entry_points=False)
    started = time.monotonic()
    with pytest.raises(WeightsError) as info:
        engine.build(tiny_recipe(backbone={"weights": "imagenet", "download_timeout": 1.0}))
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "no answer" in message and "backbone.weights" in message and '"none"' in message


def test_imagenet_unreachable_host_fails_with_the_same_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(weights_mod.socket, "create_connection", refuse)
    with pytest.raises(WeightsError, match="Name or service not known.*backbone.weights"):
        Engine(entry_points=False).build(tiny_recipe(backbone={"weights": "imagenet"}))


def test_socket_timeout_is_restored(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights_mod, "probe", lambda *a, **k: None)
    seen = []
    result = weights_mod.build_with_imagenet("x", lambda: seen.append(socket.getdefaulttimeout()) or 1,
                                             timeout=7)
    assert result == 1 and seen == [7]
    assert socket.getdefaulttimeout() is None


def test_a_plugin_backbone_gets_imagenet_requests_without_the_keras_probe(monkeypatch):
    """The download guard belongs to the built-in backbones, not the engine."""
    monkeypatch.setattr(weights_mod, "probe", lambda *a, **k: pytest.fail("probed"))
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
