"""``finetunekit cache list`` and ``cache clear``: what they show and remove, and bad
input (exit 2, a message, no traceback)."""

from __future__ import annotations

import json
import os
import re
import time

import numpy as np
import pytest
from click.testing import CliRunner

from finetunekit.cli import main
from finetunekit.core import feature_folder, feature_store


def _entry(folder, key, rows=5, backbone="vgg16", age_days=0.0):
    feature_store.write_entry(folder, key, rows, (2, 2, 3),
                              [np.ones((rows, 2, 2, 3), np.float32)],
                              {"backbone": backbone}, shard_bytes=48 * 2)
    used = time.time() - age_days * 86400
    os.utime(folder / key / feature_store.MANIFEST, (used, used))


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "features"
    _entry(folder, "aa11" + "0" * 28, rows=5, backbone="vgg16", age_days=10)
    _entry(folder, "bb22" + "0" * 28, rows=7, backbone="resnet50")
    return folder


def _invoke(*args):
    return CliRunner().invoke(main, ["cache", *map(str, args)])


def test_list_shows_each_entry_and_the_total(folder):
    result = _invoke("list", "--dir", folder, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [(e["key"][:4], e["backbone"], e["rows"], e["shape"]) for e in info["entries"]] == [
        ("aa11", "vgg16", 5, [2, 2, 3]), ("bb22", "resnet50", 7, [2, 2, 3])]  # LRU first
    assert info["total_bytes"] == sum(e["bytes"] for e in info["entries"]) > 12 * 48
    (folder / ("cc33" + "0" * 28)).mkdir()  # a computation killed before its manifest
    result = _invoke("list", "--dir", folder)
    assert result.exit_code == 0, result.output
    assert "aa1100000000" in result.output and "resnet50" in result.output
    assert "2 entries" in result.output and "1 folder(s) left" in result.output


def test_clear_by_key_by_age_and_all(folder):
    result = _invoke("clear", "bb2", "--dir", folder)
    assert result.exit_code == 0, result.output
    assert "Removed bb2200000000 (resnet50, 7 rows" in result.output
    assert [e.key[:4] for e in feature_folder.entries(folder)] == ["aa11"]
    _entry(folder, "dd44" + "0" * 28)
    result = _invoke("clear", "--older-than", 5, "--dir", folder)
    assert result.exit_code == 0 and "Removed aa11" in result.output
    assert [e.key[:4] for e in feature_folder.entries(folder)] == ["dd44"]
    (folder / ("ee55" + "0" * 28)).mkdir()
    result = _invoke("clear", "--all", "--dir", folder)
    assert result.exit_code == 0 and "Removed dd44" in result.output
    assert "1 folder(s) left by interrupted" in result.output
    assert not [p for p in folder.iterdir() if p.is_dir()]


def test_clear_keeps_an_entry_in_use(folder):
    held = feature_store.open_entry(folder, "bb22" + "0" * 28, np.zeros(7))
    result = _invoke("clear", "--all", "--dir", folder)
    assert result.exit_code == 0, result.output
    assert "Kept bb2200000000: another process is using it." in result.output
    assert [e.key[:4] for e in feature_folder.entries(folder)] == ["bb22"]
    np.testing.assert_array_equal(held.read(np.array([6, 0])), np.ones((2, 2, 2, 3)))


@pytest.mark.parametrize("args, message", [
    (["ff00"], "Key 'ff00' matches no entry in .* Known keys: aa1100000000, bb2200000000. "
               "Nothing was removed."),
    ([], "cache clear needs exactly one of KEY..., --all or --older-than DAYS"),
    (["aa11", "--all"], "needs exactly one of .* Received: keys aa11, --all"),
])
def test_bad_clear_input_exits_2_and_removes_nothing(folder, args, message):
    result = _invoke("clear", *args, "--dir", folder)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert len(feature_folder.entries(folder)) == 2


def test_list_of_a_missing_folder_is_empty(tmp_path):
    result = _invoke("list", "--dir", tmp_path / "none")
    assert result.exit_code == 0 and "No entries in" in result.output
