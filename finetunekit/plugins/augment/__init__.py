"""Built-in augmentations: :mod:`.basic` (core Keras random layers, MixUp, CutMix, on
every backend) and :mod:`.kerascv` (keras-cv's layers, TensorFlow only, optional extra)."""
