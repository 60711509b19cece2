"""`videoprep shard` on real videos: tar layout, index, determinism, resume, --shard I/N, CLI errors."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.shard_data import CLASSES, make_clip_list
from videoprep.errors import VideoprepError
from videoprep.shards import ShardConfig, clip_key, parse_size, plan_shards, read_clips, run_shard
from videoprep.stage import Shard


@pytest.fixture
def clips(tmp_path):
    return make_clip_list(tmp_path, count=6)


def _config(clips, out: Path, **kw) -> ShardConfig:
    return ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=out, jobs=1, **kw)


def _members(tar_path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar_path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_parse_size_and_keys():
    assert parse_size("1GiB") == 1 << 30 and parse_size("500MB") == 500_000_000 and parse_size("4096") == 4096
    with pytest.raises(VideoprepError, match="expected a number"):
        parse_size("1 parsec")
    assert clip_key("air_drumming/clip.001.mkv") == "air_drumming/clip_001"


def test_tars_hold_every_clip_with_its_json_and_the_index_counts_them(clips, tmp_path):
    out = tmp_path / "shards"
    result = run_shard(_config(clips, out, shard_size=parse_size("40KB")))
    index = json.loads((out / "train.json").read_text())
    assert result.index_path == out / "train.json"
    assert index["clips"] == 6 and index["num_classes"] == 2 and index["classes"] == CLASSES
    assert index["clips_per_class"] == {CLASSES[0]: 3, CLASSES[1]: 3}
    assert len(index["shards"]) > 1  # 40 KB holds a few clips, not six
    assert [s["name"] for s in index["shards"]] == [f"train-{i:06d}.tar" for i in range(len(index["shards"]))]
    seen = {}
    for shard in index["shards"]:
        path = out / shard["name"]
        assert path.stat().st_size == shard["bytes"]
        members = _members(path)
        assert len(members) == 2 * shard["clips"]
        for (video_name, data), (json_name, meta_bytes) in zip(members[::2], members[1::2], strict=True):
            meta = json.loads(meta_bytes)
            assert json_name == f"{clip_key(meta['path'])}.json"
            assert video_name == f"{clip_key(meta['path'])}.{meta['path'].rsplit('.', 1)[1]}"  # own extension
            assert data == (clips.root / meta["path"]).read_bytes()
            assert meta["sha256"] == hashlib.sha256(data).hexdigest()
            rec = clips.records[meta["index"]]
            assert (meta["label"], meta["frame_num"], meta["class"]) == (rec.label, rec.frame_num, CLASSES[rec.label])
            assert (meta["width"], meta["height"], meta["fps"]) == (64, 48, pytest.approx(25.0))
            seen[meta["path"]] = shard["name"]
    assert sorted(seen) == sorted(r.path for r in clips.records)
    with tarfile.open(out / index["shards"][0]["name"]) as tar:
        info = tar.getmembers()[0]
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", 946684800)


def test_same_list_and_seed_give_byte_identical_tars_and_the_seed_changes_the_order(clips, tmp_path):
    def digests(out: Path, seed: int | None) -> dict[str, str]:
        run_shard(_config(clips, out, shard_size=parse_size("40KB"), shuffle=seed))
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tar"))}

    first, again = digests(tmp_path / "a", 5), digests(tmp_path / "b", 5)
    assert first == again
    assert digests(tmp_path / "c", 6) != first
    entries, _ = read_clips(_config(clips, tmp_path / "x"))
    assert [c.index for group in plan_shards(entries, shard_size=1 << 30, seed=None) for c in group] == list(range(6))


def test_resume_rewrites_only_missing_tars_and_shards_merge(clips, tmp_path):
    out = tmp_path / "shards"
    config = _config(clips, out, shard_size=parse_size("40KB"))
    first = run_shard(config)
    count = len(first.shards)
    victim = first.shards[-1]
    victim.unlink()
    (out / f".{first.shards[0].name}.deadbeef.part").write_bytes(b"half a tar")  # a killed run's temporary
    again = run_shard(config)
    assert (again.run.done, again.run.cached) == (1, count - 1)
    assert victim.is_file() and not list(out.glob(".*.part"))

    split_out = tmp_path / "split"
    for i in range(2):
        part = run_shard(_config(clips, split_out, shard_size=parse_size("40KB"), shard=Shard(i, 2)))
        assert part.index_path is None
    assert not (split_out / "train.json").exists()
    merged = run_shard(_config(clips, split_out, shard_size=parse_size("40KB")))
    assert (merged.run.done, merged.run.cached) == (0, count)
    for name in (p.name for p in first.shards):
        assert (split_out / name).read_bytes() == (out / name).read_bytes()


def test_a_vanished_video_costs_only_itself(clips, tmp_path):
    entries, _ = read_clips(_config(clips, tmp_path / "x"))
    (clips.root / clips.records[2].path).write_bytes(b"not a video at all")  # read fine, probe fails
    result = run_shard(_config(clips, tmp_path / "out"))
    assert result.clips == 5 and [s["path"] for s in result.skipped] == [clips.records[2].path]
    assert json.loads((tmp_path / "out" / "train.json").read_text())["skipped"][0]["path"] == clips.records[2].path
    assert len(entries) == 6


def test_cli_writes_shards_and_names_bad_input(clips, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(cli, ["shard", str(clips.list_file), "--root-path", str(clips.root), "--out", str(out),
                             "--shard-size", "1MiB", "-j", "1"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip().endswith("train.json") and (out / "train-000000.tar").is_file()
    bad_size = runner.invoke(cli, ["shard", str(clips.list_file), "--root-path", str(clips.root), "--out",
                                   str(out), "--shard-size", "huge"])
    assert bad_size.exit_code == 2 and "--shard-size" in bad_size.output
    wrong_root = runner.invoke(cli, ["shard", str(clips.list_file), "--root-path", str(tmp_path), "--out", str(out)])
    assert wrong_root.exit_code == 1 and "check --root-path" in wrong_root.output
    assert "Traceback" not in wrong_root.output
    (tmp_path / "a_file").write_text("x")
    out_is_file = runner.invoke(cli, ["shard", str(clips.list_file), "--root-path", str(clips.root), "--out",
                                      str(tmp_path / "a_file")])
    assert out_is_file.exit_code == 2 and "--out" in out_is_file.output and "is a file" in out_is_file.output
    part = runner.invoke(cli, ["shard", str(clips.list_file), "--root-path", str(clips.root), "--out",
                               str(tmp_path / "parts"), "--shard", "0/2", "-j", "1"])
    assert part.exit_code == 0 and "run without --shard to write the index" in part.output


def test_the_webdataset_library_reads_every_clip_byte_for_byte(clips, tmp_path):
    wds = pytest.importorskip("webdataset", reason="pip install 'videoprep[dev]' (the interop test's reader)")
    out = tmp_path / "shards"
    run_shard(_config(clips, out, shard_size=parse_size("40KB"), shuffle=9))
    index = json.loads((out / "train.json").read_text())
    pattern = str(out / index["pattern"])
    seen = {}
    for sample in wds.WebDataset(pattern, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        video_ext = meta["path"].rsplit(".", 1)[1]
        assert set(sample) >= {"__key__", "json", video_ext}
        assert sample["__key__"] == clip_key(meta["path"])
        assert sample[video_ext] == (clips.root / meta["path"]).read_bytes()
        seen[meta["path"]] = meta["sha256"]
    assert sorted(seen) == sorted(r.path for r in clips.records)


@pytest.mark.slow
def test_ray_executor_writes_the_same_tars(clips, tmp_path):
    pytest.importorskip("ray")
    local = run_shard(_config(clips, tmp_path / "local", shard_size=parse_size("40KB")))
    remote = run_shard(ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=tmp_path / "ray",
                                   shard_size=parse_size("40KB"), executor="ray", jobs=2))
    assert remote.run.options.executor == "ray" and remote.run.done == len(local.shards)
    for tar in local.shards:
        assert (tmp_path / "ray" / tar.name).read_bytes() == tar.read_bytes()
    assert (tmp_path / "ray" / "train.json").read_text() == (tmp_path / "local" / "train.json").read_text()
