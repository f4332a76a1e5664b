"""Every keras.applications backbone as plain data: one dict per constructor.

Each row of :data:`FAMILIES` has exactly these keys:

``name``
    Lower-case recipe name (``"resnet50"``).
``constructor``
    Attribute of ``keras.applications`` (``"ResNet50"``).
``family``
    Family the constructor belongs to (``"resnet"``); rows of a family share
    ``preprocess``, ``min_size`` and ``block_pattern``.
``preprocess``
    What the ImageNet weights expect from uint8 RGB in [0, 255]:
    ``"caffe"`` (RGB to BGR, subtract the ImageNet mean, no scaling),
    ``"tf"`` (scale to [-1, 1]), ``"torch"`` (divide by 255, then ImageNet mean and
    std) or ``"none"`` (the model normalises inside itself and takes [0, 255]).
    Each mode was checked numerically against the family module's
    ``keras.applications.<module>.preprocess_input`` (Keras 3.15); for the ``"none"``
    families that function is a pass-through and the model starts with its own
    ``Rescaling``/``Normalization`` layers.
``min_size``
    Smallest square input height/width the constructor accepts with
    ``include_top=False`` (with ``min_size - 1`` it raises ``ValueError``). Checked by
    building every row with ``weights=None`` at ``min_size`` and ``min_size - 1``: every
    accepted size gives a feature map of at least 1x1.
``default_size``
    Input size the ImageNet weights were trained at.
``block_pattern``
    Regular expression for the base's top-level layer names (``base.layers``,
    ``include_top=False``). A layer's key is ``re.match(block_pattern, name).group(1)``,
    or None when it does not match. Walking the layers in order, a layer whose key is
    None joins the current block (layers before the first match form a "stem" block),
    and a new block starts whenever the key changes. Blocks are the family's natural
    coarse units (stages, or modules/cells where the family has no stages), so "unfreeze
    the last N blocks" means something.
``notes``
    Anything a user should know (may be empty).

Layers that Keras names automatically (``conv2d_3``, ``activation_17``, ``add_2``...)
are numbered by a process-wide counter, so their names differ from one build to the
next. No pattern relies on them: they never match, so they always join the block they
sit in.
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

# --- notes shared by a family ------------------------------------------------------------

_NOTES_VGG = ""
_NOTES_RESNET = ""
_NOTES_RESNET_V2 = ""
_NOTES_MOBILENET = (
    "ImageNet weights exist for 128, 160, 192 and 224 inputs (and alpha 0.25-1.0)."
)
_NOTES_MOBILENET_V2 = (
    "ImageNet weights exist for 96, 128, 160, 192 and 224 inputs."
)
_NOTES_MOBILENET_V3 = (
    "include_preprocessing=True (default) puts Rescaling(1/127.5, offset=-1) in the model, "
    "so it takes [0, 255]; with include_preprocessing=False it expects [-1, 1] ('tf'). "
    "The size check (>= 32) is hard-coded, not obtain_input_shape; ImageNet weights are for "
    "224 only (other sizes load them with a warning)."
)
_NOTES_EFFICIENTNET = (
    "The model always starts with Rescaling(1/255) + Normalization (no "
    "include_preprocessing flag); the ImageNet mean/std live in the Normalization weights, "
    "so with weights=None it only rescales to [0, 1]."
)
_NOTES_EFFICIENTNET_V2_B = (
    "include_preprocessing=True (default) puts Rescaling(1/255) + ImageNet mean/std "
    "Normalization in the model; with include_preprocessing=False it expects 'torch' input."
)
_NOTES_EFFICIENTNET_V2_SML = (
    "include_preprocessing=True (default) puts Rescaling(1/128, offset=-1) in the model; "
    "with include_preprocessing=False it expects [-1, 1] input."
)
_NOTES_DENSENET = "Transition layers pool2_*/pool3_*/pool4_* belong to the dense block before them."
_NOTES_XCEPTION = (
    "min_size 71 is Keras's own check (at 71 the feature map is still 3x3). "
    "block1 is part of the stem."
)
_NOTES_INCEPTION = (
    "Blocks are keyed on module outputs, so a block's label names the module before it "
    "(see the pattern comment); each block holds one module's weights."
)
_NOTES_CONVNEXT = (
    "include_preprocessing=True (default) puts a Normalization with ImageNet mean/std "
    "(on the 0-255 scale) in the model. Each downsampling layer joins the stage before it."
)
_NOTES_NASNET = (
    "Always build with a static input_shape: with None spatial dims the cell-adjust "
    "(factorised reduction) branches are decided at build time and skipped, so the model "
    "builds with fewer layers and fails on any real input; ImageNet weights refuse None "
    "dims. Any static size >= 32 builds (odd sizes are cropped). NASNetMobile with "
    "include_top=False and no input_shape silently uses 224x224. channels_last only; "
    "NASNetMobile is unavailable on the torch backend. Blocks are cells."
)

FAMILIES = (
    # --- VGG: caffe ---------------------------------------------------------------------
    {"name": "vgg16", "constructor": "VGG16", "family": "vgg", "preprocess": "caffe",
     "min_size": 32, "default_size": 224, "block_pattern": _VGG, "notes": _NOTES_VGG},
    {"name": "vgg19", "constructor": "VGG19", "family": "vgg", "preprocess": "caffe",
     "min_size": 32, "default_size": 224, "block_pattern": _VGG, "notes": _NOTES_VGG},
    # --- ResNet v1: caffe ---------------------------------------------------------------
    {"name": "resnet50", "constructor": "ResNet50", "family": "resnet", "preprocess": "caffe",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET},
    {"name": "resnet101", "constructor": "ResNet101", "family": "resnet", "preprocess": "caffe",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET},
    {"name": "resnet152", "constructor": "ResNet152", "family": "resnet", "preprocess": "caffe",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET},
    # --- ResNet v2: tf ------------------------------------------------------------------
    {"name": "resnet50v2", "constructor": "ResNet50V2", "family": "resnet_v2", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET_V2},
    {"name": "resnet101v2", "constructor": "ResNet101V2", "family": "resnet_v2", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET_V2},
    {"name": "resnet152v2", "constructor": "ResNet152V2", "family": "resnet_v2", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _RESNET, "notes": _NOTES_RESNET_V2},
    # --- MobileNet v1 / v2: tf; v3: none ------------------------------------------------
    {"name": "mobilenet", "constructor": "MobileNet", "family": "mobilenet", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _MOBILENET, "notes": _NOTES_MOBILENET},
    {"name": "mobilenetv2", "constructor": "MobileNetV2", "family": "mobilenet_v2", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _MOBILENET_V2,
     "notes": _NOTES_MOBILENET_V2},
    {"name": "mobilenetv3small", "constructor": "MobileNetV3Small", "family": "mobilenet_v3",
     "preprocess": "none", "min_size": 32, "default_size": 224, "block_pattern": _MOBILENET_V3,
     "notes": _NOTES_MOBILENET_V3},
    {"name": "mobilenetv3large", "constructor": "MobileNetV3Large", "family": "mobilenet_v3",
     "preprocess": "none", "min_size": 32, "default_size": 224, "block_pattern": _MOBILENET_V3,
     "notes": _NOTES_MOBILENET_V3},
    # --- EfficientNet (v1): none ---------------------------------------------------------
    {"name": "efficientnetb0", "constructor": "EfficientNetB0", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 224, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb1", "constructor": "EfficientNetB1", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 240, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb2", "constructor": "EfficientNetB2", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 260, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb3", "constructor": "EfficientNetB3", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 300, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb4", "constructor": "EfficientNetB4", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 380, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb5", "constructor": "EfficientNetB5", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 456, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb6", "constructor": "EfficientNetB6", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 528, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    {"name": "efficientnetb7", "constructor": "EfficientNetB7", "family": "efficientnet",
     "preprocess": "none", "min_size": 32, "default_size": 600, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET},
    # --- EfficientNetV2: none ------------------------------------------------------------
    {"name": "efficientnetv2b0", "constructor": "EfficientNetV2B0", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 224, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_B},
    {"name": "efficientnetv2b1", "constructor": "EfficientNetV2B1", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 240, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_B},
    {"name": "efficientnetv2b2", "constructor": "EfficientNetV2B2", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 260, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_B},
    {"name": "efficientnetv2b3", "constructor": "EfficientNetV2B3", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 300, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_B},
    {"name": "efficientnetv2s", "constructor": "EfficientNetV2S", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 384, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_SML},
    {"name": "efficientnetv2m", "constructor": "EfficientNetV2M", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 480, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_SML},
    {"name": "efficientnetv2l", "constructor": "EfficientNetV2L", "family": "efficientnet_v2",
     "preprocess": "none", "min_size": 32, "default_size": 480, "block_pattern": _EFFICIENTNET,
     "notes": _NOTES_EFFICIENTNET_V2_SML},
    # --- DenseNet: torch -----------------------------------------------------------------
    {"name": "densenet121", "constructor": "DenseNet121", "family": "densenet", "preprocess": "torch",
     "min_size": 32, "default_size": 224, "block_pattern": _DENSENET, "notes": _NOTES_DENSENET},
    {"name": "densenet169", "constructor": "DenseNet169", "family": "densenet", "preprocess": "torch",
     "min_size": 32, "default_size": 224, "block_pattern": _DENSENET, "notes": _NOTES_DENSENET},
    {"name": "densenet201", "constructor": "DenseNet201", "family": "densenet", "preprocess": "torch",
     "min_size": 32, "default_size": 224, "block_pattern": _DENSENET, "notes": _NOTES_DENSENET},
    # --- Xception / Inception: tf --------------------------------------------------------
    {"name": "xception", "constructor": "Xception", "family": "xception", "preprocess": "tf",
     "min_size": 71, "default_size": 299, "block_pattern": _XCEPTION, "notes": _NOTES_XCEPTION},
    {"name": "inceptionv3", "constructor": "InceptionV3", "family": "inception_v3", "preprocess": "tf",
     "min_size": 75, "default_size": 299, "block_pattern": _INCEPTION_V3,
     "notes": _NOTES_INCEPTION},
    {"name": "inceptionresnetv2", "constructor": "InceptionResNetV2",
     "family": "inception_resnet_v2", "preprocess": "tf", "min_size": 75, "default_size": 299,
     "block_pattern": _INCEPTION_RESNET_V2, "notes": _NOTES_INCEPTION},
    # --- ConvNeXt: none ------------------------------------------------------------------
    {"name": "convnexttiny", "constructor": "ConvNeXtTiny", "family": "convnext", "preprocess": "none",
     "min_size": 32, "default_size": 224, "block_pattern": _CONVNEXT, "notes": _NOTES_CONVNEXT},
    {"name": "convnextsmall", "constructor": "ConvNeXtSmall", "family": "convnext", "preprocess": "none",
     "min_size": 32, "default_size": 224, "block_pattern": _CONVNEXT, "notes": _NOTES_CONVNEXT},
    {"name": "convnextbase", "constructor": "ConvNeXtBase", "family": "convnext", "preprocess": "none",
     "min_size": 32, "default_size": 224, "block_pattern": _CONVNEXT, "notes": _NOTES_CONVNEXT},
    {"name": "convnextlarge", "constructor": "ConvNeXtLarge", "family": "convnext", "preprocess": "none",
     "min_size": 32, "default_size": 224, "block_pattern": _CONVNEXT, "notes": _NOTES_CONVNEXT},
    {"name": "convnextxlarge", "constructor": "ConvNeXtXLarge", "family": "convnext",
     "preprocess": "none", "min_size": 32, "default_size": 224, "block_pattern": _CONVNEXT,
     "notes": _NOTES_CONVNEXT},
    # --- NASNet: tf ----------------------------------------------------------------------
    # min_size: obtain_input_shape(min_size=32); with weights=None every static size from
    # 32 up builds (32-34 -> 1x1, 35-66 -> 2x2, ...): Cropping2D/ZeroPadding2D in the
    # cells absorb odd sizes, so no "specific sizes" are demanded. The catch is dynamic
    # (None) spatial dims, see the notes.
    {"name": "nasnetmobile", "constructor": "NASNetMobile", "family": "nasnet", "preprocess": "tf",
     "min_size": 32, "default_size": 224, "block_pattern": _NASNET, "notes": _NOTES_NASNET},
    {"name": "nasnetlarge", "constructor": "NASNetLarge", "family": "nasnet", "preprocess": "tf",
     "min_size": 32, "default_size": 331, "block_pattern": _NASNET, "notes": _NOTES_NASNET},
)
