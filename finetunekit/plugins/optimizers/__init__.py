"""Built-in optimizers: :mod:`.keras_optimizers` (Keras's own, by name)."""
