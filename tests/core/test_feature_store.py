"""The feature cache on disk: shards read back by shuffled indices equal a direct
predict, a killed computation is not trusted, least-recently-used eviction keeps what is
in use, and the key follows weights, files and precision."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

from finetunekit import Data
from finetunekit.core import feature_folder, feature_store
from finetunekit.core.examples import ArrayExamples, Examples
from finetunekit.core.feature_cache import FeatureCache, _extractor, uses_cache
from finetunekit.testing import tiny_data, tiny_recipe

ROW = 512 * 4  # vgg16 at 32x32: (1, 1, 512) float32 features per image


class FileImages(Examples):
    """Images as .npy files decoded on read: a streamed source in miniature."""

    def __init__(self, folder, images, labels):
        self.paths = []
        for i, image in enumerate(images):
            self.paths.append(folder / f"{i}.npy")
            np.save(self.paths[-1], image)
        self.labels, self.shape, self.dtype = labels, tuple(images.shape[1:]), "uint8"

    def read(self, indices):
        return np.stack([np.load(self.paths[i]) for i in indices])

    def fingerprint(self):
        stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in self.paths]
        return repr(stats).encode() + self.labels.tobytes()


def _cache(folder, **kwargs):
    return FeatureCache(memory_limit=0, folder=folder, shard_bytes=3 * ROW, **kwargs)


@pytest.mark.jax
def test_shards_read_by_shuffled_indices_equal_a_direct_predict(engine, tmp_path):
    run = engine.build(tiny_recipe())
    x, y = tiny_data(n=8).train
    (tmp_path / "images").mkdir()
    files, folder = FileImages(tmp_path / "images", x, y), tmp_path / "cache"
    cache = _cache(folder)
    features = cache.examples(run, files, batch_size=4)
    assert isinstance(features, feature_store.ShardedExamples) and cache.computed == 1
    entry, = feature_folder.entries(folder)
    assert entry.manifest["rows"] == 8 and len(entry.manifest["shards"]) == 3
    direct = _extractor(run).predict(x, verbose=0)
    order = np.random.default_rng(0).permutation(8)
    indices = np.r_[order, order[:3]]  # any order, repeats too
    np.testing.assert_allclose(features.read(indices), direct[indices], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features.labels, y)
    # another engine's cache on the same folder finds it
    other = _cache(folder)
    again = other.examples(run, files, batch_size=4)
    assert isinstance(again, feature_store.ShardedExamples) and other.computed == 0
    np.testing.assert_array_equal(again.read(indices), features.read(indices))
    assert not [p for p in folder.iterdir() if p.name.startswith((".tmp", ".trash"))]


def test_a_killed_computation_is_not_trusted_and_is_recomputed(engine, tmp_path):
    run = engine.build(tiny_recipe())
    x, y = tiny_data(n=8).train
    examples = ArrayExamples(x, y)
    key = FeatureCache.key(run, examples)
    half = tmp_path / key  # what a writer killed before its manifest would leave
    half.mkdir()
    np.save(half / "00000.npy", np.zeros((3, 1, 1, 512), np.float32))
    dead = tmp_path / f".tmp-{key}-0000"  # a temporary folder whose writer is gone
    dead.mkdir()
    (dead / ".writing").touch()
    cache = _cache(tmp_path)
    features = cache.examples(run, examples, batch_size=4)
    assert cache.computed == 1 and (half / feature_store.MANIFEST).is_file()
    np.testing.assert_allclose(features.read(np.arange(8)), _extractor(run).predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert not dead.exists()  # cleaned by the eviction pass after the write


@pytest.mark.jax
def test_lru_eviction_removes_the_least_recently_used_and_keeps_entries_in_use(engine, tmp_path):
    run = engine.build(tiny_recipe())
    sets = [ArrayExamples(x, y) for x, y in (tiny_data(n=4, seed=s).train for s in range(4))]
    keys = [FeatureCache.key(run, s) for s in sets]
    cache = _cache(tmp_path)
    for examples in sets[:2]:
        cache.examples(run, examples, batch_size=4)  # not kept: no longer in use
    gc.collect()
    size = feature_folder.entries(tmp_path)[0].size
    cache.disk_limit = other_limit = 2 * size + size // 2  # two entries fit
    os.utime(tmp_path / keys[0] / feature_store.MANIFEST, (time.time() - 100,) * 2)
    os.utime(tmp_path / keys[1] / feature_store.MANIFEST, (time.time() - 50,) * 2)
    in_use = cache.examples(run, sets[0], batch_size=4)  # used again: now set 1 is oldest
    assert cache.computed == 2
    cache.examples(run, sets[2], batch_size=4)
    gc.collect()
    assert {e.key for e in feature_folder.entries(tmp_path)} == {keys[0], keys[2]}

    # set 0 least recently used but still open here: another engine's cache skips it
    os.utime(tmp_path / keys[0] / feature_store.MANIFEST, (time.time() - 100,) * 2)
    _cache(tmp_path, disk_limit=other_limit).examples(run, sets[3], batch_size=4)
    assert {e.key for e in feature_folder.entries(tmp_path)} == {keys[0], keys[3]}
    assert in_use.read(np.arange(4)).shape == (4, 1, 1, 512)


def test_key_follows_weights_file_mtime_and_precision_and_same_inputs_reuse(engine, tmp_path):
    run = engine.build(tiny_recipe())
    x, y = tiny_data(n=4).train
    (tmp_path / "images").mkdir()
    files = FileImages(tmp_path / "images", x, y)
    cache = _cache(tmp_path / "cache")
    cache.examples(run, files, batch_size=4)
    cache.examples(run, files, batch_size=4)
    assert cache.computed == 1  # same inputs: the entry is reused
    key = FeatureCache.key(run, files)
    stat = os.stat(files.paths[2])
    os.utime(files.paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert FeatureCache.key(run, files) != key
    cache.examples(run, files, batch_size=4)
    assert cache.computed == 2
    key = FeatureCache.key(run, files)
    half = engine.build(tiny_recipe(train={"precision": "mixed_float16"}))
    assert FeatureCache.key(half, files) != key
    run.base.weights[-1].assign(run.base.weights[-1] + 1)
    assert FeatureCache.key(run, files) != key


def test_head_stage_gives_examples_of_features_for_examples(engine, tmp_path):
    run = engine.build(tiny_recipe())
    x, y = tiny_data(n=8).train
    data = Data(train=ArrayExamples(x, y), validation=ArrayExamples(x[:4], y[:4]))
    assert uses_cache(run, run.plan.stages[0], data)
    engine.feature_cache = _cache(tmp_path)
    engine.compile_stage(run, 0)
    trainer, features = engine.cached_head(run, data, 4)
    assert isinstance(features.train, Examples) and len(features.validation) == 4
    indices = np.array([5, 1, 7])
    np.testing.assert_allclose(trainer.predict(features.train.read(indices), verbose=0),
                               run.model.predict(x[indices], verbose=0), rtol=1e-5, atol=1e-6)


def test_a_bad_cache_limit_is_a_clear_error(monkeypatch):
    from finetunekit import DataError

    monkeypatch.setenv(feature_store.LIMIT_ENV, "lots")
    with pytest.raises(DataError, match="FINETUNEKIT_CACHE_LIMIT must be a size.*'lots'"):
        FeatureCache()
    assert feature_store.parse_size("1.5GiB") == 3 << 29
    assert feature_store.parse_size("500MB") == 500 * 10**6
