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
    compare,
    content_fingerprint,
    hash_folder,
    load_records,
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


def test_report_clips_are_used_without_reading_files(tmp_path: Path) -> None:
    copy = make_copy(tmp_path / "a", CLIPS)
    hashed = hash_folder(copy)
    (copy / "download_report.json").write_text(json.dumps(
        {"clips": [{"id": r.id, "size": r.size, "sha256": r.sha256} for r in hashed]}))
    for clip in (copy / "train").glob("*.mp4"):
        clip.write_bytes(b"changed after the report")  # the report's hashes win: nothing is read
    records, origin = load_records(copy)
    assert content_fingerprint(records) == content_fingerprint(hashed) and origin.startswith("report")
    old = tmp_path / "old_report.json"
    old.write_text(json.dumps({"splits": {}}))
    with pytest.raises(PathError, match="no clips list"):
        load_records(old)
    assert ClipRecord("a", 1, "x") < ClipRecord("b", 0, "")


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
    bad = runner.invoke(cli, ["fingerprint", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and "not a JSON download report" in bad.output and "Traceback" not in bad.output
