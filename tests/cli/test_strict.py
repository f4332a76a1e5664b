"""``--strict`` on the command line: unusable images refuse the run (exit 2, files named)
instead of being skipped."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from finetunekit.cli import main
from tests.helpers.recipes import write_recipe


def _folder(root):
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), color=(i * 60, 0, 0)).save(root / name / f"{i}.png")
    (root / "dogs" / "broken.jpg").write_text("not an image")
    return root


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_strict_refuses_run_and_retrain_naming_the_bad_file(tmp_path):
    train = _folder(tmp_path / "train")
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path, "run", epochs=1, data=f'train = "{train}"\nbatch_size = 4')
    refused = _invoke("run", recipe, "--strict")
    assert refused.exit_code == 2, refused.output
    assert "data.strict = true refuses 1 unusable file" in refused.output
    assert "broken.jpg" in refused.output and "Traceback" not in refused.output
    assert not out.exists()  # refused before the run folder is written

    skipped = _invoke("run", recipe)  # without --strict the bad file is skipped
    assert skipped.exit_code == 0, skipped.output

    again = _invoke("retrain", out, "--data", train, "--out", tmp_path / "more", "--strict")
    assert again.exit_code == 2, again.output
    assert "broken.jpg" in again.output
    assert not (tmp_path / "more").exists()


def test_strict_is_refused_by_a_source_without_a_strict_key(tmp_path):
    recipe = write_recipe(tmp_path)  # the arrays source
    refused = _invoke("run", recipe, "--strict")
    assert refused.exit_code == 2, refused.output
    assert "--strict: data source 'arrays' has no 'strict' key" in refused.output
    assert "(csv, folder)" in refused.output and "drop --strict" in refused.output
    assert "Traceback" not in refused.output
