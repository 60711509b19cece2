"""Lintel's contract on our PyAV core: exact frames on every codec, seek or not, clear errors."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import pipelines.decode.rgb as rgb_mod
import videoprep.decode.core as core_mod
from pipelines.lintel import (
    DecodeError,
    FrameIndexError,
    frames_from_buffer,
    loadvid,
    loadvid_frame_nums,
    native_lintel,
)
from videoprep.decode import set_decoder_threads
from videoprep.synth import decode_all

NUM_FRAMES = 40

# (file name, write_video options): B-frames on H.264 and MPEG-4, VP9 in webm, intra-only MJPEG,
# and a raw H.264 stream without timestamps.
CODECS = {
    "h264": ("h264.mp4", {"codec": "h264", "gop": 12, "bframes": 2}),
    "vp9": ("vp9.webm", {"codec": "vp9", "gop": 10}),
    "mjpeg": ("mjpeg.avi", {"codec": "mjpeg"}),
    "mpeg4": ("mpeg4.avi", {"codec": "mpeg4", "gop": 10, "bframes": 2}),
    # A raw H.264 stream has no timestamps: the seek path must step aside, not guess.
    "h264-raw": ("raw.h264", {"codec": "h264", "gop": 10, "bframes": 2}),
}

INDEX_SETS = [[0], [3, 7, 20, NUM_FRAMES - 1], [13, 14, 15], [25], list(range(NUM_FRAMES))]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[bytes, np.ndarray]]:
    """codec -> (encoded bytes, every frame of a full decode)."""
    from videoprep.synth import write_video

    root = tmp_path_factory.mktemp("lintel")
    out = {}
    for codec, (name, options) in CODECS.items():
        path = write_video(root / name, num_frames=NUM_FRAMES, width=64, height=48, **options)
        out[codec] = (path.read_bytes(), np.stack(decode_all(path)))
    return out


@pytest.mark.parametrize("should_seek", [False, True], ids=["no-seek", "seek"])
@pytest.mark.parametrize("codec", list(CODECS))
def test_frames_are_exact(videos, codec: str, should_seek: bool) -> None:
    encoded, reference = videos[codec]
    for nums in INDEX_SETS:
        buf, width, height = loadvid_frame_nums(encoded, frame_nums=nums, should_seek=should_seek)
        assert (width, height) == (64, 48)
        assert len(buf) == len(nums) * width * height * 3
        frames = frames_from_buffer(buf, num_frames=len(nums), width=width, height=height)
        np.testing.assert_array_equal(frames, reference[nums], err_msg=f"{codec} {nums}")


@pytest.mark.parametrize("codec", ["h264", "vp9", "mpeg4"])
def test_seek_path_is_taken_and_matches_no_seek(videos, codec: str, monkeypatch) -> None:
    """With should_seek the keyframe seek really serves the request (no silent fallback)."""
    encoded, _ = videos[codec]
    results: list[bool] = []
    original = core_mod.decode_from_keyframe

    def spy(*args):
        frames = original(*args)
        results.append(frames is not None)
        return frames

    monkeypatch.setattr(core_mod, "decode_from_keyframe", spy)
    nums = [21, 29, 37]
    seeking = loadvid_frame_nums(encoded, frame_nums=nums, should_seek=True)
    assert results == [True]
    assert seeking == loadvid_frame_nums(encoded, frame_nums=nums, should_seek=False)


def test_given_size_returns_buffer_only(videos) -> None:
    encoded, reference = videos["h264"]
    buf = loadvid_frame_nums(encoded, frame_nums=[1, 2], width=64, height=48)
    assert isinstance(buf, bytes)
    np.testing.assert_array_equal(frames_from_buffer(buf, num_frames=2, width=64, height=48), reference[[1, 2]])


def test_wrong_size_is_refused_not_resized(videos) -> None:
    encoded, _ = videos["h264"]
    with pytest.raises(DecodeError, match=r"width=32 height=24 given but the video is 64x48.*never resizes"):
        loadvid_frame_nums(encoded, frame_nums=[1], width=32, height=24)


@pytest.mark.parametrize(
    ("nums", "message"),
    [
        ([3, 3], r"strictly increasing .* got 3 then 3 at position 1"),
        ([5, 2], r"strictly increasing .* got 5 then 2 at position 1"),
        ([-1, 2], r"0-based, got -1"),
        ([], r"frame_nums is empty"),
    ],
)
def test_contract_errors(videos, nums: list[int], message: str) -> None:
    encoded, _ = videos["vp9"]
    with pytest.raises(FrameIndexError, match=message):
        loadvid_frame_nums(encoded, frame_nums=nums, name="clip.webm")


@pytest.mark.parametrize("should_seek", [False, True], ids=["no-seek", "seek"])
@pytest.mark.parametrize("codec", list(CODECS))
def test_index_past_end_is_an_error_not_a_loop(videos, codec: str, should_seek: bool) -> None:
    encoded, _ = videos[codec]
    with pytest.raises(FrameIndexError, match=rf"^clip: frame {NUM_FRAMES} requested but the video has only {NUM_FRAMES} frames"):
        loadvid_frame_nums(encoded, frame_nums=[5, NUM_FRAMES], should_seek=should_seek, name="clip")


def test_garbage_bytes_raise_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"^bad.mp4: cannot open"):
        loadvid_frame_nums(b"not a video at all" * 100, frame_nums=[0], name="bad.mp4")


def test_loadvid_consecutive_frames(videos) -> None:
    encoded, reference = videos["h264"]
    rng = np.random.default_rng(3)
    buf, width, height, seek_distance = loadvid(encoded, num_frames=8, rng=rng)
    frames = frames_from_buffer(buf, num_frames=8, width=width, height=height)
    start = round(seek_distance * NUM_FRAMES)
    assert 0 <= start <= NUM_FRAMES - 8
    np.testing.assert_array_equal(frames, reference[start : start + 8])
    buf, seek_distance = loadvid(encoded, should_random_seek=False, width=64, height=48, num_frames=50)
    frames = frames_from_buffer(buf, num_frames=50, width=64, height=48)
    assert seek_distance == 0.0
    np.testing.assert_array_equal(frames[:NUM_FRAMES], reference)
    np.testing.assert_array_equal(frames[NUM_FRAMES:], reference[[-1] * 10])  # repeats, never loops


def test_docstring_checker_named_lintel_is_not_taken_for_the_extension(tmp_path: Path, monkeypatch) -> None:
    """A package `lintel` without loadvid_frame_nums (the PyPI docstring checker) is ignored."""
    (tmp_path / "lintel").mkdir()
    (tmp_path / "lintel" / "__init__.py").write_text('"""A docstring checker."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lintel", raising=False)
    assert native_lintel() is None
    (tmp_path / "lintel" / "__init__.py").write_text("def loadvid_frame_nums(encoded, **kw):\n    return b''\n")
    monkeypatch.delitem(sys.modules, "lintel", raising=False)
    assert native_lintel() is not None


