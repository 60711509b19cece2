"""WebDataset shards against the file tree: writing, local training input, HTTP with latency, reader memory.

    .venv/bin/python benchmarks/bench_shards.py --videos 240 --repeats 5 --json shards.json
    .venv/bin/python benchmarks/bench_shards.py --videos 960 --shard-size 64MiB --only write --repeats 5
    .venv/bin/python benchmarks/bench_shards.py --videos 1920 --shard-size 256MiB --only write --repeats 5

Four measurements, each interleaved (A, B, A, B, ...) so both sides see the same load;
ratios are medians of one run:

1. write: `videoprep shard` (the stage engine, -j 2) against `tar cf` over the same files
   (MB/s of video bytes, and CPU seconds per GB: user + system, workers included; the page
   cache is warm for both);
2. local input: clips/s of `build_shard_loader` against the file-list loader
   (`build_loader`, pyav), train view, the same workers, decode + crop + collate;
3. HTTP: a loopback server that sleeps 20 ms before every response; clips/s of reading
   the clips (bytes, sha256-checked) from shards against one request per clip file, and
   of the whole loader (decode included) both ways;
4. memory: peak RSS of a fresh process that streams 10 shards, and 1,000 shards, of
   one tiny clip each through the shard loader.

The videos (340x256, 30 fps, 10 s, H.264 GOP 32 crf 32: about 670 KB each, four distinct
encodes copied) are generated once; the shards hold 16 MiB each (a few per DataLoader worker);
they and the index (`videoprep index`, whose manifest gives the shards fps and size without
probing) live in --cache.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from pipelines.bench.report import machine_description  # noqa: E402
from pipelines.loader import build_loader, collate_items, worker_init  # noqa: E402
from pipelines.shards import ShardClipDataset, ShardItem, build_shard_loader  # noqa: E402
from pipelines.spec import ClipSpec, LoaderConfig  # noqa: E402
from videoprep.index import IndexConfig, run_index  # noqa: E402
from videoprep.records import read_list  # noqa: E402
from videoprep.shards import ShardConfig, parse_size, run_shard  # noqa: E402
from videoprep.synth import write_video  # noqa: E402
from videoprep.tarshards import RawSample, open_shard, resolve_shards, tar_samples  # noqa: E402

LATENCY_S = 0.020
CLIP = ClipSpec(mode="train", seq_length=8, sample_rate=8, crop_size=112, scale_size=128)


def make_dataset(cache: Path, *, videos: int) -> Path:
    """`cache/vN/train/class_k/vid_i.mp4` and its index (`lists/train.txt`, manifest.csv)."""
    root = cache / f"v{videos}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    # crf 32: about 670 KB per 10 s, the size of a Kinetics clip at 256p (460-774 KB by GOP)
    sources = [write_video(root / "_src" / f"s{seed}.mp4", num_frames=300, width=340, height=256, fps=30,
                           gop=32, crf=32, seed=seed) for seed in range(4)]
    for i in range(videos):
        dst = root / "videos" / "train" / f"class_{i % 10:02d}" / f"vid{i:06d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % 4], dst)
    shutil.rmtree(root / "_src")
    run_index(IndexConfig(video_root=root / "videos", out_dir=root / "lists", jobs=2))
    (root / ".complete").write_text("ok\n")
    return root


def interleave(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each run once per repetition, the order rotated; every figure kept."""
    names = list(runs)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            figures[name].append(runs[name]())
    return figures


def summary(figures: dict[str, list[float]], a: str, b: str) -> dict:
    med = {name: statistics.median(values) for name, values in figures.items()}
    return {"runs": {k: [round(x, 2) for x in v] for k, v in figures.items()},
            "median": {k: round(v, 2) for k, v in med.items()}, "ratio": round(med[a] / med[b], 3),
            "ratio_of": f"{a} / {b}"}


# --- 1. writing ------------------------------------------------------------------------


