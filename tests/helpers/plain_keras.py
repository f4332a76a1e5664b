"""Load a saved model in a Python where finetunekit cannot be imported, and predict.

Run as ``python -I tests/helpers/plain_keras.py MODEL IMAGES.npy OUT.npy``: ``-I``
ignores PYTHONPATH and the user's site, and a finder on ``sys.meta_path`` refuses every
``finetunekit`` module (an editable install would otherwise still find it), so only
what Keras itself registers can be deserialised.
"""

import sys


class _NoFinetunekit:
    def find_spec(self, name, path=None, target=None):
        if name == "finetunekit" or name.startswith("finetunekit."):
            raise ImportError(f"{name} is blocked: this process checks plain Keras")
        return None


sys.meta_path.insert(0, _NoFinetunekit())

import numpy as np  # noqa: E402
import keras  # noqa: E402

model = keras.saving.load_model(sys.argv[1])
assert not any(name.startswith("finetunekit") for name in sys.modules)
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
print("loaded", model.name)
