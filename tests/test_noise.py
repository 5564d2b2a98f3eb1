"""The counter-based start noise: its definition (checked against a scalar implementation), keying and statistics."""
import math

import numpy as np
import pytest

from ddrf.runtime.noise import scene_noise

MASK = (1 << 64) - 1


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def scalar_noise(seed: int, band: int, row: int, col: int, step: int = 0) -> float:
    """One value from the module's definition, in Python integers: splitmix64 of the (band, row, col) counter, then
    Box-Muller."""
    offset = 1 << 24
    counter = (band << 50) | ((row + offset) << 25) | (col + offset)
    key = mix64((seed + 0x9E3779B97F4A7C15 * (2 * step + 1)) & MASK)
    key2 = mix64((key + 0x9E3779B97F4A7C15) & MASK)
    u1 = ((mix64(counter ^ key) >> 11) + 1) / 2.0 ** 53
    u2 = ((mix64(counter ^ key2) >> 11) + 1) / 2.0 ** 53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@pytest.mark.parametrize("seed, step, row0, col0", [(0, 0, 0, 0), (7, 3, -96, 1000), (2 ** 40 + 5, 1, 5000, -7)])
def test_matches_the_scalar_definition(seed: int, step: int, row0: int, col0: int) -> None:
    noise = scene_noise(seed, 3, row0, col0, 150, 9, step=step)  # 150 rows: more than one block of rows
    for band, row, col in [(0, 0, 0), (1, 129, 8), (2, 149, 3), (2, 127, 0), (0, 128, 5)]:
        assert noise[band, row, col] == pytest.approx(scalar_noise(seed, band, row0 + row, col0 + col, step), abs=2e-6)


def test_keyed_to_coordinates_only() -> None:
    whole = scene_noise(11, 4, -40, 300, 300, 260)
    window = scene_noise(11, 4, 100, 333, 150, 90)
    np.testing.assert_array_equal(window, whole[:, 140:290, 33:123])
    assert not np.array_equal(scene_noise(12, 4, -40, 300, 300, 260), whole)
    assert not np.array_equal(scene_noise(11, 4, -40, 300, 300, 260, step=1), whole)
    assert not np.array_equal(whole[0], whole[1])


def test_standard_normal() -> None:
    noise = scene_noise(3, 2, 0, 0, 512, 512).astype(np.float64).ravel()
    assert noise.dtype == np.float64 and np.isfinite(noise).all()
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(noise) > 1.959964) - 0.05) < 0.002  # the two-sided 5 % tail
    # neighbours are independent
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.01


def test_empty_and_out_of_range() -> None:
    assert scene_noise(0, 2, 0, 0, 0, 5).shape == (2, 0, 5)
    with pytest.raises(ValueError, match="outside the supported coordinate range"):
        scene_noise(0, 1, -(1 << 24) - 1, 0, 4, 4)
    with pytest.raises(ValueError, match="bad noise window"):
        scene_noise(0, 0, 0, 0, 4, 4)
