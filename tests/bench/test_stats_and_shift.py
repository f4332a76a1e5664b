"""The accuracy benchmark's statistics (paired t-interval, sign test, the "loses" rule)
and its corruptions (shape, dtype, severity 0, determinism). Pure numpy: milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit.bench import shift, stats


def test_t_interval_matches_the_textbook_value():
    # mean 2, sd 1, n 3: 2 +- t(0.975, 2) * 1 / sqrt(3) = 2 +- 4.3027 * 0.57735
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 2.48414, abs=1e-4)
    assert high == pytest.approx(2 + 2.48414, abs=1e-4)


def test_sign_test_is_exact_and_two_sided():
    assert stats.sign_test(5, 0) == pytest.approx(0.0625)  # 2 * 0.5 ** 5
    assert stats.sign_test(3, 3) == pytest.approx(1.0)
    assert stats.sign_test(0, 0) == 1.0


def test_a_strategy_loses_only_when_the_paired_interval_excludes_zero():
    seeds = range(5)
    best = {s: 0.90 + 0.01 * s for s in seeds}
    steady = {s: best[s] - 0.05 for s in seeds}  # 5 points behind on every seed
    noisy = {s: best[s] + d for s, d in zip(seeds, (-0.2, 0.15, -0.1, 0.1, -0.05))}
    verdict = stats.against_best({"best": best, "steady": steady, "noisy": noisy})
    assert verdict["best"] == {"best": "best", "paired": None, "loses": False}
    assert verdict["steady"]["loses"] is True
    assert verdict["steady"]["paired"]["mean_difference"] == pytest.approx(0.05)
    assert verdict["steady"]["paired"]["wins"] == 5
    assert verdict["noisy"]["loses"] is False  # behind on average, but the CI spans 0
    low, high = verdict["noisy"]["paired"]["low"], verdict["noisy"]["paired"]["high"]
    assert low < 0 < high


def test_one_paired_seed_gives_no_interval_and_no_loss():
    verdict = stats.against_best({"a": {0: 0.9, 1: 0.9}, "b": {0: 0.5}})
    assert verdict["b"]["loses"] is False
    assert verdict["b"]["paired"]["low"] is None and verdict["b"]["paired"]["n"] == 1


def test_pairing_uses_the_seeds_both_sides_ran():
    compared = stats.paired({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.5, 2: 0.6, 3: 0.1})
    assert compared.n == 2 and compared.mean_difference == pytest.approx(0.2)
    with pytest.raises(ValueError, match="seeds both sides ran"):
        stats.paired({0: 1.0}, {1: 1.0})


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(shift.CORRUPTIONS))
def test_every_corruption_keeps_shape_and_dtype_and_severity_0_is_identity(images, name):
    for severity in range(shift.MAX_SEVERITY + 1):
        out = shift.corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(shift.corrupt(images, name, 0, seed=3), images)
    assert not np.array_equal(shift.corrupt(images, name, 3, seed=3), images)


@pytest.mark.parametrize("name", list(shift.CORRUPTIONS))
def test_corruptions_are_deterministic_by_seed(images, name):
    assert np.array_equal(shift.corrupt(images, name, 4, seed=7),
                          shift.corrupt(images, name, 4, seed=7))


def test_noise_depends_on_the_seed_and_grows_with_severity(images):
    grey = np.full((4, 32, 32, 3), 128, dtype=np.uint8)
    assert not np.array_equal(shift.gaussian_noise(grey, 2, np.random.default_rng(1)),
                              shift.gaussian_noise(grey, 2, np.random.default_rng(2)))
    spread = [shift.corrupt(grey, "gaussian_noise", s, seed=0).std() for s in (1, 3, 5)]
    assert spread == sorted(spread) and spread[0] > 0


def test_inversion_and_contrast_do_what_they_say(images):
    assert np.array_equal(shift.corrupt(images, "inversion", 1), 255 - images)
    lowered = shift.corrupt(images, "contrast", 5).astype(float)
    assert lowered.std() < 0.1 * images.astype(float).std()


def test_shifted_deals_the_kinds_in_turn(images):
    out, which = shift.shifted(images, 3, seed=0)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert list(which) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert np.array_equal(out[4], 255 - images[4])  # the fifth kind is inversion
    identity, _ = shift.shifted(images, 0)
    assert np.array_equal(identity, images)


def test_bad_images_or_severity_are_refused_clearly(images):
    with pytest.raises(ValueError, match="uint8 images of shape"):
        shift.corrupt(images.astype(np.float32), "rotation", 1)
    with pytest.raises(ValueError, match="severity must be 0 to 5"):
        shift.corrupt(images, "rotation", 6)
    with pytest.raises(ValueError, match="Unknown corruption 'snow'"):
        shift.corrupt(images, "snow", 1)
