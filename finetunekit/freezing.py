"""``finetunekit.freezing``: the freezing toolbox strategies are composed of.

The functions live beside the built-in strategies
(:mod:`finetunekit.plugins.strategies.freezing`); this module is their public name, so
``import finetunekit.freezing`` and ``from finetunekit.freezing import last_blocks`` work
in an outside plugin.
"""

from finetunekit.plugins.strategies.freezing import *  # noqa: F401,F403
from finetunekit.plugins.strategies.freezing import __all__  # noqa: F401
