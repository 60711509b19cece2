"""The stage engine under validate, index, transcode and frames: journal, shards, summaries, modes, locations."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.races import signal_mid_run
from tests.videoprep.helpers import write_tree
from videoprep.errors import VideoprepError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.index import read_manifest
from videoprep.stage import JournalWriter, Shard, read_journal, shard_of
from videoprep.synth import write_video
from videoprep.transcode import read_mapping

REPO = Path(__file__).resolve().parents[2]
SOURCES = {  # relpath: (width, height, fps, frames): tiny, so every stage runs in well under a second per video
    "train/class a/clip 1.mp4": (64, 48, 25, 12),
    "train/class a/clip2.mp4": (48, 64, 25, 14),
    "train/b/three.mp4": (64, 48, 25, 16),
    "val/b/four.mp4": (64, 48, 25, 18),
}
STAGES = ("validate", "index", "transcode", "frames")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", SOURCES)


def stage_args(stage: str, source: Path, out: Path) -> list[str]:
    """The command line of one stage writing everything under `out` (validate keeps its journal there)."""
    if stage == "validate":
        return ["validate", str(source), "--min-frames", "1", "--report", str(out / "report.csv"),
                "--state-dir", str(out / ".state")]
    if stage == "index":
        return ["index", str(source), "--out", str(out)]
    if stage == "transcode":
        return ["transcode", str(source), str(out), "--short-side", "32", "--gop", "4"]
    return ["frames", str(source), str(out), "--short-side", "32"]


def run_cli(args: list[str], *, code: int = 0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def summary_of(args: list[str], path: Path, *, code: int = 0) -> dict:
    run_cli([*args, "--summary-json", str(path), "-j", "2"], code=code)
    return json.loads(path.read_text())


def visible_files(root: Path) -> dict[str, bytes | None]:
    """relpath -> bytes of every file (None for folders), hidden state and per-run reports left out."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts) or path.name.endswith("_report.json"):
            continue
        found[rel] = None if path.is_dir() else path.read_bytes()
    return found


# --- the journal and the shard hash ----------------------------------------------------------


def test_journal_tolerates_a_torn_last_line_and_appends_after_it(tmp_path):
    path = tmp_path / "j.jsonl"
    with JournalWriter(path) as writer:
        writer.append({"key": "a", "n": 1})
    with open(path, "ab") as f:
        f.write(b'{"key": "b", "n"')  # kill -9 in the middle of a write
    assert read_journal(path) == [{"key": "a", "n": 1}]
    with JournalWriter(path, interval_s=0.05) as writer:
        writer.append({"key": "c", "n": 3})
        writer.flush()  # what a crash right now would keep
        assert read_journal(path) == [{"key": "a", "n": 1}, {"key": "c", "n": 3}]
    odd = os.fsdecode(b"caf\xe9.mp4")
    with JournalWriter(path) as writer:
        writer.append({"key": odd})
    assert read_journal(path)[-1] == {"key": odd}


def test_a_transcode_journal_from_before_the_engine_still_counts(src, tmp_path):
    """DSTs made by earlier versions are not re-encoded: their journal lines (no key/stamp) are read as such."""
    out = tmp_path / "dst"
    first = summary_of(stage_args("transcode", src, out), tmp_path / "a.json")
    journal = out / ".videoprep" / "transcode.jsonl"
    old = [{k: v for k, v in e.items() if k not in ("key", "stamp")} | e["stamp"] | {"source": e["key"]}
           for e in read_journal(journal)]  # the old line: source, size, mtime_ns, settings, output, ...
    journal.write_text("".join(json.dumps(e) + "\n" for e in old))
    again = summary_of(stage_args("transcode", src, out), tmp_path / "b.json")
    assert (first["done"], again["cached"], again["done"]) == (4, 4, 0)


