"""Per core on a shared machine: CPU time per clip of our reader (one decoder thread) against torchcodec 0.13.

    .venv/bin/python benchmarks/bench_loaders_cpu.py --out bench-out/loaders_cpu [--cpu 0] [--rounds 5]

Wall-clock ratios on a machine that other jobs share move by tens of percent, even between two
rows that run the same code; the CPU time a process spends per clip (`time.process_time`, all
its threads) moves far less. Both sides get one decoder thread (torchcodec:
`num_ffmpeg_threads=1`, one torch thread), take turns in a shuffled order each round on the
same clips (train view: 8 frames at rate 8), and the medians of the rounds are compared.
The sample is the real-footage one of bench_loaders (reused from OUT/../bench_loaders/sample
when `make bench` built it, else built here). Writes OUT/cpu.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import _common  # noqa: F401  (puts the checkout on sys.path)

from pipelines.bench import plan_samples
from pipelines.bench.goals import LOADER_FORMATS
from pipelines.spec import ClipSpec
from videoprep.atomic import atomic_write_json
from videoprep.benchsample import SampleConfig, make_sample
from videoprep.records import read_list


def contenders() -> dict:
    """name -> fn(sample): our reader with one decoder thread, torchcodec exact and approximate with one thread."""
    import torch
    from torchcodec.decoders import VideoDecoder

    from pipelines.backends.pyav import PyAVReader
    from pipelines.decode import set_decoder_threads

    torch.set_num_threads(1)
    set_decoder_threads(1)
    reader = PyAVReader()

    def torchcodec(mode: str):
        return lambda s: VideoDecoder(s.path, seek_mode=mode, num_ffmpeg_threads=1).get_frames_at(
            indices=list(s.indices))

    return {"pyav_1t": lambda s: reader.read(s.path, s.indices), "torchcodec": torchcodec("exact"),
            "torchcodec_approx": torchcodec("approximate")}


def cpu_ms_per_clip(fns: dict, samples: list, rounds: int) -> dict[str, float]:
    """Median over rounds (after one warm-up) of CPU ms per clip, each round in a shuffled order."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds + 1):
        order = list(fns)
        random.Random(r).shuffle(order)
        for name in order:
            start = time.process_time()
            for s in samples:
                fns[name](s)
            if r:
                runs[name].append((time.process_time() - start) / len(samples) * 1e3)
    return {name: round(statistics.median(v), 3) for name, v in runs.items()}


def sample(out: Path) -> tuple[Path, str]:
    """bench_loaders' finished real-footage sample beside OUT when it holds the five formats, else one built in OUT."""
    built = out.parent / "bench_loaders" / "sample"
    try:
        sets = json.loads((built / "sample.json").read_text(encoding="utf-8"))["sets"]
        if all(e in sets and (built / f"{e}.txt").is_file() for e in LOADER_FORMATS):
            return built, sets[LOADER_FORMATS[0]].get("source", "")
    except (OSError, ValueError, KeyError):
        pass  # no finished sample there: build one
    return out / "sample", make_sample(SampleConfig(out_dir=out / "sample", encodings=LOADER_FORMATS)).source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/loaders_cpu"))
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="pin the run to this CPU (as `taskset -c N`)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    sample_dir, source = sample(args.out)
    fns = contenders()
    load_start = os.getloadavg()
    rows = {}
    for enc in LOADER_FORMATS:
        samples = plan_samples(read_list(sample_dir / f"{enc}.txt"), root_path=str(sample_dir), view="train",
                               clips=args.clips, clip=ClipSpec(seq_length=8, sample_rate=8, test_segments=10), seed=0)
        ms = cpu_ms_per_clip(fns, samples, args.rounds)
        ratio = round(min(ms["torchcodec"], ms["torchcodec_approx"]) / ms["pyav_1t"], 3)
        rows[enc] = {"cpu_ms_per_clip": ms, "faster_torchcodec_over_ours": ratio, "met": ratio >= 1.0}
        print(f"{enc:12s} CPU ms/clip: pyav 1 thread {ms['pyav_1t']:.2f}, torchcodec exact {ms['torchcodec']:.2f}, "
              f"approximate {ms['torchcodec_approx']:.2f}: {ratio:.2f}x {'met' if ratio >= 1.0 else 'MISSED'}",
              flush=True)
    report = {"sample": source, "clips": args.clips, "rounds": args.rounds, "pinned_cpu": args.cpu,
              "loadavg": [list(load_start), list(os.getloadavg())], "formats": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "cpu.json", report)
    print(f"sample: {source}\nload {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; {args.out / 'cpu.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
