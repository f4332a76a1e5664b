"""What people look at after training: evaluation, predictions, comparisons and the
plots of them (``finetunekit evaluate``, ``predict``, ``compare``; docs/results.md).

Built on the core (:meth:`finetunekit.Engine.evaluate`, :meth:`~finetunekit.Engine.predict`)
and the built-in data sources, which decode files with the training data's rules.
"""