def test_shard_hash_is_stable_and_options_are_checked():
    # The same on every host and run (not Python's salted hash): these values must never change.
    assert [shard_of(k, 4) for k in ("train/a/x.mp4", "val/b/y.mp4", "z.mp4")] == [1, 0, 1]
    assert shard_of("train/a/x.mp4", 1000) == 349
    assert Shard.parse(" 2/3 ") == Shard(2, 3)
    for bad in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(VideoprepError):
            Shard.parse(bad)
    result = CliRunner().invoke(cli, ["index", ".", "--out", "x", "--shard", "2/2"])
    assert result.exit_code == 2 and "need 0 <= I < N" in result.output


# --- shards, then a plain run ----------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_shards_then_a_plain_run_write_what_a_plain_run_writes_without_per_item_work(stage, src, tmp_path):
    plain = summary_of(stage_args(stage, src, tmp_path / "plain"), tmp_path / "plain.json")
    assert (plain["planned"], plain["cached"], plain["done"], plain["failed"]) == (4, 0, 4, {})
    assert plain["executor"] == "local" and plain["stage"] == stage and plain["wall_s"] > 0

    out = tmp_path / "sharded"
    planned = 0
    for i in range(2):
        part = summary_of([*stage_args(stage, src, out), "--shard", f"{i}/2"], tmp_path / f"s{i}.json")
        assert part["shard"] == f"{i}/2" and part["done"] == part["planned"]
        planned += part["planned"]
    assert planned == 4
    merged = summary_of(stage_args(stage, src, out), tmp_path / "merged.json")
    assert (merged["planned"], merged["cached"], merged["done"]) == (4, 4, 0)  # no per-item work
    assert visible_files(out) == visible_files(tmp_path / "plain")


def test_validate_summary_counts_bad_videos_by_reason(src, tmp_path):
    (src / "train" / "b" / "empty.mp4").write_bytes(b"")
    summary = summary_of(stage_args("validate", src, tmp_path / "v"), tmp_path / "v.json", code=1)
    assert (summary["planned"], summary["failed"]) == (5, {"empty": 1})


# --- umask, output locations, empty sources --------------------------------------------------


def test_outputs_honour_umask_022(src, tmp_path):
    script = ("import os, sys; os.umask(0o022); from cli import main; sys.argv = ['videoprep'] + sys.argv[1:]; "
              "main()")
    for stage in STAGES:
        subprocess.run([sys.executable, "-c", script, *stage_args(stage, src, tmp_path / stage), "-j", "2",
                        "--summary-json", str(tmp_path / stage / "summary.json")],
                       cwd=REPO, check=True, capture_output=True)
    checked = 0
    for path in tmp_path.rglob("*"):
        if path.is_relative_to(src) or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
        checked += 1
    assert checked > 40  # videos, frame folders and JPEGs, lists, manifest, mapping, reports, summaries


