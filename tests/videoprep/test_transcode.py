"""videoprep transcode: outputs verified by probing, safe names, failures, resume, interruption, Ray."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from tests.races import signal_mid_run
from tests.videoprep.helpers import live_pids, wait_until, write_tree
from tests.videoprep.httpfaults import make_kinetics_folder
from videoprep.errors import VideoprepError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.index import IndexConfig, read_manifest, run_index
from videoprep.probe import VideoInfo, probe_video
from videoprep.records import read_class_map, read_list
from videoprep.synth import write_video
from videoprep.transcode import (
    CODECS,
    EncodeSettings,
    TranscodeConfig,
    check_output,
    output_rate,
    plan_outputs,
    read_mapping,
    run_transcode,
    scaled_size,
)

REPO = Path(__file__).resolve().parents[2]

# --- pure rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "short_side", "expected"),
    [
        ((1280, 720), 256, (456, 256)),  # 455.1 -> nearest even
        ((720, 1280), 256, (256, 456)),
        ((640, 480), 256, (342, 256)),  # 341.3 -> 342
        ((256, 256), 128, (128, 128)),
        ((64, 48), 32, (42, 32)),
        ((100, 40), 256, (640, 256)),  # upscales: every output has the same short side
    ],
)
def test_scaled_size_keeps_aspect_with_even_sides(size, short_side, expected):
    assert scaled_size(*size, short_side=short_side) == expected
    assert all(side % 2 == 0 for side in expected)


def test_output_rate_recovers_ntsc_fraction_and_honours_override():
    assert output_rate(None, 29.97003) == Fraction(30000, 1001)
    assert output_rate(None, 25.0) == Fraction(25)
    assert output_rate(12.0, 29.97003) == Fraction(12)
    with pytest.raises(VideoprepError, match="frame rate"):
        output_rate(None, 0.0)


def test_plan_outputs_makes_every_name_safe_and_unique():
    plan = plan_outputs(
        ["train/passing American football (in game)/a b.mp4", "train/x/a_b.mkv", "train/x/a b.mp4", "val/ok.avi"],
        suffix=".mp4",
    )
    assert plan["train/passing American football (in game)/a b.mp4"] == (
        "train/passing_American_football_in_game/a_b.mp4"
    )
    assert plan["val/ok.avi"] == "val/ok.mp4"
    collided = [plan["train/x/a_b.mkv"], plan["train/x/a b.mp4"]]
    assert len(set(collided)) == 2 and all(p.startswith("train/x/a_b-") for p in collided)
    assert all(not any(ch.isspace() or ch in "()'\"$&;" for ch in out) for out in plan.values())
    # names do not depend on which other files exist
    assert plan_outputs(["train/x/a b.mp4"], suffix=".webm") == {"train/x/a b.mp4": "train/x/a_b.webm"}


def _info(**overrides) -> VideoInfo:
    base = dict(path="x.mp4", size_bytes=1, frames=40, fps=25.0, duration_s=1.6, width=42, height=32,
                codec="h264", pix_fmt="yuv420p", constant_frame_rate=True, keyframes=5, max_gop=8)
    return VideoInfo(**{**base, **overrides})


def test_check_output_names_each_mismatch():
    settings = EncodeSettings(codec="h264", gop=8, short_side=32)
    assert check_output(_info(), settings=settings, width=42, height=32) == []
    problems = check_output(
        _info(codec="mpeg4", pix_fmt="yuv444p", width=40, constant_frame_rate=False, keyframes=2, max_gop=30),
        settings=settings, width=42, height=32,
    )
    assert len(problems) == 5
    assert any("keyframes" in p for p in problems)
    mjpeg = EncodeSettings(codec="mjpeg")
    assert check_output(_info(codec="mjpeg", pix_fmt="yuvj420p", keyframes=40, max_gop=1),
                        settings=mjpeg, width=42, height=32) == []


def test_settings_reject_bad_values_with_the_rule():
    with pytest.raises(VideoprepError, match=r"short_side \(255\) must be an even number"):
        EncodeSettings(short_side=255)
    with pytest.raises(VideoprepError, match="codec 'hevc' is not one of: h264, mjpeg, vp9"):
        EncodeSettings(codec="hevc")  # type: ignore[arg-type]
    assert EncodeSettings(crf=20).digest() != EncodeSettings(crf=21).digest()
    with pytest.raises(VideoprepError, match="tune 'fast' is not one of: fastdecode"):
        EncodeSettings(tune="fast")
    with pytest.raises(VideoprepError, match=r"tune \(fastdecode\) is an x264 option; codec vp9 has none"):
        EncodeSettings(codec="vp9", tune="fastdecode")
    # h264 gets fastdecode unless told otherwise; other codecs get no tune
    assert EncodeSettings().tune == "fastdecode" and EncodeSettings(codec="vp9").tune is None
    assert EncodeSettings(tune=None).tune is None
    assert EncodeSettings(tune=None).digest() != EncodeSettings().digest()


# --- real transcodes --------------------------------------------------------------------

SOURCES = {
    # relpath: (width, height, fps, frames)
    "train/class a/clip 1.mp4": (64, 48, 25, 40),
    "train/class a/clip2.mp4": (48, 64, 30, 27),
    "train/b(x)/it's.mp4": (80, 48, 24, 33),
}


@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    """Class-folder tree with whitespace and shell-hostile names, mixed rates and orientations."""
    return write_tree(tmp_path / "src", SOURCES)


def _outputs(dst: Path) -> dict[str, dict[str, str]]:
    return {row["source"]: row for row in read_mapping(dst / "mapping.csv")}


@pytest.mark.parametrize("codec", list(CODECS))
def test_each_codec_probes_as_requested_and_matches_the_index(src_tree, tmp_path, codec):
    dst = tmp_path / f"out-{codec}"
    gop = 8
    result = run_transcode(TranscodeConfig(
        src=src_tree, dst=dst, settings=EncodeSettings(codec=codec, short_side=32, gop=gop), jobs=2,
    ))
    assert result.ok and result.transcoded == len(SOURCES)
    rows = _outputs(dst)
    assert set(rows) == set(SOURCES)
    listed = {rec.path: rec for rec in read_list(result.index.lists["train"], root=dst, check_files=True)}
    assert len(listed) == len(SOURCES)
    for rel, (w, h, fps, n) in SOURCES.items():
        out = rows[rel]["output"]
        assert rows[rel]["label"] == rel.split("/")[1]
        assert out.endswith(CODECS[codec].suffix)
        assert not any(ch.isspace() or ch in "()'" for ch in out)
        info = probe_video(dst / out)
        assert info.codec == codec
        assert info.pix_fmt == CODECS[codec].pix_fmt
        assert (info.width, info.height) == scaled_size(w, h, short_side=32)
        assert info.constant_frame_rate
        assert info.fps == pytest.approx(fps, rel=1e-3)
        assert info.frames == n  # constant-rate source at its own rate: every frame kept
        if codec == "mjpeg":
            assert info.max_gop == 1 and info.keyframes == n
        else:
            assert info.max_gop == gop and info.keyframes == math.ceil(n / gop)
        assert listed[out].frame_num == info.frames
        if CODECS[codec].muxer == "mp4":  # moov atom before the media data: streamable, cheap to open
            head = (dst / out).read_bytes()
            assert head.find(b"moov") < head.find(b"mdat")


def _labels(list_file: Path, classes_file: Path) -> dict[str, str]:
    """Listed path -> class name, as a loader would read them."""
    classes = read_class_map(classes_file)
    return {rec.path: classes[rec.label] for rec in read_list(list_file, num_classes=len(classes))}


def test_lists_keep_the_source_class_names_and_label_indices(tmp_path):
    # Safe folder names sort the other way round ("b_a" < "b_x" but "b x" < "b_a"), and two
    # clips land on one safe name (both get a hash): labels must still follow the source.
    src = tmp_path / "src"
    for i, rel in enumerate(["train/b x/c 1.mp4", "train/b x/c_1.mp4", "train/b_a/v.mp4", "val/b_a/w.mp4"]):
        write_video(src / rel, num_frames=6, width=32, height=24, fps=10, seed=i)
    source = run_index(IndexConfig(video_root=src, out_dir=tmp_path / "src_lists", jobs=1))
    dst = tmp_path / "dst"
    result = run_transcode(TranscodeConfig(src=src, dst=dst, settings=EncodeSettings(short_side=16), jobs=2))
    assert result.ok
    assert read_class_map(result.index.classes_path) == read_class_map(source.classes_path) == ["b x", "b_a"]
    outputs = _outputs(dst)
    want = {(row["split"], outputs[row["relpath"]]["output"]): (row["label"], int(row["label_index"]))
            for row in read_manifest(source.manifest_path)}
    got = {}
    for split, list_file in result.index.lists.items():
        classes = read_class_map(result.index.classes_path)
        got.update({(split, rec.path): (classes[rec.label], rec.label) for rec in read_list(list_file)})
    assert got == want and len(got) == 4


def test_flat_cvdf_source_with_annotations_comes_out_labelled(tmp_path):
    made = make_kinetics_folder(tmp_path / "k", per_class={"train": 1, "val": 1}, test_count=1, num_frames=6)
    dst = tmp_path / "dst"
    result = run_transcode(TranscodeConfig(
        src=tmp_path / "k" / "videos", dst=dst, annotations=tmp_path / "k" / "annotations",
        settings=EncodeSettings(short_side=16), jobs=2,
    ))
    assert result.ok and result.transcoded == 5
    classes = read_class_map(result.index.classes_path)
    assert classes == sorted(c.label for c in made["train"])
    for split in ("train", "val"):
        labels = _labels(result.index.lists[split], result.index.classes_path)
        assert labels == {f"{split}/{c.clip_id}.mp4": c.label for c in made[split]}
    assert result.index.counts["test"].unlabelled == 1  # the test split has no labels to keep
    # the annotations travel with the videos: DST alone indexes to the same lists
    assert sorted(p.name for p in (dst / "annotations").iterdir()) == ["test.csv", "train.csv", "val.csv"]
    again = run_index(IndexConfig(video_root=dst, out_dir=tmp_path / "again", jobs=1))
    for split, path in result.index.lists.items():
        assert again.lists[split].read_text() == path.read_text()


def test_fastdecode_is_the_h264_default_and_tune_none_turns_it_off(tmp_path):
    src = write_tree(tmp_path / "src", {"c/v.mp4": (64, 48, 25, 8)})
    runner = CliRunner()
    for tune, dst in [("none", tmp_path / "plain"), (None, tmp_path / "fast")]:
        args = ["transcode", str(src), str(dst), "--short-side", "32", "-j", "1", "--no-index"]
        result = runner.invoke(cli, [*args, "--tune", tune] if tune else args)
        assert result.exit_code == 0, result.output
    # x264 writes its settings into the stream: fastdecode turns CABAC and the deblocking filter off
    plain, fast = (p.read_bytes() for p in (tmp_path / "plain" / "c" / "v.mp4", tmp_path / "fast" / "c" / "v.mp4"))
    assert b" cabac=1 " in plain and b" deblock=1:" in plain
    assert b" cabac=0 " in fast and b" deblock=0:" in fast


def test_fps_option_resamples_to_a_constant_rate(tmp_path):
    src = tmp_path / "src"
    write_video(src / "a" / "v.mp4", num_frames=48, width=64, height=48, fps=24)
    dst = tmp_path / "dst"
    result = run_transcode(TranscodeConfig(
        src=src, dst=dst, settings=EncodeSettings(short_side=32, fps=12, gop=4), jobs=1, index=False,
    ))
    assert result.ok and result.index is None
    info = probe_video(dst / "a" / "v.mp4")
    assert info.fps == pytest.approx(12) and info.constant_frame_rate
    assert info.frames == 24
    assert not (dst / "lists").exists()


def test_a_full_range_mjpeg_source_becomes_limited_range_yuv420p(tmp_path):
    """yuvj420p (full-range) MJPEG in AVI: the H.264 and VP9 outputs are the yuv420p they promise, not yuvj420p."""
    src = tmp_path / "src"
    write_video(src / "a" / "cam.avi", codec="mjpeg", num_frames=12, width=64, height=48, fps=12)
    assert probe_video(src / "a" / "cam.avi").pix_fmt == "yuvj420p"
    for codec in ("h264", "vp9", "mjpeg"):
        dst = tmp_path / f"dst-{codec}"
        result = run_transcode(TranscodeConfig(src=src, dst=dst, settings=EncodeSettings(codec=codec, short_side=32),
                                               jobs=1, index=False))
        assert result.ok, result.failures
        [out] = list(dst.rglob("cam.*"))
        assert probe_video(out).pix_fmt == ("yuvj420p" if codec == "mjpeg" else "yuv420p")


def _scramble_payload(path: Path) -> None:
    """Overwrite the mdat payload with noise: the container still demuxes, nothing decodes."""
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    end = at - 4 + int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : end] = np.random.default_rng(0).integers(0, 256, end - at - 4, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_audio_is_dropped_unless_kept(tmp_path):
    src = tmp_path / "src"
    (src / "c").mkdir(parents=True)
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
                "-t", "1", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(src / "c" / "a.mp4")], target="src")
    for keep, codec, expected in [(False, "h264", ["video"]), (True, "h264", ["video", "audio:aac"]),
                                  (True, "vp9", ["video", "audio:opus"])]:
        dst = tmp_path / f"dst-{keep}-{codec}"
        settings = EncodeSettings(codec=codec, short_side=32, keep_audio=keep)
        assert run_transcode(TranscodeConfig(src=src, dst=dst, settings=settings, jobs=1, index=False)).ok
        [out] = [p for p in dst.rglob("a.*")]
        with av.open(str(out)) as container:
            kinds = [s.type if s.type == "video" else f"{s.type}:{s.codec_context.name}" for s in container.streams]
        assert kinds == expected


def test_corrupt_inputs_are_recorded_and_the_rest_succeed(src_tree, tmp_path):
    (src_tree / "train" / "class a" / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    scrambled = write_video(src_tree / "train" / "b(x)" / "scrambled.mp4", num_frames=27, width=48, height=64)
    _scramble_payload(scrambled)
    assert probe_video(scrambled).frames == 27  # passes probing: only ffmpeg finds out
    dst = tmp_path / "dst"
    result = run_transcode(TranscodeConfig(src=src_tree, dst=dst, settings=EncodeSettings(short_side=32), jobs=2))
    assert result.transcoded == len(SOURCES)
    assert sorted(f.source for f in result.failures) == ["train/b(x)/scrambled.mp4", "train/class a/garbage.mp4"]
    report = json.loads(result.report_path.read_text())
    assert report["failed"] == 2 and report["done"] == len(SOURCES)
    errors = {f["source"]: f["error"] for f in report["failures"]}
    assert "cannot open: Invalid data" in errors["train/class a/garbage.mp4"]
    assert "ffmpeg exited with" in errors["train/b(x)/scrambled.mp4"]
    assert "Invalid NAL unit size" in errors["train/b(x)/scrambled.mp4"]  # ffmpeg's own words
    assert set(_outputs(dst)) == set(SOURCES)  # failures are not in the mapping ...
    assert not list(dst.rglob("garbage*")) and not list(dst.rglob("scrambled*"))  # ... nor on disk
    assert not [p for p in dst.rglob("*") if p.name.endswith(".part")]
    assert result.index.counts["train"].listed == len(SOURCES)


def test_rerun_skips_up_to_date_and_redoes_changed_sources_or_settings(src_tree, tmp_path):
    dst = tmp_path / "dst"
    settings = EncodeSettings(short_side=32)
    config = TranscodeConfig(src=src_tree, dst=dst, settings=settings, jobs=2, index=False)
    assert run_transcode(config).transcoded == 3
    again = run_transcode(config)
    assert (again.transcoded, again.skipped) == (0, 3)

    changed = src_tree / "train" / "class a" / "clip2.mp4"
    write_video(changed, num_frames=20, width=48, height=64, fps=30)
    out = dst / _outputs(dst)["train/class a/clip2.mp4"]["output"]
    third = run_transcode(config)
    assert (third.transcoded, third.skipped) == (1, 2)
    assert probe_video(out).frames == 20

    out.unlink()  # an output removed by hand is made again
    assert run_transcode(config).transcoded == 1

    other = TranscodeConfig(src=src_tree, dst=dst, settings=EncodeSettings(short_side=32, crf=30), jobs=2,
                            index=False)
    assert run_transcode(other).transcoded == 3


# SIGINT takes the same path as SIGTERM (both become KeyboardInterrupt in the parent), so it runs with the slow set.
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupted_run_leaves_no_ffmpeg_and_no_partial_output_then_resumes(tmp_path, sig):
    src = tmp_path / "src"
    for i in range(3):  # big enough, with a slow preset, that each encode runs for a while
        write_video(src / "c" / f"v {i}.mp4", num_frames=40, width=160, height=120, fps=25, seed=i)
    dst = tmp_path / "dst"
    cmd = [sys.executable, "-m", "cli", "transcode", str(src), str(dst), "-j", "2", "--short-side", "120",
           "--preset", "veryslow", "--no-index"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    signal_mid_run(proc, lambda: bool(live_pids("ffmpeg", str(dst))), what="transcode stopped while ffmpeg runs",
                   timeout_s=60, sig=sig)
    # after SIGKILL, orphaned pool workers take a moment to unwind (a generous deadline: a loaded machine)
    assert wait_until(lambda: not live_pids(str(dst)), timeout_s=30), live_pids(str(dst))
    assert live_pids("ffmpeg", str(dst)) == []  # pool workers and ffmpeg are gone

    finished = [p for p in dst.rglob("*.mp4") if not p.name.startswith(".")]
    for path in finished:  # anything with a final name is a whole, verified video
        assert probe_video(path).frames == 40
    assert len(finished) < 3, "the run was not interrupted mid-way"
    journal = dst / ".videoprep" / "transcode.jsonl"
    journaled = len(journal.read_text().splitlines()) if journal.exists() else 0

    settings = EncodeSettings(short_side=120, preset="veryslow")  # the same settings: a resume
    result = run_transcode(TranscodeConfig(src=src, dst=dst, settings=settings, jobs=2, index=False))
    assert result.ok and (result.transcoded, result.skipped) == (3 - journaled, journaled)
    assert not [p for p in dst.rglob("*") if p.name.endswith(".part")]
    assert sorted(p.name for p in dst.rglob("*.mp4")) == ["v_0.mp4", "v_1.mp4", "v_2.mp4"]
    assert all(probe_video(p).frames == 40 for p in dst.rglob("*.mp4"))


@pytest.mark.slow  # keeps DALI (its import, its threads) out of the default test process
@pytest.mark.parametrize("codec", ["mjpeg", "vp9"])
def test_dali_reads_mjpeg_and_vp9_outputs_on_cpu(tmp_path, codec):
    dali = pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn

    src = tmp_path / "src"
    write_video(src / "c" / "v.mp4", num_frames=24, width=80, height=48, fps=25)
    dst = tmp_path / "dst"
    assert run_transcode(TranscodeConfig(src=src, dst=dst, settings=EncodeSettings(codec=codec, short_side=32),
                                         jobs=1, index=False)).ok
    [out] = [p for p in dst.rglob("v.*")]

    @dali.pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.experimental.readers.video(filenames=[str(out)], sequence_length=8, device="cpu")

    p = pipe()
    p.build()
    (frames,) = p.run()
    assert np.array(frames[0]).shape == (8, 32, 54, 3)
