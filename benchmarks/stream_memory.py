"""Peak memory and time of one training epoch from a folder of JPEGs: finetunekit in
memory, finetunekit streamed, and plain Keras (``image_dataset_from_directory``).

Each measurement is its own process (peak RSS is per process: ``ru_maxrss``). Usage::

    python benchmarks/stream_memory.py make FOLDER N          # N synthetic 500x375 JPEGs
    python benchmarks/stream_memory.py run FOLDER MODE SIZE   # MODE: memory, stream, keras

``run`` prints one JSON line: peak RSS, RSS after imports, wall and CPU seconds of the
epoch (data loading included). The model is MobileNetV3Small (random weights) with its
base frozen and the feature cache off, so every image goes through the pipeline and the
model is not the bottleneck. ``benchmarks/test_stream_memory.py`` runs it; figures and
commands in docs/data.md ("Memory").
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (17, 22, 3), dtype=np.uint8) for _ in range(16)]
    for i in range(n):
        label = ("cats", "dogs")[i % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        smooth = np.asarray(Image.fromarray(tiles[i % 16]).resize((500, 375), Image.BICUBIC),
                            np.int16)
        pixels = np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / label / f"{i:06d}.jpg", quality=90)


def _recipe(folder: Path, size: int, in_memory: bool):
    from finetunekit import Recipe

    return Recipe.from_dict({
        "backbone": {"name": "mobilenetv3small", "weights": "none", "input_shape": [size, size, 3]},
        "head": {"classes": 1},
        "strategy": {"name": "feature_extraction"},
        "data": {"source": "folder", "train": str(folder), "batch_size": 32,
                 "in_memory": in_memory},
        "train": {"epochs": 1, "feature_cache": "off"},
    })


def run(folder: Path, mode: str, size: int) -> dict:
    import keras

    from finetunekit import Engine

    engine = Engine(entry_points=False)
    recipe = _recipe(folder, size, mode == "memory")
    built = engine.build(recipe)  # built outside the timing; compiled inside, both sides
    imported = _rss()
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "keras":  # the same model, compiled as the engine compiles it, plain fit
        import tensorflow as tf

        engine.compile_stage(built, 0, None)

        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=32, shuffle=True, seed=0, verbose=False,
            label_mode="binary")
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.uint8), y),
                              num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        built.model.fit(dataset, epochs=1, verbose=0)
        loaded = None
    else:
        data = engine.load_data(recipe)
        loaded = _rss()
        engine.fit(built, data)
    return {"mode": mode, "size": size, "images": sum(1 for _ in folder.rglob("*.jpg")),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_imports_mib": imported / 2**20,
            "rss_after_load_mib": None if loaded is None else loaded / 2**20,
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "backend": keras.backend.backend()}


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "make":
        make(folder, int(sys.argv[3]))
    else:
        print(json.dumps(run(folder, sys.argv[3], int(sys.argv[4]))))