def test_every_bad_output_location_is_one_line_and_exit_2_before_any_work(src, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    cases = {
        ("transcode", str(src), str(afile / "x")): "is a file, not a folder",
        ("transcode", str(src), str(afile)): "is a file, not a folder",
        ("transcode", str(src), str(src)): "must differ from the source folder",
        ("transcode", str(src), str(src / "out")): "is inside the source folder",
        ("transcode", str(src), str(tmp_path / "t"), "--lists-dir", str(afile / "l")): "is a file, not a folder",
        ("transcode", str(src), str(tmp_path / "t"), "--summary-json", str(afile / "s.json")): "is a file",
        ("frames", str(src), str(src / "train" / "f")): "is inside the source folder",
        ("index", str(src), "--out", str(afile)): "is a file, not a folder",
        ("index", str(src), "--out", str(tmp_path / "i"), "--summary-json", str(tmp_path)): "is a folder",
        ("validate", str(src), "--report", str(afile / "bad.csv")): "is a file, not a folder",
        ("validate", str(src), "--quarantine", str(afile)): "is a file, not a folder",
        ("validate", str(src), "--summary-json", str(afile / "x" / "s.json")): "is a file, not a folder",
    }
    for args, reason in cases.items():
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 2, (args, result.output)
        assert reason in result.output and len(result.output.strip().splitlines()) == 1, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "src"]  # nothing was written anywhere
    assert not list(src.rglob(".videoprep"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_destination_is_refused_before_any_work(src, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    result = CliRunner().invoke(cli, ["transcode", str(src), str(locked / "dst")])
    assert result.exit_code == 2 and "is not writable" in result.output


@pytest.mark.parametrize("stage", STAGES)
def test_an_empty_source_gives_the_same_outcome_in_every_stage(stage, tmp_path):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    result = CliRunner().invoke(cli, stage_args(stage, empty, tmp_path / "out"))
    assert result.exit_code == 1 and "no videos found" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


# --- names that are not UTF-8, truncated sources ---------------------------------------------


def test_non_utf8_names_work_in_every_stage_and_keep_their_bytes(src, tmp_path):
    raw = b"train/b/caf\xe9 clip.mp4"
    os.link(src / "train" / "b" / "three.mp4", src / os.fsdecode(raw))
    for stage in ("transcode", "frames", "index"):
        run_cli([*stage_args(stage, src, tmp_path / stage), "-j", "2"])
    for stage, suffix in (("transcode", ".mp4"), ("frames", "")):
        rows = {r["output"]: r for r in read_mapping(tmp_path / stage / "mapping.csv")}
        row = rows[f"train/b/caf_clip{suffix}"]
        assert row["source"] == "train/b/caf\ufffd clip.mp4"
        assert urllib.parse.unquote_to_bytes(row["source_raw"]) == raw
        assert (tmp_path / stage / row["output"]).exists()
    manifest = {r["relpath"]: r for r in read_manifest(tmp_path / "index" / "manifest.csv")}
    assert urllib.parse.unquote_to_bytes(manifest["train/b/caf\ufffd clip.mp4"]["relpath_raw"]) == raw
    assert manifest["train/b/three.mp4"]["relpath_raw"] == ""

    (src / os.fsdecode(b"train/b/bad\xff.mp4")).write_bytes(b"")
    quarantine = tmp_path / "q"
    run_cli(["validate", str(src), "--min-frames", "1", "--report", str(tmp_path / "bad.csv"),
             "--quarantine", str(quarantine), "--state-dir", str(tmp_path / "vstate")], code=1)
    assert os.listdir(os.fsencode(quarantine / "train" / "b")) == [b"bad\xff.mp4"]
    text = (tmp_path / "bad.csv").read_text(encoding="utf-8")
    assert "train/b/bad\ufffd.mp4" in text and "train/b/bad%FF.mp4" in text


def test_a_truncated_source_is_never_a_short_output(src, tmp_path):
    whole = write_video(tmp_path / "whole.mp4", num_frames=41, width=64, height=48)
    cut = src / "train" / "b" / "cut.mp4"
    run_ffmpeg(["-y", "-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(cut)], target=str(cut))
    os.truncate(cut, cut.stat().st_size // 2)  # the moov still declares 41 frames
    run_cli(stage_args("index", src, tmp_path / "i"))
    row = {r["relpath"]: r for r in read_manifest(tmp_path / "i" / "manifest.csv")}["train/b/cut.mp4"]
    assert row["status"] == "error" and row["reason"].startswith("truncated")
    for stage in ("transcode", "frames"):
        summary = summary_of(stage_args(stage, src, tmp_path / stage), tmp_path / f"{stage}.json", code=1)
        assert (summary["done"], summary["failed"]) == (4, {"truncated": 1})
        assert not list((tmp_path / stage).rglob("cut*"))


# --- kill -9 in the middle of a stage ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_mid_stage_then_a_rerun_loses_and_duplicates_nothing(stage, tmp_path):
    one = write_video(tmp_path / "one.mp4", num_frames=12, width=64, height=48)
    src = tmp_path / "src"
    # sized so each run is killed after its first flush (1 s): the one-read quick check validates ~500 such
    # videos a second on one worker, about as fast as index probes them; the pinned ffmpeg makes ~30 of these
    # tiny clips a second on an idle core
    total = 2500 if stage in ("validate", "index") else 150
    for i in range(total):
        path = src / "train" / f"c{i % 2}" / f"v{i:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(one, path)
    out = tmp_path / "out"
    state = out / ".state" if stage == "validate" else out / ".videoprep"
    journal = state / f"{stage}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cli", *stage_args(stage, src, out), "-j", "1"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    status = signal_mid_run(proc, lambda: journal.exists() and journal.stat().st_size > 0,
                            what=f"{stage} killed after its first journal flush", timeout_s=60, group=True)
    assert status == -signal.SIGKILL
    kept = len(read_journal(journal))
    if kept == total:
        pytest.skip(f"{stage} finished all {total} videos before its first journal flush: this machine is too "
                    "fast to set up the race")
    assert 0 < kept < total
    summary = summary_of(stage_args(stage, src, out), tmp_path / "rerun.json")
    assert (summary["planned"], summary["cached"], summary["done"]) == (total, kept, total - kept)
    keys = [e["key"] for e in read_journal(journal)]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == total
    assert not [p for p in out.rglob(".*.part")]


# --- a real two-node Ray cluster on 127.0.0.1 --------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster of two nodes (one CPU each) for the whole module; the driver is connected."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_every_stage_on_a_two_node_ray_cluster_gives_the_local_outputs(ray_cluster, src, tmp_path):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    (src / "train" / "b" / "junk.mp4").write_bytes(b"junk" * 64)
    for stage in STAGES:
        code = 1 if stage in ("validate", "transcode", "frames") else 0
        local = summary_of(stage_args(stage, src, tmp_path / f"{stage}-local"), tmp_path / f"{stage}-l.json",
                           code=code)
        remote = summary_of([*stage_args(stage, src, tmp_path / f"{stage}-ray"), "--executor", "ray"],
                            tmp_path / f"{stage}-r.json", code=code)
        assert remote["executor"] == "ray"
        assert (remote["done"], remote["failed"]) == (local["done"], local["failed"]), stage
        assert visible_files(tmp_path / f"{stage}-ray") == visible_files(tmp_path / f"{stage}-local"), stage


def die_once_then_work(marker: str) -> str:
    """Ray task: the first attempt kills its worker process (a lost worker); the retry succeeds."""
    with open(marker, "a") as f:
        f.write("attempt\n")
    if Path(marker).read_text().count("attempt") == 1:
        os._exit(1)
    return "ok"


def sleep_for(seconds: float) -> float:
    """Ray task: a hung item when `seconds` is long."""
    time.sleep(seconds)
    return seconds


def fail_like_a_bad_video(marker: str) -> str:
    """Ray task: raises as a bad video does (recorded, never retried)."""
    with open(marker, "a") as f:
        f.write("attempt\n")
    raise VideoprepError(f"{marker}: bad video")


@pytest.mark.slow
def test_ray_retries_a_lost_worker_not_a_bad_video_and_limits_each_item(ray_cluster, tmp_path):
    from videoprep.executors import run_tasks

    lost, bad = str(tmp_path / "lost"), str(tmp_path / "bad")
    [ok] = run_tasks(die_once_then_work, [lost], executor="ray")
    assert ok.ok and ok.value == "ok" and Path(lost).read_text().count("attempt") == 2
    [failed] = run_tasks(fail_like_a_bad_video, [bad], executor="ray")
    assert not failed.ok and "bad video" in failed.error and Path(bad).read_text().count("attempt") == 1
    results = {r.item: r for r in run_tasks(sleep_for, [0.1, 120.0], executor="ray", timeout_s=3)}
    assert results[0.1].ok and results[120.0].error == "timed out after 3 s"  # the per-item limit
