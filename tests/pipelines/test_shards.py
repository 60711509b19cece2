"""The shard loader against the file loader, over files, HTTP and pipe:, with bad clips and 2 DDP ranks."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.backends.pyav import PyAVReader
from pipelines.dataset import VideoClipDataset
from pipelines.shards import ShardClipDataset, build_shard_loader, frames_of
from pipelines.spec import ClipSpec, LoaderConfig
from tests.shard_data import make_clip_list
from videoprep.shards import ShardConfig, parse_size, run_shard
from videoprep.tarshards import ShardError, expand_braces, open_shard, read_index, resolve_shards, tar_samples

REPO = Path(__file__).resolve().parents[2]
CLIP = ClipSpec(mode="train", seq_length=4, sample_rate=2, crop_size=32, scale_size=40)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Six clips: one tar in list order (for 1:1 comparisons) and several small tars."""
    base = tmp_path_factory.mktemp("shards")
    clips = make_clip_list(base, count=6)
    run_shard(ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=base / "one", jobs=1))
    run_shard(ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=base / "many", jobs=1,
                          shard_size=parse_size("40KB"), shuffle=1))
    return clips, base


def _config(**kw) -> LoaderConfig:
    return LoaderConfig(**{"batch_size": 1, "workers": 0, "num_classes": 2, "seed": 3, **kw})


def _fingerprint(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.numpy().tobytes()).hexdigest()


def test_brace_patterns_expand_as_webdataset_does():
    assert expand_braces("d/train-{000000..000002}.tar") == [f"d/train-00000{i}.tar" for i in range(3)]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(ShardError, match="must count up"):
        expand_braces("x-{5..1}.tar")


@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_pixel_identical_to_the_file_loader(packed, mode):
    """Same video, same epoch and seed: the streamed clip equals the list loader's, crops and all."""
    clips, base = packed
    clip = CLIP.for_mode(mode)
    config = _config(root_path=str(clips.root), shuffle=False)
    files = VideoClipDataset(clips.list_file, clip, config)
    streamed = ShardClipDataset(resolve_shards(str(base / "one" / "train-000000.tar")), clip, config,
                                shuffle_buffer=0)
    streamed.set_epoch(2)
    items = list(streamed)
    assert len(items) == len(clips.records)
    for i, item in enumerate(items):
        expected = files[(i, 2)]
        assert item.label == expected.label and item.bad == ()
        assert torch.equal(item.clips, expected.clips)
    # and the raw frames at any indices equal the file reader's
    with open_shard(str(base / "one" / "train-000000.tar"), allow_pipe=False) as stream:
        sample = next(tar_samples(stream, "one"))
    np.testing.assert_array_equal(frames_of(sample, [7, 0, 3, 3]),
                                  PyAVReader().read(clips.root / clips.records[0].path, [7, 0, 3, 3]))


def test_loader_sees_every_clip_once_in_val_and_len_is_exact(packed):
    clips, base = packed
    pattern = str(base / "many" / "train.json")
    reference = VideoClipDataset(clips.list_file, CLIP.for_mode("val"), _config(root_path=str(clips.root)))
    want = sorted(_fingerprint(reference[i].clips[0]) for i in range(len(clips.records)))
    for workers in (0, 2):
        loader = build_shard_loader(pattern, CLIP.for_mode("val"), _config(batch_size=2, workers=workers))
        got, batches = [], 0
        for batch, _ in loader:
            batches += 1
            got.extend(_fingerprint(c) for c in batch)
        assert sorted(got) == want
        assert batches == len(loader)


def test_train_epochs_reshuffle_and_yield_the_split_size(packed):
    clips, base = packed
    pattern = json.loads((base / "many" / "train.json").read_text())["pattern"]
    loader = build_shard_loader(str(base / "many" / pattern), CLIP, _config(batch_size=2))
    index = read_index(str(base / "many" / "train.json"))
    assert loader.dataset.shards.index == index and len(loader) == index.total_clips // 2
    orders = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        orders.append([label.item() for _, labels in loader for label in labels])
        assert len(orders[-1]) == index.total_clips - index.total_clips % 2
    assert sorted(orders[0]) == sorted(r.label for r in clips.records)


