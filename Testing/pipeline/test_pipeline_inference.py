"""The compact sliding-window engine equals a naive dense implementation bit for bit."""

import threading

import numpy as np
import pytest
import torch

from SATSegmentLib.errors import CancelledError
from SATSegmentLib.inference import FeatureCache, run_sliding_window
from SATSegmentLib.tiling import gaussian_weights, sliding_windows

PATCH = (16, 12, 8)


def dense_reference(volume, model, queries, patch):
    """The official scheme: N dense fp32 numerators and weights, prob = num / weight > 0.5."""
    n = queries.shape[0]
    numerator = np.zeros((n, *volume.shape), np.float32)
    weight = np.zeros((n, *volume.shape), np.float32)
    g = torch.from_numpy(gaussian_weights(patch))
    for win in sliding_windows(volume.shape, patch):
        (h0, w0, d0), (h1, w1, d1) = win.start, win.stop
        x = torch.zeros(patch)
        x[: h1 - h0, : w1 - w0, : d1 - d0] = torch.from_numpy(volume[h0:h1, w0:w1, d0:d1])
        logits = model.decode(model.encode_image(x[None, None].repeat(1, 3, 1, 1, 1)), queries)[0]
        gw = g[: h1 - h0, : w1 - w0, : d1 - d0]
        numerator[:, h0:h1, w0:w1, d0:d1] += (torch.sigmoid(logits[:, : h1 - h0, : w1 - w0, : d1 - d0]) * gw).numpy()
        weight[:, h0:h1, w0:w1, d0:d1] += gw.numpy()
    prob = numerator / weight
    return (prob > 0.5).astype(np.uint8)


def random_case(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    volume = rng.normal(size=shape).astype(np.float32)
    queries = torch.tensor(np.stack([rng.normal(0, 0.3, n), rng.uniform(0.5, 4, n), rng.uniform(0, 2, n)], 1), dtype=torch.float32)
    return volume, queries


@pytest.mark.parametrize("shape", [(45, 30, 20), (40, 7, 19), (16, 12, 8), (9, 50, 5)])
def test_engine_equals_dense_reference(intensity_model, shape):
    volume, queries = random_case(shape, 5)
    expected = dense_reference(volume, intensity_model, queries, PATCH)
    got = run_sliding_window(volume, intensity_model, queries, PATCH, chunk_size=2)
    assert len(got.backbone_seconds) == len(sliding_windows(shape, PATCH))
    for n in range(5):
        np.testing.assert_array_equal(got.mask(n), expected[n])
    assert 0.05 < expected.mean() < 0.95  # the case is not trivially all-0 or all-1


def test_prompt_results_do_not_depend_on_other_prompts(intensity_model):
    volume, queries = random_case((45, 30, 20), 6, seed=1)
    together = run_sliding_window(volume, intensity_model, queries, PATCH)
    alone = run_sliding_window(volume, intensity_model, queries[3:4], PATCH)
    np.testing.assert_array_equal(together.mask(3), alone.mask(0))


def test_progress_per_window_and_cancel_between_windows(intensity_model):
    volume, queries = random_case((45, 30, 20), 2)
    calls, cancel = [], threading.Event()

    def progress(stage, i, n, message):
        calls.append((stage, i, n))
        if i == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        run_sliding_window(volume, intensity_model, queries, PATCH, progress=progress, cancel=cancel)
    assert calls == [("inference", 1, calls[0][2]), ("inference", 2, calls[0][2])]
    assert intensity_model.encode_calls == 2


def test_feature_cache_skips_backbone_for_new_prompts(intensity_model):
    volume, queries = random_case((45, 30, 20), 4)
    n_windows = len(sliding_windows(volume.shape, PATCH))
    one_window = 4 * int(np.prod(PATCH))
    cache = FeatureCache(max_bytes=one_window * (n_windows - 1))
    cache.bind("volume-a")
    first = run_sliding_window(volume, intensity_model, queries[:2], PATCH, feature_cache=cache)
    assert len(cache) == n_windows - 1 and cache.nbytes <= cache.max_bytes
    calls = intensity_model.encode_calls
    second = run_sliding_window(volume, intensity_model, queries, PATCH, feature_cache=cache)
    assert intensity_model.encode_calls - calls == 1  # only the window that did not fit the budget
    for n in range(2):
        np.testing.assert_array_equal(first.mask(n), second.mask(n))
    np.testing.assert_array_equal(second.mask(3), dense_reference(volume, intensity_model, queries, PATCH)[3])
    cache.bind("volume-b")
    assert len(cache) == 0


def test_feature_cache_keeps_recent_volumes_and_drops_the_least_recently_used(intensity_model):
    """A server alternating between scans keeps each one's features while the budget allows; when a new
    scan needs room, the scan used longest ago goes first, never the one being segmented."""
    volume, queries = random_case((16, 12, 8), 1)  # one window per scan
    one_window = 4 * int(np.prod(PATCH))
    cache = FeatureCache(max_bytes=2 * one_window)

    def segment(name):
        cache.bind(name)
        calls = intensity_model.encode_calls
        run_sliding_window(volume, intensity_model, queries, PATCH, feature_cache=cache)
        return intensity_model.encode_calls - calls  # backbone runs

    assert [segment("a"), segment("b"), segment("a"), segment("b")] == [1, 1, 0, 0]
    assert cache.volumes == 2 and cache.nbytes == 2 * one_window
    assert segment("c") == 1 and cache.volumes == 2  # 'a' was used longest ago: dropped for 'c'
    assert [segment("b"), segment("a")] == [0, 1]  # 'b' stayed; 'a' is computed again (and 'c' dropped)
    assert segment("c") == 1
    cache.limit(one_window)  # a smaller cap keeps only the bound scan
    assert cache.volumes == 1 and segment("c") == 0


def test_subset_of_windows_leaves_uncovered_voxels_empty(intensity_model):
    volume = np.full((45, 30, 20), 5.0, np.float32)
    queries = torch.tensor([[0.0, 1.0, 0.0]])
    windows = [w for w in sliding_windows(volume.shape, PATCH) if w.start[0] == 0]
    got = run_sliding_window(volume, intensity_model, queries, PATCH, windows=windows)
    mask = got.mask(0)
    assert mask[:PATCH[0]].all() and not mask[PATCH[0]:].any()


def test_subset_starting_below_the_first_slab(intensity_model):
    """An ROI far from row 0: rows no window touched are empty, covered rows match the full run."""
    volume, queries = random_case((60, 30, 20), 3, seed=2)
    all_windows = sliding_windows(volume.shape, PATCH)
    far = [w for w in all_windows if w.start[0] >= 2 * PATCH[0]]
    assert far, "the case must have windows starting beyond the first slab"
    full = run_sliding_window(volume, intensity_model, queries, PATCH)
    part = run_sliding_window(volume, intensity_model, queries, PATCH, windows=far)
    first_row = far[0].start[0]
    for n in range(3):
        assert not part.mask(n)[:first_row].any()
        np.testing.assert_array_equal(part.mask(n)[far[-1].start[0]:], full.mask(n)[far[-1].start[0]:])
