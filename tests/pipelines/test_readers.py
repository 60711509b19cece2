"""Readers give the frames of a full decode at the asked indices; the registry names its readers."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import videoprep.decode.core as core_mod
import videoprep.decode.index as index_mod
from pipelines.backends import (
    READERS,
    DecodeError,
    FrameIndexError,
    VideoReader,
    get_reader,
    plan_indices,
    register_reader,
)
from pipelines.backends.frames import FramesReader, frame_path
from pipelines.backends.pyav import PyAVReader
from pipelines.decode import decode_indices
from videoprep.decode import h264_nonref_packets
from videoprep.ffmpeg import run_ffmpeg
from videoprep.probe import probe_video
from videoprep.synth import decode_all, pattern_frames, write_video

NUM_FRAMES = 60

# B-frames on H.264 (short and long GOP) and MPEG-4, VP9 in webm, intra-only MJPEG.
VIDEOS = {
    "h264-gop8": ("h264_g8.mp4", {"codec": "h264", "gop": 8, "bframes": 2}),
    "h264-gop250": ("h264_g250.mp4", {"codec": "h264", "gop": 250, "bframes": 3}),
    "mpeg4": ("mpeg4.avi", {"codec": "mpeg4", "gop": 12, "bframes": 2}),
    "mjpeg": ("mjpeg.avi", {"codec": "mjpeg"}),
    # An intra-only stream is read through the container's index (one seek per needed frame):
    # the sample table in mp4, idx1 in avi, the cues in mkv.
    "mjpeg-mp4": ("mjpeg.mp4", {"codec": "mjpeg"}),
    "mjpeg-mkv": ("mjpeg.mkv", {"codec": "mjpeg"}),
    "vp9": ("vp9.webm", {"codec": "vp9", "gop": 10}),
    "h264-mkv": ("h264.mkv", {"codec": "h264", "gop": 8, "bframes": 2}),
}

INDEX_SETS = {
    "first": [0],
    "middle-seek": [37, 38, 45],
    "last-frames": [57, 58, 59],
    "clamped-clip": [40, 48, 56, 59, 59, 59],
    "unordered-duplicates": [59, 3, 30, 3, 17, 59],
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (path, every frame of a full decode)."""
    root = tmp_path_factory.mktemp("readers")
    out = {}
    for name, (file, options) in VIDEOS.items():
        path = write_video(root / file, num_frames=NUM_FRAMES, width=96, height=72, **options)
        out[name] = (path, np.stack(decode_all(path)))
    return out


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory, videos) -> tuple[Path, np.ndarray]:
    """A JPEG frame directory (img_00000.jpg, ...) written from the H.264 video's frames."""
    root = tmp_path_factory.mktemp("frames") / "clip"
    root.mkdir()
    frames = videos["h264-gop8"][1][:40]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(frame_path(root, i), quality=95)
    return root, frames


@pytest.mark.parametrize("indices", list(INDEX_SETS.values()), ids=list(INDEX_SETS))
@pytest.mark.parametrize("video", list(VIDEOS))
def test_pyav_equals_full_decode(videos, video, indices):
    path, reference = videos[video]
    frames = PyAVReader().read(path, indices)
    assert frames.dtype == np.uint8 and frames.shape == (len(indices), 72, 96, 3)
    np.testing.assert_array_equal(frames, reference[indices])


@pytest.mark.parametrize("video", ["h264-gop8", "mjpeg", "vp9"])
def test_pyav_without_seek_gives_the_same_frames(videos, video):
    path, reference = videos[video]
    indices = [50, 10, 33]
    np.testing.assert_array_equal(PyAVReader(seek=False).read(path, indices), reference[indices])


@pytest.mark.parametrize("video", list(VIDEOS))
def test_pyav_index_past_the_end_is_an_error_naming_the_path(videos, video):
    path, _ = videos[video]
    with pytest.raises(FrameIndexError, match=r"frame 60 requested but the video has only 60 frames") as info:
        PyAVReader().read(path, [10, NUM_FRAMES])
    assert info.value.path == str(path)
    assert "frame_num" in str(info.value)


def write_vfr_video(path: Path, *, num_frames: int, seed: int = 0) -> Path:
    """H.264 with B-frames and irregular frame durations (10-120 ms): fps arithmetic would be wrong."""
    rng = np.random.default_rng(seed)
    ms = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 72, "yuv420p"
        stream.time_base = stream.codec_context.time_base = ms
        stream.options = {"preset": "ultrafast", "x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=2"}
        pts = 0
        for array in pattern_frames(num_frames, width=96, height=72, seed=seed):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = pts, ms
            pts += int(rng.choice([10, 33, 50, 120]))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_pyav_is_exact_on_variable_frame_rate(tmp_path, container):
    path = write_vfr_video(tmp_path / f"vfr.{container}", num_frames=50)
    assert not probe_video(path).constant_frame_rate
    reference = np.stack(decode_all(path))
    assert len(reference) == 50
    for indices in ([49, 0, 25], [30, 31, 32], [47, 48, 49], [5, 17]):
        np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])


