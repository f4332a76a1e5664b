"""The folder and csv sources on bad data: every case of issue 5, its outcome and the report.

Images are 32x32 (the tiny recipe's input), so nothing is resized and pixels can be
checked exactly where the format is lossless.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from finetunekit import DataError
from finetunekit.plugins.data.images import decode_image
from finetunekit.testing import tiny_recipe

SIZE = 32


def _jpeg(path, color=(200, 30, 30), mode="RGB"):
    Image.new(mode, (SIZE, SIZE), color).save(path, "JPEG", quality=95)
    return path


def _good(folder, n=2, color=(10, 120, 200)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (SIZE, SIZE), color).save(folder / f"good{i}.png")


def _bad_folder(root):
    """cats: two good images plus every bad case; dogs: two good images."""
    cats = root / "cats"
    _good(cats)
    _good(root / "dogs", color=(90, 90, 10))
    Image.new("L", (SIZE, SIZE), 100).save(cats / "gray.png")
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)            # fully transparent black ...
    rgba[:, SIZE // 2:] = (255, 0, 0, 255)                 # ... and opaque red
    Image.fromarray(rgba, "RGBA").save(cats / "rgba.png")
    deep = np.repeat(np.array([0, 64 * 257, 128 * 257, 65535], np.uint16), SIZE // 4)
    Image.fromarray(np.tile(deep, (SIZE, 1))).save(cats / "deep16.png")   # mode I;16
    _jpeg(cats / "cmyk.jpg", (0, 255, 255, 0), mode="CMYK")                # red in CMYK
    whole = _jpeg(root / "whole.jpg").read_bytes()
    (root / "whole.jpg").unlink()
    (cats / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (cats / "corrupt.jpg").write_bytes(whole[:2] + b"\x00garbage" * 20)   # JPEG marker, no JPEG
    (cats / "notes.jpg").write_text("this is a text file, not a JPEG")
    (cats / "empty.png").write_bytes(b"")
    (cats / "readme.txt").write_text("not an image suffix: ignored, not skipped")
    (cats / ".thumbs").mkdir()
    _jpeg(cats / ".thumbs" / "hidden.jpg")                                 # hidden: left out
    return root


def _folder_recipe(**data):
    return tiny_recipe(data={"source": "folder", **data})


def test_every_bad_case_has_its_outcome_and_is_reported(engine, tmp_path, caplog):
    train = _bad_folder(tmp_path / "train")
    with caplog.at_level(logging.INFO, logger="finetunekit.data"):
        data = engine.load_data(_folder_recipe(train=str(train)))
    x, y = data.train
    assert x.dtype == np.uint8 and x.shape == (8, SIZE, SIZE, 3)
    assert data.class_names == ["cats", "dogs"] and np.bincount(y).tolist() == [6, 2]

    report = data.report
    assert report["loaded"] == 8 and report["skipped"] == 4
    assert report["skipped_by_reason"] == {"corrupt": 1, "empty_file": 1, "not_an_image": 1,
                                           "truncated": 1}
    assert report["converted"] == {"16bit": 1, "alpha": 1, "cmyk": 1, "grayscale": 1}
    assert report["memory_bytes"] == 8 * SIZE * SIZE * 3
    split = report["splits"]["train"]
    assert split["found"] == 12 and split["ignored"] == 1
    assert split["per_class"] == {"cats": 6, "dogs": 2}
    assert [p.rsplit("/", 1)[-1] for p in split["skipped"]["truncated"]] == ["truncated.jpg"]
    assert split["skipped"]["not_an_image"][0].endswith("notes.jpg")

    # one concise warning line, with the counts by reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Skipped 4 of 12 images" in warnings[0].getMessage()
    assert "1 truncated image" in warnings[0].getMessage()

    # the converted images, pixel by pixel (files sorted: cmyk, deep16, gray, ...)
    by_name = dict(zip(["cmyk", "deep16", "good0", "good1", "gray", "rgba"], x[:6]))
    np.testing.assert_allclose(by_name["cmyk"][0, 0], (255, 0, 0), atol=3)
    assert by_name["deep16"][0, :: SIZE // 4, 0].tolist() == [0, 64, 128, 255]  # scaled, not clipped
    assert by_name["gray"][0, 0].tolist() == [100, 100, 100]
    assert by_name["rgba"][0, 0].tolist() == [255, 255, 255]  # transparent -> white background
    assert by_name["rgba"][0, -1].tolist() == [255, 0, 0]


def test_strict_refuses_naming_every_file(engine, tmp_path):
    train = _bad_folder(tmp_path / "train")
    with pytest.raises(DataError) as caught:
        engine.load_data(_folder_recipe(train=str(train), strict=True))
    message = str(caught.value)
    assert "refuses 4 unusable" in message
    for name in ("truncated.jpg", "corrupt.jpg", "notes.jpg", "empty.png"):
        assert name in message


def test_a_class_whose_every_file_is_bad_is_refused(engine, tmp_path):
    train = tmp_path / "train"
    _good(train / "cats")
    (train / "dogs").mkdir()
    (train / "dogs" / "a.jpg").write_text("text")
    with pytest.raises(DataError, match=r"none loaded for 'dogs' \(1 skipped\)"):
        engine.load_data(_folder_recipe(train=str(train)))


def test_empty_class_folder_single_class_and_class_mismatch(engine, tmp_path):
    train = tmp_path / "train"
    _good(train / "cats")
    (train / "dogs").mkdir()
    (train / "dogs" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"'.*dogs' \(data.train\) holds no images.*1 other file"):
        engine.load_data(_folder_recipe(train=str(train)))

    (train / "dogs" / "notes.txt").unlink()
    (train / "dogs").rmdir()
    with pytest.raises(DataError, match=r"at least 2 classes.*\['cats'\]"):
        engine.load_data(_folder_recipe(train=str(train)))

    _good(train / "dogs")
    validation = tmp_path / "validation"
    _good(validation / "cats")
    _good(validation / "birds")
    with pytest.raises(DataError) as caught:
        engine.load_data(_folder_recipe(train=str(train), validation=str(validation)))
    message = str(caught.value)
    assert "train has ['cats', 'dogs'], validation has ['birds', 'cats']" in message
    assert "only in train: dogs; only in validation: birds" in message


def test_validation_split_holds_out_each_class_before_decoding(engine, tmp_path):
    train = tmp_path / "train"
    _good(train / "cats", n=4)
    _good(train / "dogs", n=2)
    (train / "dogs" / "bad.png").write_bytes(b"\x89PNG broken")
    data = engine.load_data(_folder_recipe(train=str(train), validation_split=0.25))
    assert np.bincount(data.validation[1]).tolist() == [1, 1]
    assert data.report["splits"]["validation"]["loaded"] == 2
    assert data.report["skipped_by_reason"] == {"corrupt": 1}
    assert len(data.train[0]) + len(data.validation[0]) == 6


def _csv_recipe(**data):
    return tiny_recipe(data={"source": "csv", **data})


def test_csv_round_trip_matches_the_folder_source(engine, tmp_path):
    images = tmp_path / "set"
    _good(images / "cats", color=(250, 10, 10))
    _good(images / "dogs", color=(10, 10, 250))
    rows = ["label,path,notes"] + [f"{c},set/{c}/good{i}.png,x" for c in ("dogs", "cats") for i in range(2)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    by_csv = engine.load_data(_csv_recipe(train=str(tmp_path / "train.csv")))
    by_folder = engine.load_data(_folder_recipe(train=str(images)))
    assert by_csv.class_names == by_folder.class_names == ["cats", "dogs"]
    order = np.argsort(by_csv.train[1], kind="stable")
    np.testing.assert_array_equal(by_csv.train[0][order], by_folder.train[0])
    np.testing.assert_array_equal(by_csv.train[1][order], by_folder.train[1])
    assert by_csv.report["skipped"] == 0


def test_csv_missing_file_unknown_label_and_bad_row(engine, tmp_path):
    _good(tmp_path / "img", n=4)
    (tmp_path / "train.csv").write_text(
        "path,label\nimg/good0.png,cat\nimg/good1.png,dog\nimg/gone.png,dog\n,cat\n"
    )
    (tmp_path / "val.csv").write_text("path,label\nimg/good2.png,cat\nimg/good3.png,bird\n")
    recipe = _csv_recipe(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "val.csv"))
    data = engine.load_data(recipe)
    assert data.class_names == ["cat", "dog"]
    assert len(data.train[0]) == 2 and data.validation[1].tolist() == [0]
    assert data.report["skipped_by_reason"] == {"bad_row": 1, "missing_file": 1, "unknown_label": 1}
    assert data.report["splits"]["validation"]["skipped"]["unknown_label"][0].endswith(
        "val.csv:3 (label 'bird')")
    with pytest.raises(DataError, match=r"refuses 3 .*gone.png \(missing file\).*label 'bird'"):
        engine.load_data(tiny_recipe(data={**recipe["data"], "strict": True}))


def test_csv_header_and_classes(engine, tmp_path):
    _good(tmp_path / "img", n=3)
    (tmp_path / "no_header.csv").write_text("img/good0.png,cat\nimg/good1.png,dog\n")
    with pytest.raises(DataError, match=r"header naming the columns 'path' and 'label'"):
        engine.load_data(_csv_recipe(train=str(tmp_path / "no_header.csv")))
    (tmp_path / "train.csv").write_text("path,label\nimg/good0.png,1\nimg/good1.png,10\nimg/good2.png,2\n")
    data = engine.load_data(tiny_recipe(classes=3, data={"source": "csv", "train": str(tmp_path / "train.csv")}))
    assert data.class_names == ["1", "2", "10"]  # numeric labels sort as numbers
    data = engine.load_data(_csv_recipe(train=str(tmp_path / "train.csv"), classes=["10", "1"]))
    assert data.class_names == ["10", "1"] and data.report["skipped_by_reason"] == {"unknown_label": 1}


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half blue, as stored
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the stored left half on top
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    image, _ = decode_image((tmp_path / "turned.png").read_bytes(), (40, 20))
    assert image.shape == (40, 20, 3)
    assert image[0, 10].tolist() == [255, 0, 0] and image[-1, 10].tolist() == [0, 0, 255]


def test_palette_images_bombs_and_unreadable_paths(engine, tmp_path, monkeypatch):
    img = tmp_path / "img"
    _good(img, n=1)
    palette = Image.new("P", (SIZE, SIZE), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    palette.save(img / "plain.gif")
    palette.save(img / "clear.gif", transparency=1)  # every pixel transparent
    (img / "folder.png").mkdir()
    (tmp_path / "train.csv").write_text(
        "path,label\nimg/good0.png,a\nimg/plain.gif,a\nimg/clear.gif,b\nimg/folder.png,b\n")
    data = engine.load_data(_csv_recipe(train=str(tmp_path / "train.csv")))
    assert data.report["converted"] == {"alpha": 1, "palette": 1}
    assert data.report["skipped_by_reason"] == {"not_a_file": 1}
    assert data.train[0][1, 0, 0].tolist() == [0, 200, 0]      # plain.gif
    assert data.train[0][2, 0, 0].tolist() == [255, 255, 255]  # clear.gif, on white

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SIZE * SIZE // 4)  # bomb above twice this
    with pytest.raises(DataError, match=r"too large \(decompression bomb\)"):
        engine.load_data(_csv_recipe(train=str(tmp_path / "train.csv"), strict=True))
