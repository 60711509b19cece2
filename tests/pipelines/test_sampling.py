"""Clip sampling against the spec's worked examples and a loop-by-loop re-statement of the rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines import sampling
from pipelines.sampling import clip_indices, clip_span, segment_starts


def reference(num_frames, num_segments, seq_length, sample_rate, mode, rng=None):
    """The spec's rules written out plainly (one branch per sentence of bat-official.md)."""
    need = seq_length * sample_rate - (sample_rate - 1)
    starts = []
    if mode == "train":
        avg = (num_frames - need + 1) // num_segments
        if avg > 0:
            for s in range(num_segments):
                starts.append(s * avg + int(rng.integers(avg)))
        elif num_frames > need:
            starts = sorted(int(v) for v in rng.integers(num_frames - need + 1, size=num_segments))
        else:
            starts = [0] * num_segments
    else:
        if num_frames > num_segments + need - 1:
            tick = (num_frames - need + 1) / float(num_segments)
            for s in range(num_segments):
                starts.append(int(tick / 2.0 + tick * s))
        else:
            starts = [0] * num_segments
    out = []
    for p in starts:
        clip = []
        for i in range(seq_length):
            clip.append(min(p + i * sample_rate, num_frames - 1))
        out.append(clip)
    return out


FRAME_COUNTS = [1, 2, 7, 15, 16, 40, 56, 57, 58, 64, 65, 66, 67, 100, 250, 300, 301, 1000]
SHAPES = [(8, 8), (4, 2), (32, 2), (1, 1), (16, 4), (8, 1)]
SEGMENTS = [1, 2, 3, 10]


def test_worked_examples():
    assert clip_span(seq_length=8, sample_rate=8) == 57
    starts = segment_starts(300, num_segments=10, seq_length=8, sample_rate=8, mode="val")
    assert starts == [12, 36, 61, 85, 109, 134, 158, 182, 207, 231]
    assert clip_indices(300, num_segments=10, seq_length=8, sample_rate=8, mode="test")[7] == [
        182, 190, 198, 206, 214, 222, 230, 238,
    ]
    for mode in ("val", "test"):
        assert clip_indices(40, num_segments=1, seq_length=8, sample_rate=8, mode=mode) == [
            [0, 8, 16, 24, 32, 39, 39, 39]
        ]
    # 40 frames < need: every train start is 0 too.
    rng = np.random.default_rng(0)
    assert clip_indices(40, num_segments=1, seq_length=8, sample_rate=8, mode="train", rng=rng) == [
        [0, 8, 16, 24, 32, 39, 39, 39]
    ]


@pytest.mark.parametrize("mode", ["val", "test"])
def test_eval_modes_match_reference(mode):
    for n, (t, r), s in itertools.product(FRAME_COUNTS, SHAPES, SEGMENTS):
        got = clip_indices(n, num_segments=s, seq_length=t, sample_rate=r, mode=mode)
        assert got == reference(n, s, t, r, mode), (n, t, r, s)


def test_train_matches_reference_draw_for_draw():
    for seed, (n, (t, r), s) in enumerate(itertools.product(FRAME_COUNTS, SHAPES, SEGMENTS)):
        got = clip_indices(n, num_segments=s, seq_length=t, sample_rate=r, mode="train",
                           rng=np.random.default_rng(seed))
        want = reference(n, s, t, r, "train", rng=np.random.default_rng(seed))
        assert got == want, (n, t, r, s)


@pytest.mark.parametrize(("n", "s"), [(300, 1), (300, 3), (100, 4), (60, 3), (58, 1)])
def test_train_starts_stay_in_their_segment_and_cover_it(n, s):
    need = 57
    avg = (n - need + 1) // s
    rng = np.random.default_rng(123)
    seen = [set() for _ in range(s)]
    for _ in range(2000):
        starts = segment_starts(n, num_segments=s, seq_length=8, sample_rate=8, mode="train", rng=rng)
        for k, p in enumerate(starts):
            assert k * avg <= p < (k + 1) * avg
            seen[k].add(p)
    for k in range(s):
        assert seen[k] == set(range(k * avg, (k + 1) * avg)), "every start in the segment is reachable"


def test_train_single_segment_is_uniform_over_valid_starts():
    rng = np.random.default_rng(7)
    n = 80  # starts 0..23
    draws = [segment_starts(n, num_segments=1, seq_length=8, sample_rate=8, mode="train", rng=rng)[0]
             for _ in range(6000)]
    counts = np.bincount(draws, minlength=24)
    assert len(counts) == 24 and counts.min() > 150  # 250 expected each


def test_train_few_frames_many_segments_gives_sorted_starts():
    # 60 frames, 8x8, 10 segments: avg = 0 but 60 > 57, so 10 sorted draws in 0..3.
    rng = np.random.default_rng(5)
    for _ in range(200):
        starts = segment_starts(60, num_segments=10, seq_length=8, sample_rate=8, mode="train", rng=rng)
        assert starts == sorted(starts) and all(0 <= p <= 3 for p in starts)


def test_indices_never_pass_the_last_frame():
    rng = np.random.default_rng(1)
    for n, (t, r), s in itertools.product(FRAME_COUNTS, SHAPES, SEGMENTS):
        for mode in ("train", "val", "test"):
            clips = clip_indices(n, num_segments=s, seq_length=t, sample_rate=r, mode=mode,
                                 rng=rng if mode == "train" else None)
            assert len(clips) == s and all(len(c) == t for c in clips)
            assert all(0 <= i < n for c in clips for i in c)


def test_eval_boundary_frame_count():
    # Centred ticks only when frame_num > S + need - 1 (= 66 for S=10, 8x8).
    assert segment_starts(66, num_segments=10, seq_length=8, sample_rate=8, mode="val") == [0] * 10
    assert segment_starts(67, num_segments=10, seq_length=8, sample_rate=8, mode="val") == [
        0, 1, 2, 3, 4, 6, 7, 8, 9, 10,  # tick 1.1: int(0.55 + 1.1 s)
    ]


def test_test_views_enumerate_segments_then_crops():
    views = sampling.test_views(300, test_segments=10, test_crops=3, seq_length=8, sample_rate=8)
    assert len(views) == 30
    assert [(v.segment, v.crop) for v in views[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert views[0].indices == views[2].indices == tuple(range(12, 12 + 57, 8))
    assert views[3].indices[0] == 36


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "train"}, "pass rng"),
        ({"mode": "eval"}, "mode ('eval') must be one of train, val, test"),
        ({"mode": "val", "num_segments": 0}, "num_segments (0) must be >= 1"),
        ({"mode": "val", "num_frames": 0}, "num_frames (0) must be >= 1"),
    ],
)
def test_errors_name_the_parameter(kwargs, message):
    args = {"num_frames": 100, "num_segments": 1, "seq_length": 8, "sample_rate": 8} | kwargs
    n = args.pop("num_frames")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        clip_indices(n, **args)


def test_test_views_reject_unknown_crop_count():
    with pytest.raises(ValueError, match="test_crops"):
        sampling.test_views(100, test_segments=1, test_crops=5, seq_length=8, sample_rate=8)
