"""The one integrity check: odd but valid files pass, cut-short and damaged ones are refused, alike in every stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import imageio_ffmpeg
import pytest
from click.testing import CliRunner

from cli import cli
from videoprep.errors import (
    DamagedError,
    FFmpegTimeoutError,
    ProbeError,
    TimedOutError,
    TruncatedError,
    WorkerDiedError,
    failure_reason,
)
from videoprep.ffmpeg import run_ffmpeg
from videoprep.index import read_manifest
from videoprep.validate import check_integrity, require_intact

SOURCE = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4"]
# name -> ffmpeg arguments (between the source and the output) of the odd but valid files
GOOD = {
    "vfr.avi": ["-vf", r"select=lt(mod(n\,10)\,3)", "-fps_mode", "vfr", "-c:v", "mpeg4"],  # drop chunks
    "bframes_moov_end.mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],  # B-frames, edit list, moov last
    "faststart.mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    "fragmented.mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+frag_keyframe+empty_moov"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-b:v", "200k", "-g", "10"],
    "program.mpg": ["-c:v", "mpeg2video", "-f", "mpeg"],
    "stream.ts": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts"],
}


def ffmpeg(*args: str, target: Path) -> Path:
    """Run the pinned ffmpeg (imageio-ffmpeg's, never one on PATH)."""
    run_ffmpeg(["-y", *args, str(target)], target=str(target), exe=imageio_ffmpeg.get_ffmpeg_exe())
    return target


def cut(source: Path, target: Path, size: int) -> Path:
    target.write_bytes(source.read_bytes()[:size])
    return target


def patched(source: Path, target: Path, at: int, value: bytes) -> Path:
    """A copy of `source` with `value` written at offset `at` (negative: from the end)."""
    data = bytearray(source.read_bytes())
    at = at % len(data)
    data[at : at + len(value)] = value
    target.write_bytes(bytes(data))
    return target


def idx1_entry(path: Path, n: int) -> int:
    """The offset of entry `n` of an AVI's idx1."""
    return path.read_bytes().rindex(b"idx1") + 8 + 16 * n


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The odd but valid files, and cut-short and damaged copies of them (name -> path)."""
    root = tmp_path_factory.mktemp("integrity")
    out = {name: ffmpeg(*SOURCE, *args, target=root / name) for name, args in GOOD.items()}
    faststart, moov_end = out["faststart.mp4"], out["bframes_moov_end.mp4"]
    out["cut_faststart.mp4"] = cut(faststart, root / "cut_faststart.mp4", faststart.stat().st_size * 2 // 3)
    out["cut_moov_end.mp4"] = cut(moov_end, root / "cut_moov_end.mp4", moov_end.read_bytes().rfind(b"moov") - 4)
    for name in ("vfr.avi", "vp9.webm", "program.mpg"):
        size = out[name].stat().st_size
        out[f"cut_{name}"] = cut(out[name], root / f"cut_{name}", size * 2 // 3)
    ts, mpg, avi = out["stream.ts"], out["program.mpg"], out["vfr.avi"]
    out["cut_stream.ts"] = cut(ts, root / "cut_stream.ts", ts.stat().st_size - 100)  # ends inside a packet
    out["lost_sync.ts"] = patched(ts, root / "lost_sync.ts", 188 * 5, b"\0")
    middle_pack = mpg.read_bytes().index(b"\0\0\1\xba", mpg.stat().st_size // 2)
    out["lost_sync.mpg"] = patched(mpg, root / "lost_sync.mpg", middle_pack, b"\xff\xff\xff\xff")
    # an idx1 entry naming bytes past the end of the file, and one naming the wrong place inside it
    past_end = idx1_entry(avi, 2) + 12
    out["idx1_past_end.avi"] = patched(avi, root / "idx1_past_end.avi", past_end, (1 << 30).to_bytes(4, "little"))
    out["idx1_wrong_offset.avi"] = patched(avi, root / "idx1_wrong_offset.avi", idx1_entry(avi, 3) + 8, b"\0\0")
    return out


EXPECTED = {
    "cut_faststart.mp4": ("truncated", "truncated"),
    "cut_moov_end.mp4": ("truncated", "moov_missing"),
    "cut_vfr.avi": ("truncated", "truncated"),
    "cut_vp9.webm": ("truncated", "truncated"),
    "cut_program.mpg": ("truncated", "truncated"),
    "cut_stream.ts": ("truncated", "truncated"),
    "lost_sync.ts": ("damaged", "damaged"),
    "lost_sync.mpg": ("damaged", "damaged"),
    "idx1_past_end.avi": ("truncated", "truncated"),
}


def test_each_container_gets_its_verdict_from_its_structure(files):
    for name, path in files.items():
        integrity = check_integrity(path)
        verdict, reason = EXPECTED.get(name, ("intact", ""))
        assert (integrity.verdict, integrity.reason) == (verdict, reason), (name, integrity)
        assert integrity.container, name  # every one of these containers is checked
    with pytest.raises(TruncatedError, match="cut_vfr.avi: truncated: RIFF chunk"):
        require_intact(files["cut_vfr.avi"])
    with pytest.raises(TruncatedError, match="idx1_past_end.avi: truncated: idx1 entry 2 names 1073741824 bytes"):
        require_intact(files["idx1_past_end.avi"])
    with pytest.raises(DamagedError, match="lost_sync.mpg: damaged: program stream loses sync at offset"):
        require_intact(files["lost_sync.mpg"])


def decoded_frames(path: Path) -> tuple[int, int]:
    """(frames the container declares, frames a full decode yields)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.frames, sum(1 for _ in container.decode(stream))


def test_a_declared_frame_count_above_the_packets_is_not_a_refusal(files):
    """The AVI declares every slot of its variable frame rate; only 30 hold a frame, and all decode."""
    declared, decoded = decoded_frames(files["vfr.avi"])
    assert declared > decoded == 30
    assert check_integrity(files["vfr.avi"]).intact


def test_an_index_wrong_inside_the_file_is_not_a_refusal(files):
    """idx1 naming the wrong place: the chunks still hold every frame, and the decoder reads them all."""
    assert decoded_frames(files["idx1_wrong_offset.avi"]) == decoded_frames(files["vfr.avi"])
    assert check_integrity(files["idx1_wrong_offset.avi"]).intact


def test_failures_are_classified_by_type_through_one_table():
    assert failure_reason(TruncatedError("a.mp4", "cut")) == "truncated"
    assert failure_reason(DamagedError("a.mp4", "broken")) == "damaged"
    assert failure_reason(FFmpegTimeoutError("a.mp4", "ffmpeg ran too long")) == "timeout"
    assert failure_reason(TimedOutError("anything")) == "timeout"
    assert failure_reason(WorkerDiedError("anything")) == "worker_died"
    assert failure_reason(ProbeError("a.mp4", "timed out reading")) == "unreadable"  # the text never decides
    assert failure_reason(UnicodeEncodeError("utf-8", "x", 0, 1, "no")) == "bad_name"
    assert failure_reason(ValueError("truncated")) == "error"


def _tree(files: dict[str, Path], root: Path) -> Path:
    """Every file of `files` that a stage walks (not .ts) under root/train/<class>/."""
    for name, path in files.items():
        if path.suffix != ".ts":
            target = root / "train" / ("bad" if name in EXPECTED else "good") / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    return root


def _invoke(args: list[str], *, code: int = 1) -> None:
    result = CliRunner().invoke(cli, [*args, "-j", "2"], catch_exceptions=False)
    assert result.exit_code == code, result.output


def _refused_by_validate(out: Path, tree: Path) -> dict[str, str]:
    _invoke(["validate", str(tree), "--min-frames", "1", "--report", str(out / "report.json"),
             "--state-dir", str(out / "state")])
    rows = json.loads((out / "report.json").read_text())["bad"]
    unusable = ("truncated", "moov_missing", "damaged")
    return {Path(r["relpath"]).name: r["reason"] for r in rows if r["reason"] in unusable}


def _refused_by_index(out: Path, tree: Path) -> dict[str, str]:
    _invoke(["index", str(tree), "--out", str(out), "--summary-json", str(out / "summary.json")], code=0)
    rows = read_manifest(out / "manifest.csv")
    return {Path(r["relpath"]).name: r["reason"].split(":")[0] for r in rows if r["status"] == "error"}


def _refused_by(stage: str, out: Path, tree: Path) -> dict[str, str]:
    args = ["--short-side", "32"] + (["--gop", "4"] if stage == "transcode" else [])
    _invoke([stage, str(tree), str(out), *args])
    report = json.loads((out / f"{stage}_report.json").read_text())
    return {Path(f["source"]).name: f["reason"] for f in report["failures"]}


def test_validate_index_transcode_and_frames_give_each_file_the_same_verdict(files, tmp_path):
    tree = _tree(files, tmp_path / "src")
    bad = {name: reason for name, (_, reason) in EXPECTED.items() if not name.endswith(".ts")}
    classes = {name: verdict for name, (verdict, _) in EXPECTED.items() if not name.endswith(".ts")}
    assert _refused_by_validate(tmp_path / "validate", tree) == bad
    assert _refused_by_index(tmp_path / "index", tree) == classes
    for stage in ("transcode", "frames"):
        assert _refused_by(stage, tmp_path / stage, tree) == classes, stage
    summary = json.loads((tmp_path / "index" / "summary.json").read_text())
    assert summary["failed"] == {"truncated": 6, "damaged": 1}
    listed = {Path(r["relpath"]).name: r for r in read_manifest(tmp_path / "index" / "manifest.csv")}
    assert listed["vfr.avi"]["status"] == "ok" and int(listed["vfr.avi"]["frames"]) == 30
