"""Bad inputs a new user trips on, through the real CLI: one line, the right exit status, nothing written, no hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cliproc import REPO, can_mount_readonly, one_line, videoprep
from tests.videoprep.helpers import write_tree

SOURCES = {"train/a/one.mp4": (64, 48, 25, 12), "train/b/two.mp4": (48, 64, 25, 14)}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", SOURCES)


def tree(root: Path) -> list[str]:
    """Every path under root, hidden ones included (what a run created)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_command(stage: str, src: Path, out: Path) -> list[str]:
    if stage == "index":
        return ["index", str(src), "--out", str(out)]
    if stage == "validate":
        return ["validate", str(src), "--state-dir", str(out / "state"), "--report", str(out / "r.csv")]
    return [stage, str(src), str(out)]


# --- Ray -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stage", ["index", "validate", "transcode"])
def test_an_unreachable_ray_address_is_one_line_exit_2_and_creates_nothing(stage, src, tmp_path):
    before = tree(src)
    out = tmp_path / "out"
    address = f"127.0.0.1:{closed_port()}"
    result = videoprep(*stage_command(stage, src, out), "--executor", "ray", "--ray-address", address)
    assert result.returncode == 2
    line = one_line(result)
    assert "--ray-address" in line and "RAY_ADDRESS" in line and address in line
    assert not out.exists() and tree(src) == before  # no journal folder, no state


@pytest.mark.timeout(90)
def test_ray_address_from_the_environment_is_used_by_the_ray_executor(src, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                       env={"RAY_ADDRESS": address})
    assert result.returncode == 2 and address in one_line(result)  # the flag is absent: the variable is the address
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(90)
def test_ray_address_with_the_local_executor_names_the_flag_and_the_fix(src, tmp_path):
    result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--ray-address", "127.0.0.1:1")
    assert result.returncode == 2
    line = one_line(result)
    assert "--ray-address" in line and "--executor ray" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(90)
def test_a_port_that_never_answers_as_ray_gives_up_after_ray_timeout(src, tmp_path):
    with socket.socket() as listener:  # accepts TCP, never speaks Ray's protocol
        listener.bind(("0.0.0.0", 0))
        listener.listen(16)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                           "--ray-address", address, "--ray-timeout", "3")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--ray-timeout" in errors[0] and "3 s" in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_executor_ray_joins_the_cluster_named_by_RAY_ADDRESS(src, tmp_path):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        summary = tmp_path / "summary.json"
        result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                           "--summary-json", str(summary), env={"RAY_ADDRESS": cluster.address}, timeout_s=180)
        assert result.returncode == 0, result.stderr
        assert json.loads(summary.read_text())["executor"] == "ray"
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            from ray._private.state import jobs

            drivers = jobs()  # this test's driver, and the run's if it joined this cluster (not a Ray of its own)
            assert len(drivers) == 2, drivers
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


# --- read-only sources and outputs (real read-only bind mounts: root writes anywhere else) -----------


@pytest.fixture
def readonly_ok(tmp_path: Path) -> None:
    if not can_mount_readonly(tmp_path):
        pytest.skip("needs a private mount namespace (root with CAP_SYS_ADMIN) for a read-only bind mount")


@pytest.fixture
def spaced_src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "spaced", {"train/class a/clip 1.mp4": (64, 48, 25, 12)})


@pytest.mark.timeout(90)
def test_index_readonly_source_with_spaces_is_refused_up_front(readonly_ok, spaced_src, tmp_path):
    out = tmp_path / "lists"
    result = videoprep("index", str(spaced_src), "--out", str(out), readonly=[spaced_src])
    assert result.returncode == 2
    line = one_line(result)
    assert "--safe-dir" in line and "clip 1.mp4" in line and "not writable" in line
    assert not out.exists() and not (spaced_src / ".videoprep").exists()
    fine = videoprep("index", str(spaced_src), "--out", str(out), "--safe-dir", str(tmp_path / "view"),
                     readonly=[spaced_src])
    assert fine.returncode == 0, fine.stderr
    assert (tmp_path / "view").is_dir()


@pytest.mark.timeout(90)
def test_validate_quarantine_of_a_readonly_source_is_refused_up_front(readonly_ok, src, tmp_path):
    (src / "train" / "b" / "junk.mp4").write_bytes(b"junk" * 64)
    before = tree(src)
    quarantine = tmp_path / "q"
    result = videoprep("validate", str(src), "--quarantine", str(quarantine), "--state-dir", str(tmp_path / "st"),
                       readonly=[src])
    assert result.returncode == 2
    line = one_line(result)
    assert "--quarantine" in line and "not writable" in line
    assert not quarantine.exists() and not (tmp_path / "st").exists() and tree(src) == before


MOVE = """
import sys
from videoprep.atomic import move_file
from videoprep.errors import PathError
try:
    move_file(sys.argv[1], sys.argv[2])
except PathError as exc:
    print(exc)
    sys.exit(1)
"""