def bench_write(root: Path, work: Path, repeats: int, shard_size: int) -> dict:
    list_file = root / "lists" / "train.txt"
    records = read_list(list_file)
    total = sum((root / "videos" / r.path).stat().st_size for r in records)
    files = work / "files.txt"
    files.write_text("".join(r.path + "\n" for r in records))

    cpu: dict[str, list[float]] = {"shard": [], "tar_cf": []}

    def timed(name: str, work_fn: Callable[[], None]) -> float:
        cpu_before, start = _cpu_seconds(), time.perf_counter()
        work_fn()
        wall = time.perf_counter() - start
        cpu[name].append(_cpu_seconds() - cpu_before)
        return total / 1e6 / wall

    def shard() -> float:
        out = work / "shard-out"
        shutil.rmtree(out, ignore_errors=True)
        return timed("shard", lambda: run_shard(ShardConfig(list_file=list_file, root_path=root / "videos",
                                                             out_dir=out, jobs=2, shard_size=shard_size)))

    def tar() -> float:
        out = work / "plain.tar"
        out.unlink(missing_ok=True)
        return timed("tar_cf", lambda: subprocess.run(
            ["tar", "cf", str(out), "-C", str(root / "videos"), "-T", str(files)], check=True))

    shard(), tar()  # warm the page cache for both
    cpu = {"shard": [], "tar_cf": []}
    figures = summary(interleave({"shard": shard, "tar_cf": tar}, repeats), "shard", "tar_cf")
    cpu_per_gb = {name: round(statistics.median(v) / (total / 1e9), 2) for name, v in cpu.items()}
    return {"bytes": total, "unit": "MB/s", **figures, "cpu_s_per_gb": cpu_per_gb}


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (pool workers, tar)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --- 2. local training input ----------------------------------------------------------


def _clips_per_s(loader, *, skip: int) -> float:
    clips, start = 0, None
    for n, (batch, _labels) in enumerate(loader, start=1):
        if n == skip:
            start = time.perf_counter()
        elif n > skip:
            clips += batch.shape[0]
    return clips / (time.perf_counter() - start)


def bench_local(root: Path, shards: Path, repeats: int, workers: int) -> dict:
    config = LoaderConfig(root_path=str(root / "videos"), batch_size=4, workers=workers, num_classes=10,
                          persistent_workers=False, backend="pyav")
    skip = max(1, workers)
    runs = {
        "shards": lambda: _clips_per_s(build_shard_loader(str(shards / "train.json"), CLIP, config), skip=skip),
        "list": lambda: _clips_per_s(build_loader(root / "lists" / "train.txt", CLIP, config), skip=skip),
    }
    return {"workers": workers, "unit": "clips/s", **summary(interleave(runs, repeats), "shards", "list")}


