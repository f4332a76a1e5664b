"""Built-in strategies, one plugin module each.

==========================  ===============  ==========================================
strategy                    module           what trains
==========================  ===============  ==========================================
``feature_extraction``      ``basic``        the head only
``partial``                 ``basic``        the base from a layer or the last N blocks
``full``                    ``basic``        everything
``two_stage``               ``two_stage``    head on a frozen base, then base + head
                                             at a lower rate (LP-FT)
``gradual``                 ``gradual``      one more block every K epochs, last first
                                             (ULMFiT; Lightning BackboneFinetuning)
``discriminative``          ``discriminative``  everything, log-spaced rates per block
                                             (fastai ``slice(lo, hi)``)
``bitfit``                  ``bitfit``       biases and the head
``norm_only``               ``norm_only``    normalisation gamma/beta and the head
``lora``                    ``lora``         low-rank adapters on Dense/Conv kernels
``l2sp``                    ``l2sp``         everything, pulled back to the start
==========================  ===============  ==========================================

This package is itself the plugin for the three basic strategies (the name
``finetunekit.plugins.strategies`` they have been registered under from the start); every
other module is its own plugin, listed in
:data:`finetunekit.core.plugins.BUILTIN_PLUGINS`. See docs/strategies.md.
"""

from finetunekit.plugins.strategies.basic import finetunekit_register_strategies

__all__ = ["finetunekit_register_strategies"]