# ---------------------------------------------------------------- the "lintel" reader


@pytest.fixture(scope="module")
def video_files(tmp_path_factory) -> dict[str, Path]:
    from videoprep.synth import write_video

    root = tmp_path_factory.mktemp("lintel-reader")
    return {
        codec: write_video(root / name, num_frames=NUM_FRAMES, width=64, height=48, **options)
        for codec, (name, options) in CODECS.items()
    }


@pytest.mark.parametrize("codec", list(CODECS))
def test_reader_any_order_with_duplicates(videos, video_files, codec: str) -> None:
    from pipelines.backends import get_reader

    reader = get_reader("lintel")
    _, reference = videos[codec]
    wanted = [30, 2, 2, 39, 17, 30, 0]
    frames = reader.read(str(video_files[codec]), wanted)
    assert frames.shape == (len(wanted), 48, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, reference[wanted])
    assert reader.frame_count(str(video_files[codec])) == NUM_FRAMES
    no_seek = get_reader("lintel", should_seek=False).read(str(video_files[codec]), wanted)
    np.testing.assert_array_equal(no_seek, frames)
    in_order = reader.read(str(video_files[codec]), [5, 6])  # no reordering: still writable for torch
    assert in_order.flags.writeable
    np.testing.assert_array_equal(in_order, reference[[5, 6]])


def test_reader_reports_past_end_and_missing_file(video_files, tmp_path: Path) -> None:
    from pipelines.backends import get_reader

    reader = get_reader("lintel")
    path = str(video_files["h264"])
    with pytest.raises(FrameIndexError, match=rf"^{re.escape(path)}: frame 45 requested but the video has only 40"):
        reader.read(path, [3, 45])
    with pytest.raises(DecodeError, match=r"nope.mp4: cannot read"):
        reader.read(str(tmp_path / "nope.mp4"), [0])


