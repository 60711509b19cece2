"""`index` and `validate` at Kinetics' file count: a first run against a re-run with nothing changed.

    .venv/bin/python benchmarks/bench_scale.py --files 260000 --jobs 2 --repeats 3

Builds (once, cached) a tree of `--files` clips in 400 class folders, every clip a
hard link to one of a few real MP4s (4, or one per 50,000 clips) encoded by the pinned ffmpeg (imageio-ffmpeg's
static build), 1 in 100 names with a space (so the safe-named symlink view is
used). Then, each command in a child process as a user runs it: `index` and
`validate` from scratch (journal and outputs removed), and `--repeats` re-runs
with nothing changed; `--stages index,fresh` also times one `index --fresh` run
over the full journal. Prints wall seconds and peak RSS of each run, the re-run's
median as a share of the first run (goal: <= 2%), and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoprep.ffmpeg import ffmpeg_exe  # noqa: E402

CLASSES = 400
SOURCES = 4  # distinct real encodes the tree links to (more for big trees: ext4 allows 65,000 links per file)
LINKS_PER_SOURCE = 50_000
GOAL_SHARE = 0.02  # a re-run with nothing changed costs at most this share of the first run


def make_sources(folder: Path, count: int) -> list[Path]:
    """`count` 2-second 160x120 H.264 clips encoded by the pinned ffmpeg (different test patterns)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for i in range(count):
        path = folder / f"source{i}.mp4"
        if not path.exists():
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size=160x120:rate=25:duration=2,hue=h={i * 360 // count}",
                            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", str(path)], check=True)
        sources.append(path)
    return sources


def make_tree(cache: Path, files: int) -> Path:
    """cache/tree-N/train/class_XXX/clip_NNNNNNN.mp4 (1 in 100 named 'clip NNNNNNN.mp4'), hard links."""
    root = cache / f"tree-{files}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    sources = make_sources(cache / f"sources-{files}", max(SOURCES, -(-files // LINKS_PER_SOURCE)))
    for c in range(CLASSES):
        (root / "train" / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        name = f"clip {i:07d}.mp4" if i % 100 == 0 else f"clip_{i:07d}.mp4"
        os.link(sources[i % len(sources)], root / "train" / f"class_{i % CLASSES:03d}" / name)
    (root / ".complete").write_text("ok\n")
    return root


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the videoprep process) of one CLI run; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"videoprep {' '.join(args)} failed:\n{stderr.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def measure(name: str, args: list[str], clean: list[Path], repeats: int) -> dict:
    """A first run from nothing, then `repeats` re-runs with nothing changed."""
    for path in clean:
        shutil.rmtree(path, ignore_errors=True)
    first, first_rss = timed(args)
    reruns = [timed(args) for _ in range(repeats)]
    median = statistics.median(wall for wall, _ in reruns)
    row = {"stage": name, "first_s": round(first, 2), "first_rss_mib": round(first_rss),
           "rerun_s": [round(wall, 2) for wall, _ in reruns], "rerun_median_s": round(median, 2),
           "rerun_rss_mib": round(max(rss for _, rss in reruns)), "share": round(median / first, 4)}
    mark = "met" if row["share"] <= GOAL_SHARE else "MISSED"
    print(f"{name}: first {first:.1f} s ({first_rss:.0f} MiB), re-run median {median:.2f} s of {repeats} "
          f"({row['rerun_rss_mib']} MiB): {100 * row['share']:.2f}% of the first run (goal <= 2%: {mark})",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=26_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="re-runs with nothing changed (median reported)")
    parser.add_argument("--stages", default="index,validate")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "videoprep-scale")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    root = make_tree(args.cache, args.files)
    print(f"tree: {args.files} files in {CLASSES} classes under {root} "
          f"(built or reused in {time.perf_counter() - started:.1f} s); load {os.getloadavg()}", flush=True)
    work = args.cache / f"work-{args.files}"
    rows = []
    jobs = ["-j", str(args.jobs)]
    for stage in args.stages.split(","):
        if stage == "index":
            out, view = work / "lists", work / "safe"
            rows.append(measure("index", ["index", str(root), "--out", str(out), "--safe-dir", str(view), *jobs],
                                [out, view], args.repeats))
        elif stage == "fresh":  # after index: every video probed again over the full journal (was quadratic)
            out, view = work / "lists", work / "safe"
            wall, rss = timed(["index", str(root), "--out", str(out), "--safe-dir", str(view), "--fresh", *jobs])
            print(f"index --fresh: {wall:.1f} s ({rss:.0f} MiB)", flush=True)
            rows.append({"stage": "index --fresh", "first_s": round(wall, 2), "first_rss_mib": round(rss)})
        elif stage == "validate":
            state = work / "validate-state"
            rows.append(measure("validate", ["validate", str(root), "--state-dir", str(state), *jobs], [state],
                                args.repeats))
    result = {"files": args.files, "classes": CLASSES, "jobs": args.jobs, "cpu_count": os.cpu_count(),
              "loadavg_end": os.getloadavg(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
