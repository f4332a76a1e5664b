"""Every keras.applications backbone as plain data: families once, models by difference.

:data:`_FAMILIES` holds what the models of a family share; :data:`_MODELS` holds one
row per constructor with only what is its own (and may override a family field).
:data:`BACKBONES` is the two merged: one dict per model with the keys ``name``,
``constructor``, ``family``, ``preprocess``, ``min_size``, ``default_size`` and
``block_pattern``.

``preprocess``
    What the ImageNet weights expect from uint8 RGB in [0, 255]: ``"caffe"`` (RGB to
    BGR, minus the ImageNet mean), ``"tf"`` (scale to [-1, 1]), ``"torch"`` (divide by
    255, then ImageNet mean and std) or ``"none"`` (the model normalises inside itself).
    Each matches the family module's ``preprocess_input`` (checked by the tests).
``min_size``
    Smallest square input the constructor accepts with ``include_top=False``; at
    ``min_size - 1`` it raises ``ValueError`` or leaves no feature map.
``default_size``
    Input size the ImageNet weights were trained at.
``block_pattern``
    Regular expression over the base's top-level layer names. A layer's key is
    ``re.match(block_pattern, name).group(1)``; an unmatched layer joins the current
    block (those before the first match form a stem block), and a new block starts
    whenever the key changes (see :func:`finetunekit.freezing.group_blocks`).
    Blocks are the family's natural coarse units (stages, else modules or cells), so
    "unfreeze the last N blocks" means something.

Layers Keras names automatically (``conv2d_3``, ``add_2``...) are numbered by a
process-wide counter, so no pattern relies on them: they never match and always join
the block they sit in.
"""

# --- block patterns, one per family (see the module docstring for the rule) -------------

# block1_conv1 ... block5_pool -> block1..block5; the stem block is only the InputLayer.
_VGG = r"^(block\d+)_"

# conv2_block1_1_conv ... -> conv2..conv5. conv1_* / pool1_* are the stem. ResNet v2's
# final post_bn / post_relu and its auto-named shortcut max_pooling2d layers do not
# match and join the stage they sit in (conv5 for post_*).
_RESNET = r"^(conv[2-5])_block\d+_"

# conv_dw_N / conv_pw_N (and the conv_pad_N before a strided conv_dw_N) -> key "N",
# 13 depthwise-separable units; conv1* is the stem.
_MOBILENET = r"^conv_(?:dw|pw|pad)_(\d+)"

# The first inverted residual (expanded_conv_*) then block_1 ... block_16; Conv1 /
# bn_Conv1 / Conv1_relu are the stem; the final Conv_1 / Conv_1_bn / out_relu join
# block_16.
_MOBILENET_V2 = r"^(expanded_conv|block_\d+)_"

# expanded_conv_* (first unit), expanded_conv_1_* ... expanded_conv_10 (Small) or
# expanded_conv_14 (Large). Activations are auto-named (re_lu_N, activation_N) and
# join their unit; the final conv_1 / conv_1_bn / activation join the last unit.
_MOBILENET_V3 = r"^(expanded_conv(?:_\d+)?)_"

# block2a_expand_conv, block2b_add ... -> stage key "block2". rescaling/normalization/
# stem_* are the stem; top_conv / top_bn / top_activation join the last stage.
_EFFICIENTNET = r"^(block\d+)[a-z]_"

# conv2_block1_0_bn ... -> conv2..conv5 dense blocks. The transition layers
# pool2_* (bn, relu, conv, pool) do not match and join the dense block they follow
# (conv2 holds pool2_*, conv3 holds pool3_*, conv4 holds pool4_*), matching the
# paper's "dense block + transition" unit; the final bn / relu join conv5.
_DENSENET = r"^(conv[2-5])_block\d+_"

# block2_* ... block14_*. block1 (two plain 3x3 convs) is deliberately NOT matched so it
# forms the stem together with the InputLayer. The residual shortcut of each block is
# auto-named (conv2d_N, batch_normalization_N, add_N) and sits inside its block.
_XCEPTION = r"^(block(?:[2-9]|1[0-4]))_"

# Only the OUTPUT of each Inception module is named (the concat mixed0 ... mixed10);
# every branch layer inside a module is auto-named and so cannot be matched. Keying on
# the outputs mixed0 ... mixed9 puts each boundary just before a module's (weightless)
# output concat, so:
#   stem block   = stem convs + the branches of module 0,
#   block mixedK = concat mixedK + every layer of module K+1 but its concat (K = 0..8),
#   block mixed9 = concat mixed9 + all of module 10 including mixed10 (which is not
#                  matched, two digits, so the last block holds the last module whole).
# The labels are therefore shifted by one module, but each block holds exactly one
# module's weights and "the last N blocks" are the last N modules. The inner concats
# mixed9_0 / mixed9_1 are excluded by the "$".
_INCEPTION_V3 = r"^(mixed\d)$"

