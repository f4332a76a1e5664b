"""``finetunekit bench``: throughput against the seed's plain Keras code, and accuracy
per strategy on a real transfer task (docs/benchmarks.md).

- :mod:`finetunekit.bench.throughput`: training images per second, finetunekit and the
  plain baseline timed in the same run.
- :mod:`finetunekit.bench.accuracy`: every strategy on the same transfer task, tuned on
  equal terms, in and out of distribution, over label budgets and paired seeds; with
  :mod:`.sources` (the pretrained models, cached), :mod:`.shift` (the corruptions),
  :mod:`.stats` (paired intervals) and :mod:`.accuracy_report` (tables, figures).
- :mod:`finetunekit.bench.report`: ``bench.json``, ``bench.md`` and the figures.
- :mod:`finetunekit.bench.runner`: what the command does, in order (:func:`run_bench`).
- :mod:`finetunekit.bench.command`: the command and its options, a command plugin.
"""
