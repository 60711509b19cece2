"""One pinned ffmpeg: PATH's is never run, the version is in the settings hash and the report, a re-run with
another ffmpeg says how many outputs the old one made and re-encodes them only when asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.videoprep.helpers import write_tree
from videoprep.ffmpeg import ffmpeg_exe, parse_version, select_ffmpeg
from videoprep.transcode import EncodeSettings

SOURCES = {f"train/{label}/{label}{i}.mp4": (64 + 16 * i, 48, 25, 10 + 3 * i)
           for label in ("a", "b") for i in range(2)}


def run_cli(args: list[str], *, code: int = 0, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == code, result.output
    return result


def tree_bytes(root: Path) -> dict[str, bytes]:
    """relpath -> bytes of every output file (video files and JPEG frames), the state folder left out."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".mp4", ".jpg")}


def test_the_version_banner_is_parsed():
    assert parse_version("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024") == "5.1.6-0+deb12u1"
    assert parse_version("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright") == "n9.0.2-17-g2a571b6068-20260930"
    assert parse_version("GNU coreutils 9.1") is None


def test_the_default_is_the_pinned_static_ffmpeg_not_paths(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.delenv("VIDEOPREP_FFMPEG", raising=False)
    ffmpeg_exe.cache_clear()
    try:
        assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    finally:
        ffmpeg_exe.cache_clear()
    assert select_ffmpeg().version.startswith("n9.")


@pytest.mark.parametrize("stage", ["transcode", "frames"])
def test_outputs_are_byte_identical_with_and_without_an_ffmpeg_on_path_and_with_j1_and_j2(
        stage, tmp_path, monkeypatch, path_ffmpeg_calls):
    src = write_tree(tmp_path / "src", SOURCES)
    guard_dir = str(path_ffmpeg_calls.parent)  # an ffmpeg and ffprobe that record their call and fail
    bare = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != guard_dir)
    with monkeypatch.context() as m:
        m.setenv("PATH", bare)  # no ffmpeg on PATH at all (this machine has none)
        run_cli([stage, str(src), str(tmp_path / "none"), "-j", "1"])
    run_cli([stage, str(src), str(tmp_path / "with"), "-j", "2"])  # the guard's ffmpeg first on PATH
    without, with_path = tree_bytes(tmp_path / "none"), tree_bytes(tmp_path / "with")
    assert len(without) >= len(SOURCES) and without == with_path
    assert path_ffmpeg_calls.read_text() == ""


def test_the_report_and_the_summary_line_name_the_ffmpeg(tmp_path):
    src = write_tree(tmp_path / "src", SOURCES)
    result = run_cli(["transcode", str(src), str(tmp_path / "out"), "-j", "2"])
    binary = select_ffmpeg()
    report = json.loads((tmp_path / "out" / "transcode_report.json").read_text())
    assert report["ffmpeg"] == {"path": binary.path, "version": binary.version}
    assert report["outputs_by_ffmpeg"] == {binary.version: len(SOURCES)}
    assert f"(ffmpeg {binary.version})" in result.output


def test_the_ffmpeg_version_enters_the_settings_hash(tmp_path):
    from videoprep.videotree import ffmpeg_digest

    digest = EncodeSettings().digest()
    assert ffmpeg_digest(digest, "5.1.6") != ffmpeg_digest(digest, "n9.0.2") != digest
    assert ffmpeg_digest(digest, None) == digest  # outputs from before the version was recorded


def other_ffmpeg(tmp_path: Path) -> Path:
    """The pinned ffmpeg behind another version banner: stands for an upgraded ffmpeg in the re-run test."""
    script = tmp_path / "other-ffmpeg"
    script.write_text(f'#!/bin/sh\nif [ "$1" = -version ]; then echo "ffmpeg version 0.0-other"; exit 0; fi\n'
                      f'exec "{select_ffmpeg().path}" "$@"\n')
    script.chmod(0o755)
    return script


def test_a_rerun_with_another_ffmpeg_counts_the_old_outputs_and_reencodes_them_only_when_asked(tmp_path, caplog):
    src = write_tree(tmp_path / "src", SOURCES)
    out = tmp_path / "out"
    run_cli(["transcode", str(src), str(out), "-j", "2", "--no-index"])
    other = other_ffmpeg(tmp_path)
    summary = tmp_path / "s.json"
    kept = run_cli(["transcode", str(src), str(out), "-j", "2", "--no-index", "--ffmpeg", str(other),
                    "--summary-json", str(summary)])
    said = caplog.text
    assert f"{len(SOURCES)} output(s)" in said and select_ffmpeg().version in said and "--reencode-other-ffmpeg" in said
    assert "(ffmpeg 0.0-other)" in kept.output
    assert json.loads(summary.read_text())["done"] == 0
    report = json.loads((out / "transcode_report.json").read_text())
    assert report["ffmpeg"]["version"] == "0.0-other"
    assert report["outputs_by_ffmpeg"] == {select_ffmpeg().version: len(SOURCES)}
    run_cli(["transcode", str(src), str(out), "-j", "2", "--no-index", "--reencode-other-ffmpeg",
             "--summary-json", str(summary)], env={"VIDEOPREP_FFMPEG": str(other)})
    assert json.loads(summary.read_text())["done"] == len(SOURCES)
    report = json.loads((out / "transcode_report.json").read_text())
    assert report["outputs_by_ffmpeg"] == {"0.0-other": len(SOURCES)}


@pytest.mark.parametrize("bad", ["/bin/true", "/no/such/ffmpeg", "README.md"])
@pytest.mark.parametrize("how", ["option", "env"])
def test_a_path_that_is_not_a_working_ffmpeg_is_one_line_and_exit_2(bad, how, tmp_path):
    src = write_tree(tmp_path / "src", {"train/a/x.mp4": (64, 48, 25, 8)})
    dst = tmp_path / "out"
    args = ["transcode", str(src), str(dst)] + (["--ffmpeg", bad] if how == "option" else [])
    result = run_cli(args, code=2, env={"VIDEOPREP_FFMPEG": bad} if how == "env" else None)
    assert "--ffmpeg" in result.output and bad in result.output and "Traceback" not in result.output
    assert not dst.exists()


def test_the_encoder_thread_count_is_a_fixed_setting(tmp_path):
    src = write_tree(tmp_path / "src", {"train/a/x.mp4": (64, 48, 25, 8)})
    result = run_cli(["transcode", str(src), str(tmp_path / "out"), "--threads", "0"], code=2)
    assert "--threads" in result.output
    assert EncodeSettings(threads=1).digest() != EncodeSettings(threads=2).digest()
