"""probe_video's frame count is what a full decode yields, whatever the container claims."""

from __future__ import annotations

import struct

import av
import pytest

from videoprep.errors import ProbeError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.probe import probe_video
from videoprep.synth import decode_all


def header_frames(path) -> int:
    """The frame count the container declares (0 when it declares none)."""
    with av.open(str(path)) as container:
        return container.streams.video[0].frames


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [
        ("h264_bframes.mp4", "h264", {"bframes": 2, "gop": 12}),
        ("h264.mov", "h264", {}),
        ("mpeg4.avi", "mpeg4", {}),
        ("mjpeg.avi", "mjpeg", {}),
        ("vp9.webm", "vp9", {}),
        ("vp8.webm", "vp8", {}),
        ("mpeg1.mpg", "mpeg1video", {}),
        ("hevc.mkv", "hevc", {}),
        ("h264.mkv", "h264", {}),
        ("vp8.ogv", "vp8", {}),
        ("mpeg4.m4v", "mpeg4", {}),
    ],
)
def test_frames_equal_full_decode(make_video, name, codec, options):
    path = make_video(name, codec=codec, num_frames=37, **options)
    info = probe_video(path)
    assert info.frames == len(decode_all(path)) == 37
    assert (info.width, info.height, info.codec) == (64, 48, codec)
    assert info.fps == pytest.approx(25)
    assert info.constant_frame_rate


def test_bframes_fixture_really_reorders(make_video):
    """The B-frame case is only a test if packets arrive out of presentation order."""
    path = make_video("b.mp4", codec="h264", num_frames=30, bframes=2, gop=12)
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert pts != sorted(pts)


@pytest.mark.parametrize(
    ("name", "codec"), [("vp9.webm", "vp9"), ("mpeg1.mpg", "mpeg1video"), ("vp8.ogv", "vp8")]
)
def test_frames_when_container_declares_none(make_video, name, codec):
    path = make_video(name, codec=codec, num_frames=41)
    assert header_frames(path) == 0
    assert probe_video(path).frames == len(decode_all(path)) == 41


def _patch_avi_frame_counts(path, value: int) -> None:
    """Overwrite avih.dwTotalFrames, strh.dwLength and dmlh.dwGrandFrames (the header counts)."""
    data = bytearray(path.read_bytes())
    offsets = {b"avih": 16, b"strh": 32, b"dmlh": 0}  # field offset inside each chunk's data
    patched = 0
    for tag, field_offset in offsets.items():
        at = data.find(tag)
        if at >= 0:
            struct.pack_into("<I", data, at + 8 + field_offset, value)
            patched += 1
    assert patched >= 2
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("codec", ["mpeg4", "mjpeg"])
def test_frames_when_avi_header_lies(make_video, codec):
    path = make_video(f"{codec}.avi", codec=codec, num_frames=33)
    _patch_avi_frame_counts(path, 999)
    assert header_frames(path) == 999
    assert probe_video(path).frames == len(decode_all(path)) == 33


@pytest.mark.parametrize("start_s", ["0.5", "0.9"])
def test_frames_of_edit_list_cut_skip_discarded_packets(make_video, tmp_path, start_s):
    """`ffmpeg -ss T -c copy` keeps the GOP before T and hides its head with an edit list."""
    source = make_video("src.mp4", codec="h264", num_frames=60, gop=12, bframes=2)
    cut = tmp_path / "cut.mp4"
    run_ffmpeg(["-y", "-ss", start_s, "-i", str(source), "-c", "copy", str(cut)], target=str(cut))
    decoded = len(decode_all(cut))
    with av.open(str(cut)) as container:
        discarded = sum(1 for p in container.demux(video=0) if p.size and p.is_discard)
    assert discarded > 0  # else this fixture does not test the edit list
    assert header_frames(cut) == decoded + discarded
    assert probe_video(cut).frames == decoded


def test_probe_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ProbeError, match="empty file"):
        probe_video(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 50)
    with pytest.raises(ProbeError, match="cannot open") as err:
        probe_video(junk)
    assert err.value.path == str(junk)
    with pytest.raises(ProbeError, match="cannot stat"):
        probe_video(tmp_path / "absent.mp4")