# --- 3. HTTP with latency ----------------------------------------------------------------


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; every response waits LATENCY_S first (a remote store's round trip)."""

    def send_head(self):  # noqa: D102 - the one place every GET and HEAD goes through
        time.sleep(LATENCY_S)
        return super().send_head()

    def log_message(self, *args) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:  # noqa: ANN001 - the base class's signature
        """sendfile, as a production server (nginx) sends files: the server's copy is not what is measured."""
        self.connection.sendfile(source)

    def handle(self) -> None:
        # a loader that stopped early (its epoch quota) closed the connection
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()


class PerFileDataset(Dataset):
    """One GET per clip file, then the shard loader's own checks, decode and crop (only the transport differs)."""

    def __init__(self, base: str, records, meta: list[dict], clip: ClipSpec, config: LoaderConfig) -> None:
        self.base, self.records, self.meta = base, records, meta
        self.decoder = ShardClipDataset(resolve_shards(str(Path(os.devnull))), clip, config)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ShardItem:
        rec = self.records[index]
        with urllib.request.urlopen(f"{self.base}/videos/{urllib.request.quote(rec.path)}") as response:
            data = response.read()
        sample = RawSample(url=self.base, key=rec.path, video=data, ext="mp4", meta=self.meta[index])
        clips, label = self.decoder.load(sample)
        return ShardItem(clips, label, (), index, rec.path)


def _read_shards(urls: list[str]) -> float:
    import hashlib

    count, start = 0, time.perf_counter()
    for url in urls:
        with open_shard(url, allow_pipe=False) as stream:
            for sample in tar_samples(stream, url):
                assert hashlib.sha256(sample.video).hexdigest() == sample.meta["sha256"]
                count += 1
    return count / (time.perf_counter() - start)


def _read_files(base: str, records, meta: list[dict]) -> float:
    import hashlib

    start = time.perf_counter()
    for rec, m in zip(records, meta, strict=True):
        with urllib.request.urlopen(f"{base}/videos/{urllib.request.quote(rec.path)}") as response:
            assert hashlib.sha256(response.read()).hexdigest() == m["sha256"]
    return len(records) / (time.perf_counter() - start)


def bench_http(root: Path, shards: Path, repeats: int, workers: int) -> dict:
    serve = Path(tempfile.mkdtemp(prefix="bench-http-"))
    (serve / "videos").symlink_to(root / "videos")
    (serve / "shards").symlink_to(shards)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(SlowHandler, directory=str(serve)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    records = read_list(root / "lists" / "train.txt")
    meta = [None] * len(records)
    for url in resolve_shards(str(shards / "train.json")).urls:
        with open_shard(url, allow_pipe=False) as stream:
            for sample in tar_samples(stream, url):
                meta[sample.meta["index"]] = sample.meta
    urls = resolve_shards(f"{base}/shards/train.json").urls
    config = LoaderConfig(batch_size=4, workers=workers, num_classes=10, persistent_workers=False)
    skip = max(1, workers)

    def per_file_loader() -> float:
        dataset = PerFileDataset(base, records, meta, CLIP, config)
        loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers, collate_fn=collate_items,
                            worker_init_fn=worker_init if workers else None)
        return _clips_per_s(((c, lab) for c, lab, _bad in loader), skip=skip)

    try:
        read = interleave({"shards": lambda: _read_shards(list(urls)),
                           "per_file": lambda: _read_files(base, records, meta)}, repeats)
        load = interleave({"shards": lambda: _clips_per_s(build_shard_loader(f"{base}/shards/train.json", CLIP,
                                                                             config), skip=skip),
                           "per_file": per_file_loader}, repeats)
    finally:
        server.shutdown()
        shutil.rmtree(serve)
    return {"latency_s": LATENCY_S, "workers": workers, "unit": "clips/s",
            "read": summary(read, "shards", "per_file"), "loader": summary(load, "shards", "per_file")}


# --- 4. memory ----------------------------------------------------------------------------

_MEMORY_CHILD = """
import resource, sys
from pipelines.shards import build_shard_loader
from pipelines.spec import ClipSpec, LoaderConfig
clip = ClipSpec(mode="val", seq_length=2, sample_rate=1, crop_size=32, scale_size=40)
loader = build_shard_loader(sys.argv[1], clip, LoaderConfig(batch_size=1, workers=0, num_classes=2))
n = sum(len(labels) for _, labels in loader)
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_memory(work: Path) -> dict:
    from tests.shard_data import make_clip_list

    clips = make_clip_list(work / "tiny", count=1, frames=4)
    one = work / "one"
    run_shard(ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=one, jobs=1))
    index = json.loads((one / "train.json").read_text())
    result = {}
    for count in (10, 1000):
        folder = work / f"n{count}"
        folder.mkdir()
        for i in range(count):
            os.link(one / "train-000000.tar", folder / f"train-{i:06d}.tar")
        index["shards"] = [{**index["shards"][0], "name": f"train-{i:06d}.tar"} for i in range(count)]
        (folder / "train.json").write_text(json.dumps(index))
        run = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(folder / "train.json")], check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        clips_seen, rss_kib = map(int, run.stdout.split())
        result[str(count)] = {"clips": clips_seen, "peak_rss_mib": round(rss_kib / 1024, 1)}
    result["ratio"] = round(result["1000"]["peak_rss_mib"] / result["10"]["peak_rss_mib"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", default="16MiB", help="shard size for the writing and reading runs")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videoprep-bench-shards")
    parser.add_argument("--only", default="write,local,http,memory", help="comma-separated parts to run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = make_dataset(args.cache, videos=args.videos)
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    shards = args.cache / f"v{args.videos}-shards-{args.shard_size}"
    if not (shards / "train.json").exists():
        run_shard(ShardConfig(list_file=root / "lists" / "train.txt", root_path=root / "videos", out_dir=shards,
                              jobs=2, shard_size=parse_size(args.shard_size)))
    parts = set(args.only.split(","))
    report = {"command": " ".join(sys.argv), "machine": machine_description(), "videos": args.videos,
              "clip": {"seq_length": CLIP.seq_length, "sample_rate": CLIP.sample_rate, "crop": CLIP.crop_size}}
    try:
        for name, fn in (("write", lambda: bench_write(root, work, args.repeats, parse_size(args.shard_size))),
                         ("local", lambda: bench_local(root, shards, args.repeats, args.workers)),
                         ("http", lambda: bench_http(root, shards, args.repeats, args.workers)),
                         ("memory", lambda: bench_memory(work))):
            if name in parts:
                report[name] = fn()
                print(name, json.dumps(report[name]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