def _tamper(tar_path: Path, out: Path) -> str:
    """A copy of the tar with one byte of its second video changed; that clip's list path."""
    data = bytearray(tar_path.read_bytes())
    with tarfile.open(tar_path) as tar:
        videos = [m for m in tar.getmembers() if not m.name.endswith(".json")]
        victim = videos[1]
        meta = json.loads(tar.extractfile(victim.name.rsplit(".", 1)[0] + ".json").read())
    data[victim.offset_data + victim.size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return meta["path"]


def test_a_tampered_clip_is_a_counted_bad_sample_replaced_by_the_next(packed, tmp_path):
    clips, base = packed
    bad_path = _tamper(base / "one" / "train-000000.tar", tmp_path / "train-000000.tar")
    loader = build_shard_loader(str(tmp_path / "train-000000.tar"), CLIP.for_mode("val"), _config())
    labels = [int(label) for _, batch in loader for label in batch]
    assert len(labels) == len(clips.records)  # the bad clip's place is taken by the next good one
    assert loader.bad_events == 1
    (bad,) = loader.bad_samples.values()
    assert bad.kind == "checksum" and bad.index == 1 and "sha256" in bad.reason
    assert bad.path == bad_path == clips.records[1].path
    # the stand-in takes the bad clip's place: every list position once
    assert sorted(i for i, _ in loader.seen) == list(range(len(clips.records)))


def test_an_index_naming_a_path_outside_its_folder_is_refused(packed, tmp_path):
    _, base = packed
    index = json.loads((base / "many" / "train.json").read_text())
    for name in ("../secret.tar", "/etc/passwd", "pipe:rm -rf ~", "https://elsewhere/x.tar", "sub/x.tar"):
        index["shards"][0]["name"] = name
        (tmp_path / "train.json").write_text(json.dumps(index))
        with pytest.raises(ShardError, match="leaves the index's folder"):
            read_index(str(tmp_path / "train.json"))


def test_pipe_only_when_allowed(packed):
    clips, base = packed
    pattern = f"pipe:cat {base / 'one' / 'train-000000.tar'}"
    with pytest.raises(ShardError, match="only from the command line"):
        build_shard_loader(pattern, CLIP.for_mode("val"), _config())
    loader = build_shard_loader(pattern, CLIP.for_mode("val"), _config(), allow_pipe=True)
    assert sum(len(labels) for _, labels in loader) == len(clips.records)
    # train stops each epoch at its quota, mid-stream: the command is stopped, not an error
    train = build_shard_loader(pattern, CLIP, _config(batch_size=4, shuffle=True), allow_pipe=True)
    for epoch in (0, 1):
        train.set_epoch(epoch)
        assert [len(labels) for _, labels in train] == [4]
    failing = build_shard_loader("pipe:exit 3", CLIP.for_mode("val"), _config(), allow_pipe=True)
    with pytest.raises(ShardError, match="no readable clip"):
        list(failing)


@pytest.fixture
def http_root(packed):
    """The shard folder served on 127.0.0.1."""
    _, base = packed
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(base / "many"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_shards_and_index_give_the_local_clips(packed, http_root):
    _, base = packed
    local = build_shard_loader(str(base / "many" / "train.json"), CLIP.for_mode("val"), _config())
    remote = build_shard_loader(f"{http_root}/train.json", CLIP.for_mode("val"), _config())
    assert remote.dataset.shards.urls[0].startswith(http_root)
    first = [_fingerprint(c) for c, _ in local]
    assert [_fingerprint(c) for c, _ in remote] == first
    pattern = json.loads((base / "many" / "train.json").read_text())["pattern"]
    by_pattern = build_shard_loader(f"{http_root}/{pattern}", CLIP.for_mode("val"), _config())
    assert by_pattern.dataset.shards.index is not None  # found beside the shards over HTTP
    assert sorted(_fingerprint(c) for c, _ in by_pattern) == sorted(first)


@pytest.mark.slow
def test_two_ddp_ranks_see_every_validation_clip_exactly_once(packed, tmp_path):
    clips, base = packed
    single = build_shard_loader(str(base / "many" / "train.json"), CLIP.for_mode("val"), _config())
    want = sorted(_fingerprint(c) for batch, _ in single for c in batch)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    for mode in ("val", "train"):
        out = tmp_path / f"{mode}.json"
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(REPO / "tests" / "pipelines" / "ddp_shards_probe.py"),
                              str(base / "many" / "train.json"), mode, str(out)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-3000:]
        ranks = json.loads(out.read_text())
        for rank in ranks:
            assert rank["batches"] == rank["len"]
        if mode == "val":
            assert sorted(fp for rank in ranks for fp, _ in rank["seen"]) == want
        else:  # every rank the same number of steps (DDP would hang otherwise)
            assert ranks[0]["batches"] == ranks[1]["batches"] == len(clips.records) // 2 // 2


def test_bench_shards_measures_both_loaders_and_writes_its_json(packed, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    clips, base = packed
    result = CliRunner().invoke(cli, ["bench", str(clips.list_file), "--root-path", str(clips.root), "--shards",
                                      str(base / "many" / "train.json"), "--workers", "0", "--repeats", "1",
                                      "--batch-size", "1", "--seq-length", "4", "--sample-rate", "2",
                                      "--out", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench" / "bench_shards.json").read_text())
    assert {(r["loader"], r["workers"]) for r in report["rows"]} == {("shards", 0), ("list", 0)}
    assert all(r["clips_per_s"] > 0 for r in report["rows"]) and report["shards_over_list"]["0"] > 0
    assert "shards / list at workers 0" in result.output


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_reader_reads_what_tarfile_writes_and_refuses_damage(fmt, tmp_path):
    import io

    from videoprep.tarshards import TarFormatError, tar_members

    long = "a" * 90 + "/" + "b" * 60 + ".mp4"  # past ustar's 100-byte name (ustar splits it into a prefix)
    names = ["short.json", long, "üñí.json"] if fmt != tarfile.USTAR_FORMAT else ["short.json", long]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # not a regular file: skipped
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = 1000 + i
            tar.addfile(info, io.BytesIO(bytes([i]) * info.size))
    data = buf.getvalue()
    got = list(tar_members(io.BytesIO(data), "t.tar"))
    assert got == [(name, bytes([i]) * (1000 + i)) for i, name in enumerate(names)]
    with pytest.raises(TarFormatError, match="cut short"):
        list(tar_members(io.BytesIO(data[: 512 * 3 + 100]), "t.tar"))
    damaged = bytearray(data)
    damaged[512 + 130] ^= 0x01  # a size digit of the second header
    with pytest.raises(TarFormatError, match="checksum"):
        list(tar_members(io.BytesIO(bytes(damaged)), "t.tar"))


def test_a_truncated_shard_costs_its_clips_not_the_run(packed, tmp_path):
    clips, base = packed
    whole = (base / "one" / "train-000000.tar").read_bytes()
    (tmp_path / "train-000000.tar").write_bytes(whole[: len(whole) // 2])
    loader = build_shard_loader(str(tmp_path / "train-000000.tar"), CLIP.for_mode("val"), _config())
    assert sum(len(labels) for _, labels in loader) >= 1
    assert any("cut short" in b.reason for b in loader.bad_samples.values())


def test_a_split_whose_shards_all_fail_stops_instead_of_spinning(packed, tmp_path):
    from pipelines.planning import BadSampleError

    _, base = packed
    index = json.loads((base / "many" / "train.json").read_text())
    (tmp_path / "train.json").write_text(json.dumps(index))  # the index without its tars
    loader = build_shard_loader(str(tmp_path / "train.json"), CLIP, _config(max_replacements=3))
    with pytest.raises(BadSampleError, match="all failed"):
        list(loader)