def move_across(source: Path, dest: Path, *, readonly_source: bool) -> subprocess.CompletedProcess:
    """move_file(source, dest) with dest's folder on a fresh tmpfs (another filesystem), source read-only or not."""
    mounts = [f"mount -t tmpfs tmpfs {dest.parent}"]
    if readonly_source:
        mounts += [f"mount --bind {source.parent} {source.parent}", f"mount -o remount,ro,bind {source.parent}"]
    script = " && ".join([*mounts, f"{{ {sys.executable} -c '{MOVE}' {source} {dest}; code=$?; }}",
                          f"ls -a {dest.parent}", "exit $code"])
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    """tmp/a/bad.mp4 (4 KiB) and an empty tmp/q to move it to."""
    (tmp_path / "a").mkdir()
    (tmp_path / "q").mkdir()
    source = tmp_path / "a" / "bad.mp4"
    source.write_bytes(b"x" * 4096)
    return source


@pytest.mark.timeout(60)
def test_a_move_across_filesystems_copies_then_unlinks(readonly_ok, bad_file, tmp_path):
    source = bad_file
    result = move_across(source, tmp_path / "q" / "bad.mp4", readonly_source=False)
    assert result.returncode == 0, result.stderr
    assert not source.exists() and result.stdout.split() == [".", "..", "bad.mp4"]  # no temporary left


@pytest.mark.timeout(60)
def test_a_move_whose_unlink_fails_undoes_the_copy(readonly_ok, bad_file, tmp_path):
    source = bad_file
    result = move_across(source, tmp_path / "q" / "bad.mp4", readonly_source=True)
    assert result.returncode != 0
    assert "copy was removed again" in result.stdout and str(source) in result.stdout
    assert source.read_bytes() == b"x" * 4096  # still in one place: where it was
    assert result.stdout.split()[-2:] == [".", ".."]  # the copy and its temporary are gone


def test_a_move_on_one_filesystem_is_a_rename(tmp_path):
    from videoprep.atomic import move_file

    source = tmp_path / "bad.mp4"
    source.write_bytes(b"x")
    inode = source.stat().st_ino
    move_file(source, tmp_path / "q.mp4")
    assert not source.exists() and (tmp_path / "q.mp4").stat().st_ino == inode


# --- at scale: what a run reads and rewrites ----------------------------------------------------------


def _summary(args: list[str], path: Path) -> dict:
    from click.testing import CliRunner

    from cli import cli

    result = CliRunner().invoke(cli, [*args, "--summary-json", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


@pytest.mark.timeout(120)
def test_a_shard_run_reads_only_its_own_journal_and_the_plain_run_merges(src, tmp_path):
    from videoprep.stage import Shard, read_journal

    _summary(["index", str(src), "--out", str(tmp_path / "a")], tmp_path / "a.json")
    entries = read_journal(tmp_path / "a" / ".videoprep" / "index.jsonl")
    mine = [e for e in entries if Shard(0, 2).covers(e["key"])]
    assert mine, "the tree must give shard 0/2 an item"
    planted = tmp_path / "b" / ".videoprep" / "index.shard-1-of-2.jsonl"  # another shard's, naming shard 0's items
    planted.parent.mkdir(parents=True)
    planted.write_text("".join(json.dumps(e) + "\n" for e in entries))
    shard = _summary(["index", str(src), "--out", str(tmp_path / "b"), "--shard", "0/2"], tmp_path / "s.json")
    assert (shard["planned"], shard["cached"], shard["done"]) == (len(mine), 0, len(mine))
    plain = _summary(["index", str(src), "--out", str(tmp_path / "b")], tmp_path / "p.json")
    assert (plain["cached"], plain["done"]) == (len(entries), 0)  # every shard's journal merged


@pytest.mark.timeout(120)
def test_an_index_rerun_with_nothing_changed_rewrites_nothing(spaced_src, tmp_path):
    out, view = tmp_path / "lists", tmp_path / "view"
    args = ["index", str(spaced_src), "--out", str(out), "--safe-dir", str(view), "--export", "mmaction"]
    _summary(args, tmp_path / "1.json")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".videoprep" not in p.parts}
    assert {p.name for p in before} >= {"train.txt", "classes.txt", "manifest.csv", "train_mmaction.txt"}
    links = {p: os.readlink(p) for p in view.rglob("*") if p.is_symlink()}
    again = _summary(args, tmp_path / "2.json")
    assert (again["cached"], again["done"]) == (1, 0)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert {p: os.readlink(p) for p in view.rglob("*") if p.is_symlink()} == links and links
    (out / "train.txt").unlink()  # an output or a link gone: the re-run writes it again
    next(iter(links)).unlink()
    _summary(args, tmp_path / "2b.json")
    assert (out / "train.txt").read_text().count("\n") == 1
    assert {p: os.readlink(p) for p in view.rglob("*") if p.is_symlink()} == links
    fresh = _summary([*args, "--fresh"], tmp_path / "3.json")
    assert (fresh["cached"], fresh["done"]) == (0, 1)
