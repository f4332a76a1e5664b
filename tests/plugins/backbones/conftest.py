"""Tiny KerasHub presets, built from their classes and saved to folders once per session.

Each is a 32x32 model of two transformer layers (or two stages) and a few thousand
parameters, so that a strategy check on it takes about a second on two CPU cores.
"""

from __future__ import annotations

import pytest

TINY = {
    "vit": ("ViTBackbone", dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                num_heads=2, hidden_dim=32, mlp_dim=64)),
    "resnet": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block")),
    "dinov2": ("DINOV2Backbone", dict(patch_size=8, num_layers=2, hidden_dim=16, num_heads=2,
                                      intermediate_dim=32, image_shape=(32, 32, 3),
                                      position_embedding_shape=(32, 32, 3))),
    # pretrained on a 48x48 grid of positions, interpolated to 32x32 (as the presets'
    # 518x518 to 224x224)
    "dinov2_48": ("DINOV2Backbone", dict(patch_size=8, num_layers=1, hidden_dim=16, num_heads=2,
                                         intermediate_dim=32, image_shape=(32, 32, 3),
                                         position_embedding_shape=(48, 48, 3))),
    "deit": ("DeiTBackbone", dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                  num_heads=2, hidden_dim=16, intermediate_dim=32)),
    "clip": ("CLIPVisionEncoder", dict(patch_size=8, hidden_dim=16, num_layers=2, num_heads=2,
                                       intermediate_dim=32, image_shape=(32, 32, 3))),
    "siglip": ("SigLIPVisionEncoder", dict(patch_size=8, hidden_dim=16, num_layers=2,
                                           num_heads=2, intermediate_dim=32,
                                           image_shape=(32, 32, 3))),
    "swin": ("SwinTransformerBackbone", dict(image_shape=(32, 32, 3), embed_dim=8,
                                             depths=[1, 1], num_heads=[1, 2], window_size=4,
                                             patch_size=4)),
    "mit": ("MiTBackbone", dict(layerwise_depths=[1, 1], num_layers=2,
                                layerwise_num_heads=[1, 2], layerwise_sr_ratios=[2, 1],
                                max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
                                layerwise_strides=[4, 2], image_shape=(32, 32, 3),
                                hidden_dims=[8, 16])),
}
"""Family -> (KerasHub backbone class, its tiny configuration)."""


@pytest.fixture(scope="session")
def hub_preset(tmp_path_factory):
    """``hub_preset(family)``: the folder of that family's tiny preset (made on first use).

    The ViT's folder holds an image converter scaling to [-1, 1]; the others none.
    """
    keras_hub = pytest.importorskip("keras_hub")
    from finetunekit.plugins.backbones.keras_hub import from_backbone

    folders: dict[str, str] = {}

    def preset(family: str) -> str:
        if family not in folders:
            class_name, config = TINY[family]
            backbone = getattr(keras_hub.models, class_name)(**config)
            converter = (keras_hub.layers.ViTImageConverter(
                image_size=(32, 32), scale=1 / 127.5, offset=-1.0) if family == "vit" else None)
            folder = tmp_path_factory.mktemp(family)
            folders[family] = from_backbone(backbone, folder, converter)["preset"]
        return folders[family]

    return preset