def test_pyav_frame_count(videos):
    path, reference = videos["h264-gop8"]
    assert PyAVReader().frame_count(path) == len(reference) == NUM_FRAMES


def test_pyav_unreadable_files(tmp_path, videos):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DecodeError, match="garbage.mp4"):
        PyAVReader().read(garbage, [0])
    with pytest.raises(DecodeError, match="missing.mp4"):
        PyAVReader().read(tmp_path / "missing.mp4", [0])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(videos["h264-gop8"][0].read_bytes()[:2000])
    with pytest.raises(DecodeError, match="truncated.mp4"):
        PyAVReader().read(truncated, [0, 30])


def test_frames_reader_matches_pil_and_the_video(frame_dir):
    root, source = frame_dir
    indices = [39, 0, 12, 12, 25]
    frames = FramesReader().read(root, indices)
    assert frames.shape == (5, 72, 96, 3) and frames.dtype == np.uint8
    for got, i in zip(frames, indices, strict=True):
        with Image.open(root / f"img_{i:05d}.jpg") as img:
            np.testing.assert_array_equal(got, np.asarray(img.convert("RGB")))
        # 0-based naming: frame i of the directory is closest to frame i of the video (JPEG is lossy).
        errors = np.abs(source.astype(int) - got.astype(int)).mean(axis=(1, 2, 3))
        assert int(np.argmin(errors)) == i and errors[i] < 12


def test_frames_reader_errors(frame_dir, tmp_path):
    root, _ = frame_dir
    reader = FramesReader()
    assert reader.frame_count(root) == 40
    with pytest.raises(FrameIndexError, match="frame 40 requested but the directory has only 40 frames"):
        reader.read(root, [3, 40])
    with pytest.raises(DecodeError, match="frame directory not found"):
        reader.read(tmp_path / "nope", [0])
    gap = tmp_path / "gap"
    gap.mkdir()
    for i in (0, 2):
        Image.new("RGB", (8, 6)).save(frame_path(gap, i))
    with pytest.raises(DecodeError, match="img_00001.jpg is missing") as info:
        reader.read(gap, [0, 1])
    assert not isinstance(info.value, FrameIndexError)
    (gap / "img_00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DecodeError, match="cannot decode JPEG"):
        reader.read(gap, [1])


def test_registry_lists_names_and_builds_readers():
    assert {"pyav", "frames", "lintel"} <= set(READERS)
    assert isinstance(get_reader("pyav", seek=False), PyAVReader)
    assert isinstance(get_reader("frames"), VideoReader)
    with pytest.raises(ValueError, match=r"backend \('decord'\) must be one of: dali, frames, lintel, pyav, torchcodec; "
                       r"available here: .*pyav"):
        get_reader("decord")


def test_register_reader(monkeypatch):
    monkeypatch.setitem(READERS, "custom", READERS["frames"])
    assert isinstance(get_reader("custom"), FramesReader)
    register_reader("custom", PyAVReader)
    assert isinstance(get_reader("custom"), PyAVReader)


def test_plan_indices():
    unique, inverse = plan_indices([5, 1, 5, 3])
    assert unique == [1, 3, 5]
    assert [unique[i] for i in inverse] == [5, 1, 5, 3]
    with pytest.raises(ValueError, match="empty"):
        plan_indices([])
    with pytest.raises(ValueError, match=">= 0"):
        plan_indices([2, -1])


def _spy(monkeypatch, name: str) -> list[bool]:
    """Record whether each call of the decoding path `name` served the request (not None)."""
    served: list[bool] = []
    original = getattr(core_mod, name)

    def spy(*args):
        frames = original(*args)
        served.append(frames is not None)
        return frames

    monkeypatch.setattr(core_mod, name, spy)
    return served


@pytest.mark.parametrize("video", ["mjpeg-mp4", "mjpeg", "mjpeg-mkv"])
def test_mjpeg_is_read_through_the_container_index(videos, video, monkeypatch):
    """MP4 sample table, AVI idx1, MKV cues: each needed packet is reached by one seek, frames exact."""
    served = _spy(monkeypatch, "decode_intra_indexed")
    path, reference = videos[video]
    indices = [0, 9, 10, 33, 59]
    np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])
    assert served == [True]


