"""One epoch of batches from a folder of JPEGs: finetunekit's ``folder`` source against
plain Keras code feeding the same folder.

Run: ``python -m pytest benchmarks/test_input_pipeline.py --benchmark-only``.

* ``keras``: ``keras.utils.image_dataset_from_directory`` at the same size, cast to
  uint8, prefetched, iterated once (the code a Keras user writes for this folder).
* ``finetunekit``: ``Engine.load_data`` on a ``folder`` recipe (the scan: every file
  decoded once into uint8 arrays), then the epoch the engine feeds ``fit``: a seeded
  permutation and batches, each turned into a tensor.

``first-epoch`` times everything from the files on disk to the last batch (the issue's
goal: no slower). ``next-epoch`` times a later epoch: Keras decodes the files again (no
``.cache()``), finetunekit reads them from memory. Each finetunekit test records
``ratio_to_keras`` (its median wall time over the Keras test's, same folder, same run)
and ``cpu_ratio_to_keras`` (the same for process CPU time, steadier on a shared machine)
in ``extra_info``; run the module whole so the Keras test runs first. Results and how
to read them: docs/data.md.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from finetunekit import Engine, Recipe

IMAGES = 300
SIZE = (150, 150)
BATCH = 32
ROUNDS = 5
FOLDERS = {"photos-500x375": (500, 375), "small-150x150": (150, 150)}
medians: dict[tuple[str, str], tuple[float, float]] = {}  # (wall, CPU) seconds


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth blobs plus grain: JPEG sizes close to real photos (noise alone is far bigger)."""
    coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    return np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=list(FOLDERS))
def folder(request, tmp_path_factory):
    width, height = FOLDERS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        label = ("cats", "dogs")[i % 2]
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(_photo(rng, width, height)).save(root / label / f"{i:04d}.jpg", quality=90)
    return request.param, root


def _keras_dataset(root):
    import keras
    import tensorflow as tf

    dataset = keras.utils.image_dataset_from_directory(
        root, image_size=SIZE, batch_size=BATCH, shuffle=True, seed=0, verbose=False)
    return dataset.map(lambda x, y: (tf.cast(x, tf.uint8), y),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _epoch_of_arrays(x, y, epoch=0):
    import tensorflow as tf

    order = np.random.default_rng([0, epoch]).permutation(len(x))  # as the engine shuffles
    x, y = x[order], y[order]
    return sum(int(tf.convert_to_tensor(x[i:i + BATCH]).shape[0]) for i in range(0, len(x), BATCH))


def _recipe(root) -> Recipe:
    return Recipe.from_dict({
        "backbone": {"name": "vgg16", "weights": "none", "input_shape": [*SIZE, 3]},
        "head": {"classes": 1},
        "data": {"source": "folder", "train": str(root), "batch_size": BATCH},
    })


def _run(benchmark, epoch) -> list[float]:
    """Benchmark `epoch`; return the process CPU seconds of each timed round."""
    cpu: list[float] = []

    def timed():
        start = time.process_time()
        result = epoch()
        cpu.append(time.process_time() - start)
        return result

    assert benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1) == IMAGES
    return cpu[1:]  # the warm-up round is not timed


def _record(benchmark, cpu: list[float], which: str, tool: str) -> None:
    wall = benchmark.stats.stats.median
    medians[which, tool] = (wall, float(np.median(cpu)))
    benchmark.extra_info.update(images=IMAGES, image_size=list(SIZE),
                                cpu_seconds_median=round(float(np.median(cpu)), 3))
    if tool == "finetunekit" and (which, "keras") in medians:
        wall_ratio = wall / medians[which, "keras"][0]
        cpu_ratio = medians[which, tool][1] / medians[which, "keras"][1]
        benchmark.extra_info.update(ratio_to_keras=round(wall_ratio, 3),
                                    cpu_ratio_to_keras=round(cpu_ratio, 3))
        print(f"\n{which}: finetunekit / keras = {wall_ratio:.2f} (wall), {cpu_ratio:.2f} (CPU)")


@pytest.mark.parametrize("tool", ["keras", "finetunekit"])
def test_first_epoch(benchmark, folder, tool):
    name, root = folder
    if tool == "keras":
        def epoch():
            return sum(int(x.shape[0]) for x, _ in _keras_dataset(root))
    else:
        engine, recipe = Engine(entry_points=False), _recipe(root)

        def epoch():
            return _epoch_of_arrays(*engine.load_data(recipe).train)

    _record(benchmark, _run(benchmark, epoch), f"first-epoch[{name}]", tool)


@pytest.mark.parametrize("tool", ["keras", "finetunekit"])
def test_next_epoch(benchmark, folder, tool):
    name, root = folder
    if tool == "keras":
        dataset = _keras_dataset(root)

        def epoch():
            return sum(int(x.shape[0]) for x, _ in dataset)
    else:
        x, y = Engine(entry_points=False).load_data(_recipe(root)).train

        def epoch():
            return _epoch_of_arrays(x, y, epoch=1)

    _record(benchmark, _run(benchmark, epoch), f"next-epoch[{name}]", tool)
