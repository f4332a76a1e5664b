"""Built-in strategies, one plugin module each (see docs/strategies.md).

* ``basic``: ``feature_extraction`` (the head only), ``partial`` (the base from a layer,
  or its last N blocks) and ``full`` (everything): the seed's three.
* ``two_stage``: the head on a frozen base, then base and head at a lower rate (LP-FT).
* ``gradual``: one more block every K epochs, last first, at a growing rate (ULMFiT;
  Lightning's ``BackboneFinetuning``).
* ``discriminative``: everything, each block at its own log-spaced rate (fastai
  ``slice(lo, hi)``).
* ``bitfit``: the base's biases, and the head.
* ``norm_only``: normalisation gamma and beta, and the head.
* ``lora``: low-rank adapters on Dense and convolution kernels, merged on export.
* ``l2sp``: everything, with a pull toward the starting weights.

Each module is its own plugin, listed in :data:`finetunekit.plugins.BUILTINS`;
:mod:`.freezing` and :mod:`.learning_rates` are the helpers they are composed of.
"""
