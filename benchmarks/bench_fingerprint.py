"""Hashing throughput of `videoprep fingerprint` against `find | xargs -P N sha256sum` on the same tree.

    .venv/bin/python benchmarks/bench_fingerprint.py --files 96 --size-mb 4 --jobs 2 --rounds 5 [--drop-caches] [--out DIR]

Writes a dataset-like tree (train/{class}/{id}.mp4 of random bytes), then in interleaved rounds
(the order alternates) times `videoprep fingerprint TREE -j N` (a fresh process, as a user runs it)
and `find TREE -type f -name '*.mp4' -print0 | xargs -0 -P N -n 8 sha256sum`. Both must agree on
every file's hash. Prints the median MB/s of each, the ratio of the medians and the median of the
per-round ratios (goal: >= 0.8), with the load before and after. The page cache is warm unless
--drop-caches (root only; it drops every cache of the machine before each timed run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videoprep.atomic import atomic_write_json  # noqa: E402
from videoprep.fingerprint import hash_folder  # noqa: E402

GOAL = 0.8


def make_tree(root: Path, *, files: int, size_mb: float) -> int:
    """`files` random clips of about size_mb MB in 8 class folders; returns the bytes written."""
    total = 0
    for i in range(files):
        path = root / "train" / f"class_{i % 8}" / f"clip{i:05d}_000000_000010.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = int(size_mb * 1e6) + i * 4096  # sizes differ a little, as clips do
        path.write_bytes(os.urandom(size))
        total += size
    return total


def drop_caches() -> None:
    """Empty the page cache so the next run reads from disk (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def time_command(cmd: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of one run; a failure stops the benchmark."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, shell=shell, check=True, capture_output=True, text=True, env=env,
                          executable="/bin/bash" if shell else None)
    return time.perf_counter() - started, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--size-mb", type=float, default=4.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="N for both tools")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--root", type=Path, default=None, help="where the tree goes (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "bench_fingerprint",
                        help="folder for result.json")
    args = parser.parse_args()
    tree = Path(args.root or tempfile.mkdtemp(prefix="bench-fingerprint-"))
    total = make_tree(tree, files=args.files, size_mb=args.size_mb)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours_cmd = [sys.executable, "-m", "cli", "-q", "fingerprint", str(tree), "-j", str(args.jobs)]
    theirs_cmd = (f"find {tree} -type f -name '*.mp4' -print0 | xargs -0 -P {args.jobs} -n 8 sha256sum")
    # the same hashes from both, once
    _, out = time_command(theirs_cmd, shell=True)
    sums = {Path(line.split("  ", 1)[1]).stem: line.split()[0] for line in out.splitlines()}
    assert sums == {r.id: r.sha256 for r in hash_folder(tree, jobs=args.jobs)}, "the tools disagree"
    load_start = os.getloadavg()
    rows: dict[str, list[float]] = {"videoprep": [], "sha256sum": []}
    for round_ in range(args.rounds):
        order = ["videoprep", "sha256sum"] if round_ % 2 == 0 else ["sha256sum", "videoprep"]
        for name in order:
            if args.drop_caches:
                drop_caches()
            seconds, _ = (time_command(ours_cmd, env=env) if name == "videoprep"
                          else time_command(theirs_cmd, shell=True))
            rows[name].append(total / 1e6 / seconds)
    ratios = [ours / theirs for ours, theirs in zip(rows["videoprep"], rows["sha256sum"], strict=True)]
    result = {
        "command": " ".join(sys.argv), "files": args.files, "bytes": total, "jobs": args.jobs,
        "cache": "cold (dropped before each run)" if args.drop_caches else "warm",
        "mb_per_s": rows, "median_mb_per_s": {k: round(statistics.median(v), 1) for k, v in rows.items()},
        "ratio_of_medians": round(statistics.median(rows["videoprep"]) / statistics.median(rows["sha256sum"]), 3),
        "median_round_ratio": round(statistics.median(ratios), 3), "goal": GOAL,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
    }
    result["met"] = result["ratio_of_medians"] >= GOAL
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "result.json", result)
    print(json.dumps({k: result[k] for k in ("median_mb_per_s", "ratio_of_medians", "median_round_ratio", "met",
                                             "loadavg_start", "loadavg_end", "cache")}))
    if args.root is None:
        subprocess.run(["rm", "-rf", str(tree)], check=True)


if __name__ == "__main__":
    main()
