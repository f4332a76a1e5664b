"""The command line keeps TensorFlow's C++ start-up lines off the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_list_prints_no_backend_start_up_noise():
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "FINETUNEKIT_DEBUG")}
    result = subprocess.run([sys.executable, "-m", "finetunekit", "list", "--json"],
                            check=False, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