def test_an_index_that_misses_frames_is_not_trusted(tmp_path, videos):
    """MKV cues with a gap wider than one frame (every other frame dropped from the cues) fall back to demuxing."""
    path, reference = videos["mjpeg-mkv"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        index = index_mod.sample_index(container, stream)
        assert index is not None and len(index) == NUM_FRAMES
        holey = index_mod.SampleIndex(index.format, index.timestamps[::2], index.positions[::2], index.sizes[::2])
        assert not index_mod.covers_stream(container, stream, holey)
    np.testing.assert_array_equal(PyAVReader().read(path, [1, 58]), reference[[1, 58]])


def test_a_clip_spanning_gops_decodes_from_the_keyframe_before_each_needed_frame(videos, monkeypatch):
    """Frames 1, 17, 33 of GOP 8: decoding jumps to keyframes 16 and 32 instead of running through."""
    served = _spy(monkeypatch, "decode_from_keyframe")
    fed: list[int] = []
    original = core_mod.h264_is_nonref  # asked once for every packet the decoder might be fed

    def counting(packet, *, length_size):
        fed.append(packet.pts)
        return original(packet, length_size=length_size)

    monkeypatch.setattr(core_mod, "h264_is_nonref", counting)
    path, reference = videos["h264-gop8"]
    indices = [1, 17, 33]
    np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])
    assert served == [True]
    with av.open(str(path)) as container:
        step = next(p.duration for p in container.demux(video=0) if p.duration)
    skipped_gops = {pts // step for pts in fed} & {*range(8, 16), *range(24, 32)}
    assert not skipped_gops  # the GOPs that hold no needed frame were never fed to the decoder


def test_inter_codec_demuxes_only_up_to_the_last_needed_frame(videos, monkeypatch):
    """An early clip must not demux the whole file, and must still be exact."""
    served = _spy(monkeypatch, "decode_from_keyframe")
    fed: list[int] = []
    original = index_mod.feeds_decoder

    def counting(packet):
        fed.append(1)
        return original(packet)

    monkeypatch.setattr(index_mod, "feeds_decoder", counting)
    path, reference = videos["h264-gop8"]
    indices = [9, 13, 17]
    np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])
    assert served == [True]
    assert len(fed) < 30  # 17 plus the decoder's reorder delay, not 60


@pytest.mark.parametrize("source", ["h264-gop8", "mjpeg-mp4", "h264-mkv"])
def test_first_timestamp_not_zero(tmp_path, videos, source):
    """A stream starting at pts 3 s (remuxed with an offset) gives the same frames at the same indices."""
    path, reference = videos[source]
    shifted = tmp_path / f"shifted{path.suffix}"
    run_ffmpeg(["-i", str(path), "-c", "copy", "-output_ts_offset", "3", "-y", str(shifted)], target=str(shifted))
    with av.open(str(shifted)) as container:
        first = next(p.pts for p in container.demux(video=0) if p.pts is not None)
        assert first * container.streams.video[0].time_base >= 2
    np.testing.assert_array_equal(np.stack(decode_all(shifted)), reference)
    for indices in ([0], [5, 6, 7], [20, 44, 59]):
        np.testing.assert_array_equal(PyAVReader().read(shifted, indices), reference[indices])


@pytest.mark.parametrize("video", ["h264-gop8", "h264-gop250", "h264-mkv"])
def test_unneeded_nonreference_h264_frames_are_skipped_and_the_rest_stay_exact(videos, video, monkeypatch):
    """Non-reference B-frames nobody asked for are not decoded; the frames delivered equal a full decode."""
    path, reference = videos[video]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        nonref = h264_nonref_packets(packets, stream.codec_context.extradata)
    assert len(nonref) >= 10  # the encoder's plain B-frames
    skipped: list[int] = []
    original = core_mod.h264_is_nonref

    def spy(packet, *, length_size):
        result = original(packet, length_size=length_size)
        if result:
            skipped.append(packet.pts)
        return result

    monkeypatch.setattr(core_mod, "h264_is_nonref", spy)
    for indices in ([21, 22, 23, 24], [30, 38, 46, 54], [59]):
        np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])
    assert skipped and set(skipped) <= nonref


@pytest.mark.parametrize("video", ["mjpeg-mp4", "mjpeg"])
def test_mjpeg_in_mp4_and_avi_reads_packets_straight_from_the_file(videos, video, monkeypatch):
    """MP4 sample tables and AVI idx1 give offsets and sizes: no FFmpeg seek per frame, frames exact."""

    def no_seek(*args):
        raise AssertionError("seek_entry called: the packets should be read from the file at the index's offsets")

    monkeypatch.setattr(core_mod, "seek_entry", no_seek)
    served = _spy(monkeypatch, "decode_intra_indexed")
    path, reference = videos[video]
    indices = [0, 9, 10, 33, 59]
    np.testing.assert_array_equal(PyAVReader().read(path, indices), reference[indices])
    np.testing.assert_array_equal(decode_indices(io.BytesIO(Path(path).read_bytes()), indices), reference[indices])
    assert served == [True, True]


def test_an_avi_index_entry_that_is_not_a_video_chunk_is_not_read():
    """read_entry checks the AVI chunk header ('..dc' and the indexed size) before it trusts an offset."""
    raw = io.BytesIO(b"JUNK" + (4).to_bytes(4, "little") + b"abcd" + b"00dc" + (3).to_bytes(4, "little") + b"xyz")
    index = index_mod.SampleIndex("avi", [0, 1, 2], [12, 0, 12], [3, 4, 4])
    assert bytes(index_mod.read_entry(raw, index, 0)) == b"xyz"
    assert index_mod.read_entry(raw, index, 1) is None  # a JUNK chunk, not video
    assert index_mod.read_entry(raw, index, 2) is None  # the chunk's size differs from the index's
