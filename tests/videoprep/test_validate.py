"""`videoprep validate` on real broken videos: one fixture per failure kind, report, quarantine, CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from videoprep.errors import VideoprepError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.probe import probe_video
from videoprep.synth import write_video
from videoprep.validate import (
    REPORT_COLUMNS,
    UNUSABLE,
    ValidateConfig,
    check_video,
    container_findings,
    finding_class,
    is_420,
    parse_reasons,
    run_validate,
)

FRAMES = 60  # every fixture is long enough for --min-frames 57 unless it tests that


def write_vfr(path: Path, *, num_frames: int = FRAMES) -> Path:
    """H.264 whose frames alternate 40 ms and 100 ms (explicit pts in a 1/1000 time base)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.options = {"preset": "ultrafast"}
        pts = 0
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i * 4 % 256, dtype=np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 40 if i % 2 else 100
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    """An MP4 holding one AAC stream and no video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def corrupt_packets(path: Path, *, first: int, last: int | None = None, skip_bytes: int = 8) -> Path:
    """Scramble the payload of video packets [first, last) in place (headers and index untouched)."""
    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in spans[first:last]:
        for k in range(pos + skip_bytes, pos + size):
            data[k] = (data[k] * 7 + 13) & 0xFF
    path.write_bytes(bytes(data))
    return path


def cut(path: Path, keep: int) -> Path:
    """Keep only the first `keep` bytes."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