def test_native_implementation_needs_the_real_extension(tmp_path: Path, monkeypatch) -> None:
    from pipelines.backends import get_reader

    (tmp_path / "lintel").mkdir()
    (tmp_path / "lintel" / "__init__.py").write_text('"""A docstring checker."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lintel", raising=False)
    with pytest.raises(DecodeError, match=r"needs the Lintel C extension .* use implementation 'ours'"):
        get_reader("lintel", implementation="native")
    with pytest.raises(ValueError, match=r"implementation \('fast'\) must be one of ours, native"):
        get_reader("lintel", implementation="fast")


def test_native_implementation_is_called_with_lintels_contract(
    videos, video_files, tmp_path: Path, monkeypatch
) -> None:
    """An extension module exposing Lintel's API is called with sorted unique indices and its result used.

    The stand-in extension records its calls and answers through our implementation
    (the real C extension cannot be built here); the reader code under test is the same.
    """
    from pipelines.backends import get_reader

    (tmp_path / "lintel").mkdir()
    (tmp_path / "lintel" / "__init__.py").write_text(
        "from pipelines.lintel import loadvid_frame_nums as _ours\n"
        "calls = []\n"
        "def loadvid_frame_nums(encoded, *, frame_nums, width=0, height=0, should_seek=False):\n"
        "    calls.append((list(frame_nums), width, height, should_seek))\n"
        "    buf, w, h = _ours(encoded, frame_nums=frame_nums, should_seek=should_seek)\n"
        "    return bytearray(buf), w, h\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lintel", raising=False)
    reader = get_reader("lintel", implementation="native")
    frames = reader.read(str(video_files["vp9"]), [9, 4, 9])
    np.testing.assert_array_equal(frames, videos["vp9"][1][[9, 4, 9]])
    assert sys.modules["lintel"].calls == [([4, 9], 0, 0, True)]
    with pytest.raises(FrameIndexError, match="frame 40 requested"):  # checked before Lintel would loop
        reader.read(str(video_files["vp9"]), [40])


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_single_threaded_decoders_start_no_threads_and_give_the_same_frames(videos, codec, monkeypatch) -> None:
    """What loader workers set: FFmpeg starts no decoder threads, and the frames do not change."""
    encoded, reference = videos[codec]
    threads_seen: list[int] = []
    original = rgb_mod.to_rgb

    def spy(frame):
        threads_seen.append(len(os.listdir("/proc/self/task")))  # OS threads of this process, mid-decode
        return original(frame)

    monkeypatch.setattr(rgb_mod, "to_rgb", spy)
    monkeypatch.setattr(core_mod, "_decoder_threads", core_mod.decoder_threads())  # restored after
    before = len(os.listdir("/proc/self/task"))
    set_decoder_threads(1)
    nums = [2, 17, 33]
    buf, width, height = loadvid_frame_nums(encoded, frame_nums=nums, should_seek=True)
    np.testing.assert_array_equal(frames_from_buffer(buf, num_frames=3, width=width, height=height), reference[nums])
    assert threads_seen and max(threads_seen) == before
    with pytest.raises(ValueError, match=r"count \(-1\) must be >= 0"):
        set_decoder_threads(-1)


def test_a_forked_child_decodes_after_the_parent_converted_frames(videos) -> None:
    """The parent's reused RGB converter (with swscale threads) must not hang a forked loader worker."""
    encoded, reference = videos["h264"]
    nums = [3, 11, 19]

    def frames() -> np.ndarray:
        buf, width, height = loadvid_frame_nums(encoded, frame_nums=nums, should_seek=True)
        return frames_from_buffer(buf, num_frames=len(nums), width=width, height=height)

    np.testing.assert_array_equal(frames(), reference[nums])  # the parent's converter now exists
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: decode, report, exit without running pytest's teardown
        code = 1
        try:
            code = 0 if np.array_equal(frames(), reference[nums]) else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    try:
        import select

        ready, _, _ = select.select([read_end], [], [], 20)
        assert ready, "the forked child hung converting frames"
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        os.kill(pid, 9) if not ready else None
        os.waitpid(pid, 0)
