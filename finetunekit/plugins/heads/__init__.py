"""Built-in heads: :mod:`.dense` (pooling, hidden Dense layers, dropout, the output)."""