@pytest.fixture(scope="module")
def broken_tree(tmp_path_factory) -> Path:
    """train/ with good videos and one of every failure kind; annotations list one clip that is absent."""
    root = tmp_path_factory.mktemp("validate") / "k400"
    t = root / "train"
    write_video(t / "aaaaaaaaaaa_000001_000011.mp4", num_frames=FRAMES, gop=10)
    write_video(t / "good_vp9.webm", num_frames=FRAMES, codec="vp9")
    write_video(t / "good_mjpeg_yuvj420p.avi", num_frames=FRAMES, codec="mjpeg")
    # MPEG-2 program stream with B-frames: its last frame comes out only when the decoder is drained.
    write_video(t / "good_mpeg2_ps.mpg", num_frames=FRAMES, codec="mpeg2video", gop=15, bframes=2)
    (t / "empty.mp4").write_bytes(b"")
    moov_at_end = write_video(t / "no_moov.mp4", num_frames=FRAMES)
    cut(moov_at_end, moov_at_end.read_bytes().rfind(b"moov") - 4)
    faststart = write_video(root / "src_faststart.mp4", num_frames=FRAMES)
    run_ffmpeg(
        ["-y", "-i", str(faststart), "-c", "copy", "-movflags", "+faststart", str(t / "truncated.mp4")],
        target="truncated.mp4",
    )
    faststart.unlink()
    cut(t / "truncated.mp4", (t / "truncated.mp4").stat().st_size * 2 // 3)
    webm = write_video(t / "truncated.webm", num_frames=FRAMES, codec="vp9")
    cut(webm, webm.stat().st_size * 2 // 3)
    avi = write_video(t / "truncated.avi", num_frames=FRAMES, codec="mpeg4")
    cut(avi, avi.stat().st_size * 2 // 3)
    write_audio_only(t / "audio_only.mp4")
    corrupt_packets(write_video(t / "undecodable.mp4", num_frames=FRAMES, gop=10), first=30)
    write_video(t / "short.mp4", num_frames=20)
    write_vfr(t / "vfr.mp4")
    write_video(t / "yuv444.mp4", num_frames=FRAMES, pix_fmt="yuv444p")
    write_video(t / "mjpeg422.avi", num_frames=FRAMES, codec="mjpeg", pix_fmt="yuvj422p")
    write_video(t / "odd.webm", num_frames=FRAMES, codec="vp9", width=65, height=49)
    (t / "junk.mkv").write_bytes(b"this is not a video" * 100)
    ann = root / "annotations"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,aaaaaaaaaaa,1,11,train,0\n"
        "abseiling,zzzzzzzzzzz,5,15,train,0\n"
    )
    return root


EXPECTED = {
    "train/empty.mp4": "empty",
    "train/no_moov.mp4": "moov_missing",
    "train/truncated.mp4": "truncated",
    "train/truncated.webm": "truncated",
    "train/truncated.avi": "truncated",
    "train/audio_only.mp4": "no_video_stream",
    "train/junk.mkv": "unreadable",
    "train/undecodable.mp4": "undecodable",
    "train/short.mp4": "too_short",
    "train/vfr.mp4": "variable_frame_rate",
    "train/yuv444.mp4": "not_420",
    "train/mjpeg422.avi": "not_420",
    "train/odd.webm": "odd_dimensions",
    "train/zzzzzzzzzzz_000005_000015": "missing",
}


@pytest.fixture(scope="module")
def quick_result(broken_tree, tmp_path_factory):
    report = tmp_path_factory.mktemp("reports") / "report.csv"
    return run_validate(ValidateConfig(video_root=broken_tree, report=report, jobs=2)), report


def test_every_failure_kind_found_with_one_primary_reason(quick_result):
    result, _ = quick_result
    assert result.checked == 17
    assert {b.relpath: b.reason for b in result.bad} == EXPECTED
    by = {b.relpath: b for b in result.bad}
    assert by["train/no_moov.mp4"].message == "moov atom not found"
    assert by["train/short.mp4"].message == "20 frames < --min-frames 57"
    assert by["train/odd.webm"].message == "65x49"
    assert "yuv444p" in by["train/yuv444.mp4"].message and "yuvj422p" in by["train/mjpeg422.avi"].message
    assert by["train/audio_only.mp4"].message == "streams: audio"
    assert by["train/undecodable.mp4"].message.startswith("frame ")
    # A truncated faststart MP4 also fails to decode its last frames: all reasons listed, primary first.
    assert by["train/truncated.mp4"].all_reasons.split(";")[0] == "truncated"
    assert "undecodable" in by["train/truncated.mp4"].all_reasons
    assert result.counts["truncated"] == 3 and result.counts["not_420"] == 2


def test_report_csv_has_one_row_per_bad_video(quick_result):
    result, report = quick_result
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert {r["relpath"]: r["reason"] for r in rows} == EXPECTED
    assert all(r["quarantined_to"] == "" for r in rows)


def test_full_mode_finds_a_single_bad_frame(tmp_path):
    video = write_video(tmp_path / "one_bad.mp4", num_frames=FRAMES, gop=10)
    corrupt_packets(video, first=20, last=21)
    full = check_video(video, full=True, min_frames=10)
    assert [f.reason for f in full.findings] == ["undecodable", "undecodable"]
    assert "packet(s) failed to decode; first at packet 20:" in full.findings[0].message
    assert "of 60 frames" in full.findings[1].message
    good = write_video(tmp_path / "good.mkv", num_frames=FRAMES, codec="hevc")
    assert check_video(good, full=True).findings == []


def test_quick_mode_decodes_first_and_last_frames(tmp_path):
    last_gop_bad = corrupt_packets(write_video(tmp_path / "tail.mp4", num_frames=FRAMES, gop=10), first=50)
    messages = [f.message for f in check_video(last_gop_bad, sample_frames=0).findings]
    assert messages and all(m.startswith("frame 59:") for m in messages)
    first_bad = corrupt_packets(
        write_video(tmp_path / "head.avi", num_frames=FRAMES, codec="mjpeg"), first=0, last=1
    )
    assert [f.message.split(":")[0] for f in check_video(first_bad, sample_frames=0).findings] == ["frame 0"]


@pytest.fixture(scope="module")
def gop_fixtures(tmp_path_factory) -> dict[str, Path]:
    """Long and short GOPs, with and without B-frames, clean and damaged in the tail or one middle GOP."""
    d = tmp_path_factory.mktemp("gops")
    b_frames = {"preset": "medium", "x264-params": "keyint=250:min-keyint=250:scenecut=0"}
    out = {
        "one_gop_b": write_video(d / "one_gop_b.mp4", num_frames=120, gop=250, options=b_frames),
        "one_gop": write_video(d / "one_gop.mp4", num_frames=120, gop=250),
        "mpeg2_ps": write_video(d / "mpeg2.mpg", num_frames=190, codec="mpeg2video", gop=15, bframes=2),
    }
    # A stream copy cut mid-GOP: an edit list discards the packets before the cut, which later frames refer to.
    whole = write_video(d / "whole.mp4", num_frames=120, gop=50, options={**b_frames, "x264-params": "keyint=50"})
    run_ffmpeg(["-y", "-ss", "1.3", "-i", str(whole), "-c", "copy", str(d / "copy_cut.mp4")], target="copy_cut.mp4")
    out["copy_cut"] = d / "copy_cut.mp4"
    out["one_gop_b_tail"] = corrupt_packets(write_video(d / "b_tail.mp4", num_frames=120, gop=250,
                                                        options=b_frames), first=115)
    out["one_gop_tail"] = corrupt_packets(write_video(d / "tail.mp4", num_frames=120, gop=250), first=117)
    out["middle_gop"] = corrupt_packets(write_video(d / "middle.mp4", num_frames=FRAMES, gop=10), first=30, last=40)
    return out


def test_quick_mode_catches_damaged_tails_and_middle_gops(gop_fixtures):
    for name in ("one_gop_b", "one_gop", "mpeg2_ps", "copy_cut"):
        assert check_video(gop_fixtures[name], min_frames=10).findings == [], name
        assert check_video(gop_fixtures[name], min_frames=10, full=True).findings == [], name
    for name in ("one_gop_b_tail", "one_gop_tail", "middle_gop"):
        found = check_video(gop_fixtures[name], min_frames=10, sample_frames=0).findings
        assert found and {f.reason for f in found} == {"undecodable"}, name


def test_quick_mode_never_reports_what_full_passes(broken_tree, gop_fixtures):
    videos = [p for p in broken_tree.rglob("*") if p.is_file() and p.parent.name == "train"]
    videos += gop_fixtures.values()
    for video in videos:
        full = check_video(video, full=True, min_frames=10)
        if not full.findings:
            for seed in range(3):
                assert check_video(video, min_frames=10, seed=seed).findings == [], video
        else:
            assert check_video(video, min_frames=10).findings, video  # and catches what --full catches


def test_container_findings_and_pixel_formats(tmp_path):
    good = write_video(tmp_path / "g.mp4", num_frames=10)
    assert container_findings(good) == []
    moov_at = good.read_bytes().rfind(b"moov") - 4
    assert [f.reason for f in container_findings(cut(good, good.stat().st_size - 100))] == ["truncated"]
    assert [f.reason for f in container_findings(cut(good, moov_at))] == ["moov_missing"]
    mkv = write_video(tmp_path / "g.mkv", num_frames=10)
    assert container_findings(mkv) == []
    assert [f.reason for f in container_findings(cut(mkv, mkv.stat().st_size - 1))] == ["truncated"]
    assert all(is_420(p) for p in ("yuv420p", "yuvj420p", "nv12", "yuv420p10le"))
    assert not any(is_420(p) for p in ("yuv444p", "yuvj422p", "yuv422p", "gray", "rgb24", "no_such_format"))


def test_time_limit_costs_only_the_slow_file(tmp_path):
    """An MPEG-PS file with a 1 GiB sparse zero tail makes the demuxer scan for a long time."""
    root = tmp_path / "root"
    write_video(root / "fine.mp4", num_frames=FRAMES)
    slow = write_video(root / "slow.mpg", num_frames=FRAMES, codec="mpeg1video")
    os.truncate(slow, 1 << 30)  # sparse: no disk used
    result = run_validate(ValidateConfig(video_root=root, jobs=2, timeout_s=1.0))
    assert [(b.relpath, b.reason) for b in result.bad] == [("slow.mpg", "check_failed")]
    assert "timed out after 1 s" in result.bad[0].message


def test_quarantine_moves_bad_files_and_json_report(broken_tree, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(broken_tree, root)
    (root / "train" / "quarantine_clash").mkdir()
    quarantine = root / "_quarantine"  # inside the root: skipped by later runs
    dest_clash = quarantine / "train" / "short.mp4"
    dest_clash.parent.mkdir(parents=True)
    dest_clash.write_bytes(b"an earlier quarantined file")
    report = tmp_path / "report.json"
    result = run_validate(ValidateConfig(video_root=root, quarantine=quarantine, report=report, jobs=2))
    moved = {b.relpath: b.quarantined_to for b in result.bad if b.quarantined_to}
    unusable = {rel for rel, reason in EXPECTED.items() if reason in UNUSABLE}
    assert set(moved) == unusable - {"train/zzzzzzzzzzz_000005_000015"}  # by default: only unusable ones
    for rel, dest in moved.items():
        assert not (root / rel).exists() and Path(dest).exists()
    assert (root / "train" / "vfr.mp4").exists() and (root / "train" / "short.mp4").exists()

    data = json.loads(report.read_text())
    assert data["checked"] == 17 and data["bad_count"] == len(EXPECTED)
    assert {r["relpath"]: (r["reason"], r["finding_class"]) for r in data["bad"]} == {
        rel: (reason, finding_class(reason)) for rel, reason in EXPECTED.items()
    }
    assert data["counts"]["truncated"] == 3
    assert data["class_counts"] == {"unusable": 9, "fixable": 4, "too_short": 1}

    wider = parse_reasons("fixable,too_short")
    again = run_validate(ValidateConfig(video_root=root, quarantine=quarantine, quarantine_reasons=wider, jobs=2))
    moved = {b.relpath: b.quarantined_to for b in again.bad if b.quarantined_to}
    assert set(moved) == {"train/short.mp4", "train/vfr.mp4", "train/yuv444.mp4", "train/mjpeg422.avi",
                          "train/odd.webm"}
    assert moved["train/short.mp4"] == str(quarantine / "train" / "short.mp4.1")
    assert dest_clash.read_bytes() == b"an earlier quarantined file"  # never overwritten
    assert probe_video(quarantine / "train" / "yuv444.mp4").pix_fmt == "yuv444p"

    last = run_validate(ValidateConfig(video_root=root, quarantine=quarantine, jobs=2))
    assert [b.reason for b in last.bad] == ["missing"] and last.checked == 4


def test_finding_classes_and_empty_class_warning(tmp_path, caplog):
    assert [finding_class(r) for r in ("truncated", "missing", "not_420", "too_short")] == [
        "unusable", "unusable", "fixable", "too_short"]
    assert parse_reasons("unusable") == UNUSABLE
    assert parse_reasons("too_short, not_420") == {"too_short", "not_420"}
    with pytest.raises(VideoprepError, match="reason 'vfr' is unknown"):
        parse_reasons("vfr")
    root = tmp_path / "root"
    write_video(root / "train" / "cats" / "good.mp4", num_frames=FRAMES)
    (root / "train" / "dogs").mkdir(parents=True)
    (root / "train" / "dogs" / "broken.mp4").write_bytes(b"")
    write_video(root / "train" / "owls" / "short.mp4", num_frames=20)  # too short, but transcode keeps it
    result = run_validate(ValidateConfig(video_root=root, jobs=1))
    assert result.classes_without_usable == ["dogs"]
    assert "class 'dogs' has no usable training video left" in caplog.text


def test_bad_config_values_are_refused(tmp_path):
    with pytest.raises(VideoprepError, match=r"supported values are \.csv, \.json"):
        ValidateConfig(video_root=tmp_path, report=tmp_path / "r.txt")
    with pytest.raises(VideoprepError, match=r"min_frames \(0\) must be >= 1"):
        ValidateConfig(video_root=tmp_path, min_frames=0)


def test_cli_validate(broken_tree, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["validate", str(broken_tree), "-j", "2", "--report", str(tmp_path / "r.json")])
    assert bad.exit_code == 1
    assert "9 unusable video(s) found" in bad.output
    assert "moov_missing" in bad.stderr and "train/odd.webm: odd_dimensions (fixable): 65x49" in bad.stderr
    assert json.loads((tmp_path / "r.json").read_text())["bad_count"] == len(EXPECTED)

    allowed = runner.invoke(
        cli, ["validate", str(broken_tree), "-j", "2", "--allow-bad", "--min-frames", "10"]
    )
    assert allowed.exit_code == 0
    assert "train/short.mp4" not in allowed.stderr  # 20 frames pass --min-frames 10

    clean = tmp_path / "clean"
    write_video(clean / "a" / "x.mp4", num_frames=FRAMES)
    write_video(clean / "a" / "short.mp4", num_frames=20)
    only_short = runner.invoke(cli, ["validate", str(clean)])
    assert only_short.exit_code == 0 and "short.mp4: too_short (too_short)" in only_short.stderr
    strict = runner.invoke(cli, ["validate", str(clean), "--strict"])
    assert strict.exit_code == 1 and "1 bad video(s) found" in strict.output
    wrong = runner.invoke(cli, ["validate", str(clean), "--quarantine-reasons", "vfr"])
    assert wrong.exit_code == 2 and "--quarantine-reasons" in wrong.output
    (clean / "a" / "short.mp4").unlink()
    ok = runner.invoke(cli, ["validate", str(clean), "--full"])
    assert ok.exit_code == 0 and "checked 1 videos: 0 bad" in ok.stderr

    wrong_ext = runner.invoke(cli, ["validate", str(clean), "--report", str(tmp_path / "r.txt")])
    assert wrong_ext.exit_code == 1 and "supported values are .csv, .json" in wrong_ext.output
    assert runner.invoke(cli, ["validate", str(clean), "--min-frames", "0"]).exit_code == 2
