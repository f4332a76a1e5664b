"""Distribution shift for the accuracy benchmark: corruptions in the style of ImageNet-C
(Hendrycks & Dietterich, ICLR 2019), on uint8 images, in numpy and scipy.

Each corruption takes ``(n, h, w, c)`` uint8 images, a severity from 0 to 5 and a numpy
``Generator``; severity 0 returns the images unchanged. The levels are ImageNet-C's
where they carry over (noise, contrast) and scaled to 32x32 digits where they do not
(blur, rotation). :func:`shifted` builds the benchmark's out-of-distribution copy of a
test set: every image gets one corruption, the kinds in turn, at one severity, so the
copy has the test set's size and each kind an equal share.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_SEVERITY = 5

NOISE_SIGMA = (0.0, 0.08, 0.12, 0.18, 0.26, 0.38)
"""Gaussian noise std as a share of the 0-255 range, per severity (ImageNet-C's)."""

BLUR_SIGMA = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5)
"""Gaussian blur std in pixels at 32x32 (ImageNet-C's 1-6 px at 224, scaled down)."""

ROTATION_DEGREES = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)
"""Rotation angle per severity, clockwise or counter-clockwise at random per image."""

CONTRAST = (1.0, 0.4, 0.3, 0.2, 0.1, 0.05)
"""Contrast factor around each image's mean per severity (ImageNet-C's)."""


def _check(images: np.ndarray, severity: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            "Corruptions take uint8 images of shape (n, height, width, channels). Received: "
            f"dtype {images.dtype}, shape {images.shape}.")
    if not 0 <= int(severity) <= MAX_SEVERITY:
        raise ValueError(f"severity must be 0 to {MAX_SEVERITY}. Received: severity={severity}.")
    return images


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise, the same on every channel (the digits are grey)."""
    images = _check(images, severity)
    if severity == 0:
        return images.copy()
    noise = rng.normal(0.0, NOISE_SIGMA[severity] * 255.0, size=images.shape[:3] + (1,))
    return _to_uint8(images.astype(np.float64) + noise)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur each image with a Gaussian kernel (not across images or channels)."""
    from scipy.ndimage import gaussian_filter

    images = _check(images, severity)
    if severity == 0:
        return images.copy()
    sigma = BLUR_SIGMA[severity]
    return _to_uint8(gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0)))


def rotation(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate each image about its centre by the severity's angle, either way at random;
    corners filled with black (the digits' background)."""
    from scipy.ndimage import rotate

    images = _check(images, severity)
    if severity == 0:
        return images.copy()
    signs = rng.choice((-1.0, 1.0), size=len(images))
    out = np.empty_like(images)
    for i, (image, sign) in enumerate(zip(images, signs)):
        turned = rotate(image.astype(np.float64), sign * ROTATION_DEGREES[severity],
                        axes=(1, 0), reshape=False, order=1, mode="constant", cval=0.0)
        out[i] = _to_uint8(turned)
    return out


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Scale each image's deviation from its own mean by the severity's factor."""
    images = _check(images, severity)
    if severity == 0:
        return images.copy()
    values = images.astype(np.float64)
    means = values.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8((values - means) * CONTRAST[severity] + means)


def inversion(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The negative, 255 - x, at every severity from 1 (one level: a shift of polarity
    has no degrees)."""
    images = _check(images, severity)
    return images.copy() if severity == 0 else 255 - images


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "rotation": rotation,
    "contrast": contrast,
    "inversion": inversion,
}
"""Every corruption, by name, in the order :func:`shifted` deals them out."""


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """One corruption by name; random parts (noise, rotation sign) drawn from `seed`."""
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}. Known: {', '.join(CORRUPTIONS)}.")
    return CORRUPTIONS[name](images, severity, np.random.default_rng(seed))


def shifted(images: np.ndarray, severity: int, seed: int = 0,
            kinds: tuple[str, ...] = tuple(CORRUPTIONS)) -> tuple[np.ndarray, np.ndarray]:
    """The out-of-distribution copy of a test set.

    Image ``i`` gets corruption ``kinds[i % len(kinds)]``: the test set's order is
    already shuffled, so each kind sees every class about equally.

    Args:
        images: (n, h, w, c) uint8.
        severity: int, 0 to 5. 0 returns a copy of `images`.
        seed: int. Seeds the noise and the rotation signs.
        kinds: names from :data:`CORRUPTIONS`.

    Returns:
        tuple: the corrupted images (same shape and dtype) and, per image, the index of
        its corruption in `kinds`.
    """
    images = _check(images, severity)
    which = np.arange(len(images)) % len(kinds)
    out = np.empty_like(images)
    for k, name in enumerate(kinds):
        picked = which == k
        if picked.any():
            out[picked] = corrupt(images[picked], name, severity, seed + k)
    return out, which
