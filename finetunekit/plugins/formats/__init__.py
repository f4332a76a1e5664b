"""Built-in persistence formats, one plugin module each.

=============  ===========  ====================================================
format         suffix       for
=============  ===========  ====================================================
``keras``      .keras       sharing and retraining: architecture, weights,
                            optimizer state, trainable flags
``h5``         .h5          the legacy Keras H5 file the seed uses (same contents
                            as ``keras`` in Keras 3.15)
``savedmodel`` .savedmodel  serving with TensorFlow (export only, TensorFlow only)
``checkpoint`` .ckpt        resuming exactly: every variable, optimizer, epoch, stage
``weights``    .weights.h5  weights only; the recipe rebuilds the architecture
=============  ===========  ====================================================
"""
