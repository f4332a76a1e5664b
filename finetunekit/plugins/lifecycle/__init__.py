"""Built-in observers of a run: :mod:`.checkpoints` (epoch checkpoints for resume) and
:mod:`.progress` (the CLI's progress bar, registered by the CLI only)."""
