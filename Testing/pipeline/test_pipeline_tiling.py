"""Window positions and Gaussian weights against the spec's examples (SAT_REFERENCE §4.5, §4.7)."""

import numpy as np
import pytest

from SATSegmentLib.tiling import gaussian_weights, sliding_windows, window_starts, windows_touching


@pytest.mark.parametrize(
    "length, patch, expected",
    [(300, 288, [0, 12]), (450, 288, [0, 144, 162]), (600, 288, [0, 144, 288, 312]), (150, 96, [0, 48, 54]),
     (288, 288, [0]), (289, 288, [0, 1]), (100, 288, [0]), (96, 96, [0]), (144, 96, [0, 48])],
)
def test_window_starts_match_spec(length, patch, expected):
    assert window_starts(length, patch) == expected


def test_window_order_is_h_then_w_then_d_and_clipped_to_volume():
    wins = sliding_windows((20, 12, 5), (8, 8, 4))
    assert [w.index for w in wins] == list(range(len(wins)))
    starts = [w.start for w in wins]
    assert starts == sorted(starts)  # lexicographic = h slowest, d fastest
    assert starts[:3] == [(0, 0, 0), (0, 0, 1), (0, 4, 0)]
    assert all(w.stop[i] <= (20, 12, 5)[i] for w in wins for i in range(3))
    small = sliding_windows((3, 30, 4), (8, 8, 8))
    assert {w.extent[0] for w in small} == {3} and {w.extent[2] for w in small} == {4}


def test_windows_touching_selects_only_overlapping_windows():
    wins = sliding_windows((64, 16, 8), (16, 16, 8))
    chosen = windows_touching(wins, (0, 0, 0), (10, 16, 8))
    assert [w.start[0] for w in chosen] == [0, 8]
    assert [w.start[0] for w in windows_touching(wins, (30, 0, 0), (33, 16, 8))] == [16, 24, 32]


def test_official_gaussian():
    g = gaussian_weights((288, 288, 96))
    assert g.dtype == np.float32 and g.shape == (288, 288, 96)
    assert g.max() == 10.0 and g[144, 144, 48] == 10.0
    assert np.array_equal(g.astype(np.float16).astype(np.float32), g)  # float16 values
    assert g.min() == np.float32(2.0**-24)  # underflowed corners → smallest non-zero fp16 (6e-8)
    i = np.arange(288)
    expected = (10 * np.exp(-0.5 * ((i - 144) / 36.0) ** 2)).astype(np.float16).astype(np.float32)
    assert np.array_equal(g[:, 144, 48], expected)
    assert np.array_equal(g[100, 144, :], g[188, 144, :]) and np.array_equal(g[144, :, 10], g[:, 144, 10])


def test_gaussian_of_small_patch_has_no_zero():
    g = gaussian_weights((16, 16, 8))
    assert g.min() > 0 and g[8, 8, 4] == 10.0
