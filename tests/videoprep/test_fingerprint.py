"""Content fingerprints: equal bytes hash equal, a replaced clip does not, and `fingerprint` says which."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from videoprep.errors import PathError
from videoprep.fingerprint import (
    ClipRecord,
    HashingWriter,
    claimed_records,
    compare,
    content_fingerprint,
    hash_folder,
)


def make_copy(root: Path, clips: dict[str, bytes]) -> Path:
    """A flat CVDF-like copy: train/{id}.mp4 with the given bytes, plus a class-folder symlink view."""
    for clip_id, data in clips.items():
        path = root / "train" / f"{clip_id}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        link = root / "by_class" / "train" / "some class" / f"{clip_id}.mp4"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    (root / "train" / ".x.mp4.part").write_bytes(b"half")  # never a clip
    return root


CLIPS = {"aaa_000000_000010": b"first clip bytes", "bbb_000005_000015": b"second", "ccc_000001_000011": b"3"}


def test_hashing_writer_hashes_what_passes_through() -> None:
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    shutil.copyfileobj(io.BytesIO(b"x" * 300_000), writer, 65536)
    assert writer.result() == (300_000, hashlib.sha256(b"x" * 300_000).hexdigest())
    assert sink.getvalue() == b"x" * 300_000


def test_same_ids_different_bytes_differ(tmp_path: Path) -> None:
    a = hash_folder(make_copy(tmp_path / "a", CLIPS))
    assert sorted(r.id for r in a) == sorted(CLIPS)  # no .part file, no symlink counted twice
    b = hash_folder(make_copy(tmp_path / "b", {**CLIPS, "bbb_000005_000015": b"SECOND"}))  # same size
    assert content_fingerprint(a) != content_fingerprint(b)
    assert content_fingerprint(a) == content_fingerprint(list(reversed(a)))
    assert compare(a, b).different == ["bbb_000005_000015"] and not compare(a, a).different


def write_report(copy: Path) -> list[ClipRecord]:
    """A download report in `copy` holding the hashes of its files as they are now."""
    hashed = hash_folder(copy)
    (copy / "download_report.json").write_text(json.dumps(
        {"clips": [{"id": r.id, "size": r.size, "sha256": r.sha256} for r in hashed]}))
    return hashed


def test_report_clips_are_taken_without_reading_files_only_when_asked(tmp_path: Path) -> None:
    copy = make_copy(tmp_path / "a", CLIPS)
    hashed = write_report(copy)
    for clip in (copy / "train").glob("*.mp4"):
        clip.write_bytes(b"changed after the report")  # the report's hashes win: nothing is read
    (copy / "train" / "ccc_000001_000011.mp4").unlink()  # quarantined since: counted as missing
    claimed = claimed_records(copy)
    assert claimed.records == [r for r in hashed if r.id != "ccc_000001_000011"]
    assert claimed.missing == ["ccc_000001_000011"]
    result = CliRunner().invoke(cli, ["fingerprint", "--from-report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "2 clips" in result.stdout and "missing\tccc_000001_000011" in result.stdout
    assert "no file was read" in result.stderr
    read = CliRunner().invoke(cli, ["fingerprint", str(copy)])  # the default reads the bytes
    assert read.exit_code == 0 and read.stdout.split()[0] == content_fingerprint(hash_folder(copy))
    assert read.stdout.split()[0] != result.stdout.split()[0] and "read every clip file" in read.stderr
    old = tmp_path / "old_report.json"
    old.write_text(json.dumps({"splits": {}}))
    with pytest.raises(PathError, match="no clips list"):
        claimed_records(old)
    assert ClipRecord("a", 1, "x") < ClipRecord("b", 0, "")


def test_one_changed_byte_is_found_even_with_the_same_report_in_both_copies(tmp_path: Path) -> None:
    a = make_copy(tmp_path / "a", CLIPS)
    write_report(a)
    b = tmp_path / "b"
    shutil.copytree(a, b, symlinks=True)
    clip = b / "train" / "bbb_000005_000015.mp4"
    data = bytearray(clip.read_bytes())
    data[3] ^= 1
    clip.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["fingerprint", str(a), str(b)])
    assert result.exit_code == 1, result.output
    assert "different\tbbb_000005_000015" in result.stdout and "1 with different bytes" in result.output


def test_verify_lists_changed_missing_and_added_like_sha256sum_c(tmp_path: Path) -> None:
    copy = make_copy(tmp_path / "a", CLIPS)
    write_report(copy)
    ok = CliRunner().invoke(cli, ["fingerprint", "--verify", str(copy)])
    assert ok.exit_code == 0 and "all 3 clips" in ok.stderr and "OK" in ok.stderr
    (copy / "train" / "aaa_000000_000010.mp4").write_bytes(b"first clip bytez")  # same size, other bytes
    (copy / "train" / "ccc_000001_000011.mp4").unlink()
    (copy / "train" / "ddd_000000_000010.mp4").write_bytes(b"new")
    bad = CliRunner().invoke(cli, ["fingerprint", "--verify", str(copy / "download_report.json")])
    assert bad.exit_code == 1
    lines = [line.split("\t")[:2] for line in bad.stdout.splitlines()]
    assert lines == [["changed", "aaa_000000_000010"], ["missing", "ccc_000001_000011"],
                     ["added", "ddd_000000_000010"]]
    assert "1 changed, 1 missing, 1 added" in bad.output and "Traceback" not in bad.output
    both = CliRunner().invoke(cli, ["fingerprint", "--verify", str(copy), str(copy)])
    assert both.exit_code == 2


def test_the_same_clip_in_two_class_folders_names_the_id_and_both_paths(tmp_path: Path) -> None:
    copy = tmp_path / "c"
    for label in ("abseiling", "zumba"):
        (copy / "train" / label).mkdir(parents=True)
        (copy / "train" / label / "aaa_000000_000010.mp4").write_bytes(label.encode())
    result = CliRunner().invoke(cli, ["fingerprint", str(copy)])
    assert result.exit_code == 1
    assert "'aaa_000000_000010'" in result.output and "abseiling" in result.output and "zumba" in result.output
    assert "one copy" not in result.output


def test_an_empty_folder_exits_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["fingerprint", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no video files" in result.output


def test_cli_prints_and_compares(tmp_path: Path) -> None:
    a = make_copy(tmp_path / "a", CLIPS)
    same = make_copy(tmp_path / "same", CLIPS)
    changed = dict(CLIPS)
    changed["bbb_000005_000015"] = b"re-encoded"
    del changed["ccc_000001_000011"]
    changed["ddd_000000_000010"] = b"new"
    other = make_copy(tmp_path / "other", changed)
    runner = CliRunner()

    one = runner.invoke(cli, ["fingerprint", str(a)])
    assert one.exit_code == 0, one.output
    digest = one.stdout.split()[0]
    assert len(digest) == 64 and "3 clips" in one.stdout

    equal = runner.invoke(cli, ["fingerprint", str(a), str(same)])
    assert equal.exit_code == 0 and equal.stdout.split()[0] == digest and "identical" in equal.stderr

    differ = runner.invoke(cli, ["fingerprint", str(a), str(other)])
    assert differ.exit_code == 1
    lines = [line for line in differ.stdout.splitlines() if "\t" in line]
    assert lines == ["missing\tccc_000001_000011", "extra\tddd_000000_000010", "different\tbbb_000005_000015"]
    assert "1 missing" in differ.output and "1 with different bytes" in differ.output

    (tmp_path / "bad.json").write_text("{not json")
    bad = runner.invoke(cli, ["fingerprint", "--from-report", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and "not a JSON download report" in bad.output and "Traceback" not in bad.output