# Same situation as InceptionV3: inside every module only a few layers are named. A
# module ends with its output: mixed_5b / mixed_6a / mixed_7a (concats) or
# block35_K_ac / block17_K_ac / block8_K_ac (the activation after the scaled residual
# add). Keying on those outputs gives one block per module, labelled by the output of
# the module before it: the stem block also holds mixed_5b's branches; block
# "mixed_5b" is block35_1, "block35_1_ac" is block35_2, ..., "block35_10_ac" is the
# reduction mixed_6a, and so on. block8_10 has no activation and the final conv_7b*
# do not match, so the last block ("block8_9_ac") is block8_10 plus conv_7b.
# 1 stem + 1 + 10 + 1 + 20 + 1 + 9 = 43 blocks.
_INCEPTION_RESNET_V2 = r"^(mixed_\d[a-z]|block(?:35|17|8)_\d+_ac)$"

# Layer names are "<model name>_stage_S_block_B_<part>" (the prefix is the model's
# `name`, e.g. convnext_tiny, so the pattern does not depend on it) -> stage_0..stage_3.
# The stem and the downsampling layers are nested Sequential layers named
# "<name>_stem" and "<name>_downsampling_block_I". A regex cannot move
# downsampling_block_I into the stage it feeds (stage_{I+1}), so it joins the stage
# before it: unfreezing the last block trains stage_3 and the final layer_normalization
# but not the downsampling into stage_3.
_CONVNEXT = r"^.*_(stage_\d+)_block_\d+_"

# NASNet names every cell layer after its cell: the key is the cell id suffix:
# "stem_1", "stem_2" (the two reduction cells of the stem), "0", "1", ... (normal
# cells), "reduce_4" ... (reduction cells). Layers: normal_*_<id>, reduction_*_<id>,
# separable_conv_{1,2}_[bn_|pad_]{normal,reduction}_*_<id>. The adjust_* layers
# (which project the previous cell's output) are NOT matched: the topological order
# interleaves some of them with the previous cell, and keying on them would split cells
# into fragments; they join whichever cell they sit in. Auto-named activation_N,
# zero_padding2d_N, cropping2d_N, concatenate_N, add_N never match. stem_conv1 /
# stem_bn1 are the stem; the final auto-named activation joins the last cell.
_NASNET = (
    r"^(?:separable_conv_\d_(?:bn_|pad_)?)?(?:normal|reduction)_.*?_"
    r"((?:stem_|reduce_)?\d+)$"
)

# --- families: what their models share --------------------------------------------------

_FAMILIES = {
    # Plain stacks of 3x3 convs.
    "vgg": {"preprocess": "caffe", "min_size": 32, "block_pattern": _VGG},
    # Bottleneck residual stages.
    "resnet": {"preprocess": "caffe", "min_size": 32, "block_pattern": _RESNET},
    # Pre-activation ResNet; its layer names follow v1's, so v1's pattern fits.
    "resnet_v2": {"preprocess": "tf", "min_size": 32, "block_pattern": _RESNET},
    # Depthwise-separable convs; ImageNet weights exist for 128, 160, 192 and 224 inputs.
    "mobilenet": {"preprocess": "tf", "min_size": 32, "block_pattern": _MOBILENET},
    # Inverted residuals; ImageNet weights exist for 96, 128, 160, 192 and 224 inputs.
    "mobilenet_v2": {"preprocess": "tf", "min_size": 32, "block_pattern": _MOBILENET_V2},
    # Inverted residuals with squeeze-excite; the model rescales to [-1, 1] itself, and its
    # ImageNet weights are for 224 only (other sizes load them with a warning).
    "mobilenet_v3": {"preprocess": "none", "min_size": 32, "block_pattern": _MOBILENET_V3},
    # Compound-scaled MBConv stages; the ImageNet mean/std live in the model's own
    # Normalization weights, so with weights=None it only rescales to [0, 1].
    "efficientnet": {"preprocess": "none", "min_size": 32, "block_pattern": _EFFICIENTNET},
    # Fused-MBConv stages; the model scales its input itself (B0-B3 to ImageNet mean/std,
    # S/M/L to [-1, 1]).
    "efficientnet_v2": {"preprocess": "none", "min_size": 32, "block_pattern": _EFFICIENTNET},
    # Dense blocks joined by transition layers.
    "densenet": {"preprocess": "torch", "min_size": 32, "block_pattern": _DENSENET},
    # Depthwise-separable residual blocks; 71 is Keras's own check (the map is still 3x3).
    "xception": {"preprocess": "tf", "min_size": 71, "block_pattern": _XCEPTION},
    # Inception modules.
    "inception_v3": {"preprocess": "tf", "min_size": 75, "block_pattern": _INCEPTION_V3},
    # Inception modules with residual connections.
    "inception_resnet_v2": {"preprocess": "tf", "min_size": 75,
                            "block_pattern": _INCEPTION_RESNET_V2},
    # Modernised ResNet stages; the model normalises with the ImageNet mean/std itself.
    "convnext": {"preprocess": "none", "min_size": 32, "block_pattern": _CONVNEXT},
    # Searched cells. Any static size from 32 builds (odd sizes are cropped), but a None
    # spatial size silently skips the cells' adjust branches and fails on real input.
    "nasnet": {"preprocess": "tf", "min_size": 32, "block_pattern": _NASNET},
}

