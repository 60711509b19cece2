"""tools/wheelhouse.py: pieces of at most the limit, reassembled byte for byte; damage refused before any install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.wheelhouse import Entry, parse_table, read_manifest, seal_group, torchcodec_for, verified_files

ROOT = Path(__file__).resolve().parents[1]


def _install(wheelhouse: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.wheelhouse", "install", "--wheelhouse", str(wheelhouse),
                           "--venv", str(venv)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture()
def sealed(tmp_path: Path) -> tuple[Path, bytes]:
    """A core group of one 1 MB 'wheel' and one small one, sealed with 300 kB pieces."""
    core = tmp_path / "wh" / "core"
    core.mkdir(parents=True)
    data = os.urandom(1_000_000)
    (core / "big-1.0-py3-none-any.whl").write_bytes(data)
    (core / "small-1.0-py3-none-any.whl").write_bytes(b"small")
    seal_group(core, max_bytes=300_000, meta={"group": "core"})
    return core, data


def test_a_large_file_is_stored_in_pieces_under_the_limit_and_reassembled_exactly(sealed, tmp_path: Path):
    core, data = sealed
    manifest = read_manifest(core)
    big = Entry(**next(f for f in manifest["files"] if f["name"].startswith("big")))
    assert [p["name"] for p in big.pieces] == [f"big-1.0-py3-none-any.whl.part00{i}" for i in range(4)]
    assert not (core / "big-1.0-py3-none-any.whl").exists()
    assert manifest["largest_file_bytes"] == 300_000
    assert all(p.stat().st_size <= 300_000 for p in core.iterdir() if p.name != "manifest.json")
    files = verified_files(core, tmp_path / "whole")
    assert (tmp_path / "whole" / "big-1.0-py3-none-any.whl").read_bytes() == data
    assert sorted(f.name for f in files) == ["big-1.0-py3-none-any.whl", "small-1.0-py3-none-any.whl"]


def test_a_damaged_piece_is_refused_in_one_line_before_any_venv_is_made(sealed, tmp_path: Path):
    core, _ = sealed
    piece = core / "big-1.0-py3-none-any.whl.part002"
    raw = bytearray(piece.read_bytes())
    raw[10] ^= 0xFF
    piece.write_bytes(bytes(raw))
    run = _install(core.parent, tmp_path / "venv")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [f"wheelhouse: {piece}: sha256 differs from the manifest (damaged in "
                                               "transfer); copy it again"]
    assert not (tmp_path / "venv").exists()


def test_a_missing_piece_and_a_missing_core_group_are_named(sealed, tmp_path: Path):
    core, _ = sealed
    (core / "big-1.0-py3-none-any.whl.part003").unlink()
    run = _install(core.parent, tmp_path / "venv")
    assert run.returncode == 1 and "part003: missing from its group" in run.stderr
    run = _install(tmp_path / "nowhere", tmp_path / "venv")
    assert run.returncode == 1 and "no core/ group" in run.stderr and "Traceback" not in run.stderr


def test_a_manifest_from_another_schema_is_refused(sealed, tmp_path: Path):
    core, _ = sealed
    manifest = json.loads((core / "manifest.json").read_text())
    (core / "manifest.json").write_text(json.dumps(manifest | {"schema": 7}))
    run = _install(core.parent, tmp_path / "venv")
    assert run.returncode == 1 and "schema 7 is not 1" in run.stderr


def test_the_torchcodec_release_follows_the_torch_minor_of_the_node():
    table = parse_table("2.11=0.11.1 2.13=0.13.0")
    assert torchcodec_for("2.11.0+cu130", table) == "0.11.1"
    assert torchcodec_for("2.13.0+cpu", table) == "0.13.0"
    assert torchcodec_for("2.9.1", table) is None


def test_a_malformed_table_is_a_usage_error_in_one_line(tmp_path: Path):
    run = subprocess.run([sys.executable, "-m", "tools.wheelhouse", "install", "--wheelhouse", str(tmp_path),
                          "--venv", str(tmp_path / "v"), "--torchcodec-table", "2.13:0.13"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stderr.strip() == ("wheelhouse: --torchcodec-table: torchcodec table '2.13:0.13': expected TORCH_MINOR=TORCHCODEC pairs, "
                                  "e.g. 2.13=0.13.0")
