"""Built-in observers of a run: :mod:`.checkpoints` (epoch checkpoints for resume),
:mod:`.report` (``curves.png`` and ``report.md`` in the run folder) and :mod:`.progress`
(the CLI's progress bar, registered by the CLI only)."""