# --- models: one row per constructor, only what is its own ---------------------------------


def _model(name: str, constructor: str, family: str, default_size: int, **own) -> dict:
    """One model's row; `own` holds any field where the model differs from its family."""
    return {"name": name, "constructor": constructor, "family": family,
            "default_size": default_size, **own}


_MODELS = (
    _model("vgg16", "VGG16", "vgg", 224),
    _model("vgg19", "VGG19", "vgg", 224),
    _model("resnet50", "ResNet50", "resnet", 224),
    _model("resnet101", "ResNet101", "resnet", 224),
    _model("resnet152", "ResNet152", "resnet", 224),
    _model("resnet50v2", "ResNet50V2", "resnet_v2", 224),
    _model("resnet101v2", "ResNet101V2", "resnet_v2", 224),
    _model("resnet152v2", "ResNet152V2", "resnet_v2", 224),
    _model("mobilenet", "MobileNet", "mobilenet", 224),
    _model("mobilenetv2", "MobileNetV2", "mobilenet_v2", 224),
    _model("mobilenetv3small", "MobileNetV3Small", "mobilenet_v3", 224),
    _model("mobilenetv3large", "MobileNetV3Large", "mobilenet_v3", 224),
    _model("efficientnetb0", "EfficientNetB0", "efficientnet", 224),
    _model("efficientnetb1", "EfficientNetB1", "efficientnet", 240),
    _model("efficientnetb2", "EfficientNetB2", "efficientnet", 260),
    _model("efficientnetb3", "EfficientNetB3", "efficientnet", 300),
    _model("efficientnetb4", "EfficientNetB4", "efficientnet", 380),
    _model("efficientnetb5", "EfficientNetB5", "efficientnet", 456),
    _model("efficientnetb6", "EfficientNetB6", "efficientnet", 528),
    _model("efficientnetb7", "EfficientNetB7", "efficientnet", 600),
    _model("efficientnetv2b0", "EfficientNetV2B0", "efficientnet_v2", 224),
    _model("efficientnetv2b1", "EfficientNetV2B1", "efficientnet_v2", 240),
    _model("efficientnetv2b2", "EfficientNetV2B2", "efficientnet_v2", 260),
    _model("efficientnetv2b3", "EfficientNetV2B3", "efficientnet_v2", 300),
    _model("efficientnetv2s", "EfficientNetV2S", "efficientnet_v2", 384),
    _model("efficientnetv2m", "EfficientNetV2M", "efficientnet_v2", 480),
    _model("efficientnetv2l", "EfficientNetV2L", "efficientnet_v2", 480),
    _model("densenet121", "DenseNet121", "densenet", 224),
    _model("densenet169", "DenseNet169", "densenet", 224),
    _model("densenet201", "DenseNet201", "densenet", 224),
    _model("xception", "Xception", "xception", 299),
    _model("inceptionv3", "InceptionV3", "inception_v3", 299),
    _model("inceptionresnetv2", "InceptionResNetV2", "inception_resnet_v2", 299),
    _model("convnexttiny", "ConvNeXtTiny", "convnext", 224),
    _model("convnextsmall", "ConvNeXtSmall", "convnext", 224),
    _model("convnextbase", "ConvNeXtBase", "convnext", 224),
    _model("convnextlarge", "ConvNeXtLarge", "convnext", 224),
    _model("convnextxlarge", "ConvNeXtXLarge", "convnext", 224),
    _model("nasnetmobile", "NASNetMobile", "nasnet", 224),
    _model("nasnetlarge", "NASNetLarge", "nasnet", 331),
)

# Each model's full row: its family's fields, overridden by its own.
BACKBONES = tuple({**_FAMILIES[model["family"]], **model} for model in _MODELS)
