"""Transcode speed: our overhead per video against ffmpeg run by hand, and -j 2 against -j 1.

    .venv/bin/python benchmarks/bench_transcode.py --videos 4 --repeats 3 [--top-priority] [--presets] [--json out.json]

Sources are 720p, 30 fps, 10 s H.264 clips (generated once into --cache).
1. Overhead of one run on one file (the worst case: the process pool starts and
   stops for a single video): the exact ffmpeg argument list `videoprep
   transcode` builds, run by hand with subprocess, against `run_transcode` on a
   folder holding only that file (discovery, probing source and output, pool,
   journal, mapping and report included).
2. Batch: the --videos files by hand one after another, against `run_transcode`
   with -j 1 (per-video overhead; goal within 5%) and with -j 2 (one ffmpeg
   thread per video, the default; goal >= 1.8x the throughput of -j 1 on 2 cores).
3. Pipeline: one by-hand run with the CPU seconds of each ffmpeg thread (sampled
   from /proc). ffmpeg >= 7 runs demuxing, decoding, filtering and encoding in
   threads of their own even at `-threads 1`, so one job can use more than one core;
   the busiest thread bounds how many (`cores_one_job_can_use`), which bounds what
   -j 2 can add over -j 1 on 2 idle cores (`j2_over_j1_at_ideal_pipelining_on_2_idle_cores`:
   -j 1 limited only by its busiest thread, -j 2 by the total CPU).
Wall and CPU seconds are both reported: CPU time (this process plus every
reaped child: ffmpeg, pool workers) is far less disturbed by other load on a
shared machine. Repeats rotate the order; ratios are of medians from one run.
--top-priority measures as if the machine were idle: with Linux autogroup scheduling,
CPU is shared between sessions (each ffmpeg we start is one), and this puts the bench's
session and every ffmpeg's at autogroup nice -20 (needs root or CAP_SYS_NICE; it takes
the machine from other users for the bench's duration).
--goal measures the overhead goal instead (all of the above skipped): `videoprep transcode -j J`
(index included, as the CLI runs it) against the same ffmpeg commands run by hand J at a time
(like `xargs -P J`), on 256p clips of 10 s and of 2 s; goals: within 5% (10 s) and 15% (2 s).
--presets adds a table of x264 presets (frames per CPU second, output size) for one file.
--decode adds how fast PyAV (one thread) decodes the h264 output of one file made with x264's
own default tune, with our default `-tune fastdecode`, and without B-frames (x264 bframes=0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import VideoSet, generated_videos

from videoprep.ffmpeg import ffmpeg_exe
from videoprep.probe import probe_video
from videoprep.synth import write_video
from videoprep.transcode import (
    EncodeSettings,
    TranscodeConfig,
    output_rate,
    run_transcode,
    scaled_size,
    transcode_args,
)

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30, 10


def take_top_priority(work: Path) -> None:
    """Autogroup nice -20 for this session and, through a wrapper, for every ffmpeg session we start."""
    Path("/proc/self/autogroup").write_text("-20")
    wrapper = work / "ffmpeg-top-priority"
    wrapper.write_text(f'#!/bin/sh\necho -20 > /proc/self/autogroup\nexec "{ffmpeg_exe()}" "$@"\n')
    wrapper.chmod(0o755)
    os.environ["VIDEOPREP_FFMPEG"] = str(wrapper)  # pool workers fork after this and inherit it
    ffmpeg_exe.cache_clear()


def make_sources(cache: Path, *, videos: int) -> list[Path]:
    """`videos` distinct 720p clips, generated once and reused across runs."""
    clips = VideoSet("clip", ".mp4", {"codec": "h264", "gop": 250, "crf": 20, "options": {"preset": "veryfast"}})
    return generated_videos(cache / f"src_{WIDTH}x{HEIGHT}_{FPS}fps_{SECONDS}s", clips, count=videos,
                            frames=FPS * SECONDS, width=WIDTH, height=HEIGHT, fps=FPS)


def by_hand_command(source: Path, output: Path, settings: EncodeSettings) -> list[str]:
    """What a user would type: the same arguments our stage passes to ffmpeg."""
    info = probe_video(source)
    width, height = scaled_size(info.width, info.height, short_side=settings.short_side)
    args = transcode_args(str(source), str(output), settings=settings, rate=output_rate(settings.fps, info.fps),
                          width=width, height=height)
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]


def cpu_seconds() -> float:
    """CPU time of this process plus every reaped child (ffmpeg, pool workers and their ffmpeg)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def time_by_hand(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ffmpeg run."""
    t, c = time.perf_counter(), cpu_seconds()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t, cpu_seconds() - c


def thread_profile(cmd: list[str], *, interval_s: float = 0.02) -> dict:
    """Wall and CPU seconds of one ffmpeg run, and CPU seconds per thread name (dec0:0:h264, fc0, ...)."""
    tick = os.sysconf("SC_CLK_TCK")
    per_thread: dict[str, tuple[str, float]] = {}
    t, c = time.perf_counter(), cpu_seconds()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError):
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{proc.pid}/task/{tid}/stat").read_text()
                    fields = stat[stat.rindex(")") + 2 :].split()
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    per_thread[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
        time.sleep(interval_s)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    stages: dict[str, float] = {}
    for name, seconds in per_thread.values():
        stages[name] = stages.get(name, 0.0) + seconds
    return {"wall_s": wall, "cpu_s": cpu, "threads": dict(sorted(stages.items(), key=lambda kv: -kv[1]))}


def bench_pipeline(source: Path, work: Path, settings: EncodeSettings, repeats: int) -> dict:
    """CPU per ffmpeg thread of one job, and what that allows -j 2 to add over -j 1 on two idle cores."""
    cmd = by_hand_command(source, work / "pipeline.mp4", settings)
    runs = [thread_profile(cmd) for _ in range(repeats)]
    names = {name for run in runs for name in run["threads"]}
    threads = {name: statistics.median(run["threads"].get(name, 0.0) for run in runs) for name in names}
    total, busiest = sum(threads.values()), max(threads.values())
    can_use = min(2.0, total / busiest)
    return {
        "cpu_s_per_video": round(statistics.median(run["cpu_s"] for run in runs), 3),
        "cpu_s_per_thread": {k: round(v, 3) for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.005},
        "cores_one_job_can_use": round(total / busiest, 2),
        "j2_over_j1_at_ideal_pipelining_on_2_idle_cores": round(2.0 / can_use, 2),
        "cores_used_per_run": [round(run["cpu_s"] / run["wall_s"], 2) for run in runs],
    }


def time_ours(src_dir: Path, work: Path, settings: EncodeSettings, *, jobs: int, expect: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `run_transcode` into a fresh DST."""
    dst = work / "dst"
    shutil.rmtree(dst, ignore_errors=True)
    t, c = time.perf_counter(), cpu_seconds()
    result = run_transcode(TranscodeConfig(src=src_dir, dst=dst, settings=settings, jobs=jobs, index=False))
    elapsed, cpu = time.perf_counter() - t, cpu_seconds() - c
    assert result.ok and result.transcoded == expect, result
    return elapsed, cpu


def bench_overhead(source: Path, work: Path, settings: EncodeSettings, repeats: int) -> dict:
    single = work / "single"
    single.mkdir(parents=True, exist_ok=True)
    link = single / source.name
    if not link.exists():
        os.link(source, link)
    cmd = by_hand_command(source, work / "by_hand.mp4", settings)
    hand: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    time_by_hand(cmd)  # warm the page cache and the binary
    for rep in range(repeats):
        order = [("hand", hand), ("ours", ours)] if rep % 2 == 0 else [("ours", ours), ("hand", hand)]
        for name, into in order:
            into.append(time_by_hand(cmd) if name == "hand" else time_ours(single, work, settings, jobs=1, expect=1))
        print(f"overhead repeat {rep}: by hand {hand[-1][0]:.2f} s wall {hand[-1][1]:.2f} s CPU, "
              f"ours {ours[-1][0]:.2f} s wall {ours[-1][1]:.2f} s CPU", file=sys.stderr)

    def med(rows: list[tuple[float, float]], k: int) -> float:
        return statistics.median(r[k] for r in rows)

    return {
        "command": cmd[1:],
        "by_hand_wall_s": round(med(hand, 0), 3),
        "ours_wall_s": round(med(ours, 0), 3),
        "ours_over_by_hand_wall": round(med(ours, 0) / med(hand, 0), 4),
        "by_hand_cpu_s": round(med(hand, 1), 3),
        "ours_cpu_s": round(med(ours, 1), 3),
        "ours_over_by_hand_cpu": round(med(ours, 1) / med(hand, 1), 4),
        "by_hand_fps": round(FPS * SECONDS / med(hand, 0), 1),
        "all_by_hand": [[round(w, 3), round(c, 3)] for w, c in hand],
        "all_ours": [[round(w, 3), round(c, 3)] for w, c in ours],
    }


def bench_batch(sources: list[Path], work: Path, settings: EncodeSettings, repeats: int) -> dict:
    """The same files by hand (one after another), with `-j 1` and with `-j 2`; repeats rotate the order."""
    many = work / "many"
    many.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (many / source.name).exists():
            os.link(source, many / source.name)
    commands = [by_hand_command(s, work / f"hand_{s.stem}.mp4", settings) for s in sources]

    def by_hand_all() -> tuple[float, float]:
        runs = [time_by_hand(cmd) for cmd in commands]
        return sum(w for w, _ in runs), sum(c for _, c in runs)

    runs: dict[str, list[tuple[float, float]]] = {"hand": [], "j1": [], "j2": []}
    steps = {
        "hand": by_hand_all,
        "j1": lambda: time_ours(many, work, settings, jobs=1, expect=len(sources)),
        "j2": lambda: time_ours(many, work, settings, jobs=2, expect=len(sources)),
    }
    names = list(steps)
    for rep in range(repeats):
        for name in names[rep % 3 :] + names[: rep % 3]:
            runs[name].append(steps[name]())
        print(f"batch repeat {rep}: " + ", ".join(
            f"{n} {runs[n][-1][0]:.2f} s wall {runs[n][-1][1]:.2f} s CPU" for n in names), file=sys.stderr)

    def med(name: str, k: int) -> float:
        return statistics.median(r[k] for r in runs[name])

    n = len(sources)
    return {
        "videos": n,
        "by_hand_wall_s_per_video": round(med("hand", 0) / n, 3),
        "j1_wall_s_per_video": round(med("j1", 0) / n, 3),
        "j1_over_by_hand_wall": round(med("j1", 0) / med("hand", 0), 4),
        "by_hand_cpu_s_per_video": round(med("hand", 1) / n, 3),
        "j1_cpu_s_per_video": round(med("j1", 1) / n, 3),
        "j1_over_by_hand_cpu": round(med("j1", 1) / med("hand", 1), 4),
        "j1_videos_per_s": round(n / med("j1", 0), 3),
        "j2_videos_per_s": round(n / med("j2", 0), 3),
        "j2_over_j1": round(med("j1", 0) / med("j2", 0), 3),
        # cores each mode got (CPU / wall): what the other load on the machine left it
        "cores_used": {name: round(statistics.median(c / w for w, c in rows), 2) for name, rows in runs.items()},
        "all": {name: [[round(w, 3), round(c, 3)] for w, c in rows] for name, rows in runs.items()},
    }


GOAL_SETS = {"10s": (10, 8, 1.05), "2s": (2, 24, 1.15)}  # clip seconds, clips, goal (ours / by hand)


def make_goal_sources(cache: Path, *, seconds: int, videos: int) -> Path:
    """`videos` distinct 456x256 25 fps clips of `seconds` each in one folder, generated once."""
    folder = cache / f"goal_456x256_25fps_{seconds}s_{videos}"
    for i in range(videos):
        path = folder / "c" / f"clip{i:02d}.mp4"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp.mp4")
            write_video(tmp, num_frames=25 * seconds, width=456, height=256, fps=25, codec="h264", gop=250,
                        crf=20, options={"preset": "veryfast"}, seed=100 + i)
            os.replace(tmp, path)
    return folder


def bench_goal(cache: Path, work: Path, *, jobs: int, repeats: int) -> dict:
    """Ours (`run_transcode`, lists included) against the same ffmpeg commands by hand, `jobs` at a time."""
    import concurrent.futures

    settings = EncodeSettings()
    figures = {}
    for name, (seconds, videos, goal) in GOAL_SETS.items():
        src = make_goal_sources(cache, seconds=seconds, videos=videos)
        sources = sorted(src.rglob("*.mp4"))
        commands = [by_hand_command(s, work / f"hand_{s.stem}.mp4", settings) for s in sources]

        def by_hand(commands=commands) -> float:
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:  # xargs -P jobs
                # each ffmpeg in a session of its own, as the stage starts them: the same autogroup share
                list(pool.map(lambda cmd: subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                                                         start_new_session=True), commands))
            return time.perf_counter() - t

        def ours(src=src, videos=videos) -> float:
            dst = work / "dst"
            shutil.rmtree(dst, ignore_errors=True)
            t = time.perf_counter()
            result = run_transcode(TranscodeConfig(src=src, dst=dst, settings=settings, jobs=jobs))
            assert result.ok and result.transcoded == videos, result
            return time.perf_counter() - t

        hand, mine = [], []
        by_hand()  # warm the page cache and the binary
        for rep in range(repeats):
            for step in ((by_hand, hand), (ours, mine))[:: 1 if rep % 2 == 0 else -1]:
                step[1].append(step[0]())
            print(f"goal {name} repeat {rep}: by hand {hand[-1]:.2f} s, ours {mine[-1]:.2f} s", file=sys.stderr)
        ratio = statistics.median(mine) / statistics.median(hand)
        figures[name] = {
            "clips": videos, "clip_seconds": seconds, "jobs": jobs, "by_hand_wall_s": round(statistics.median(hand), 3),
            "ours_wall_s": round(statistics.median(mine), 3), "ours_over_by_hand": round(ratio, 4),
            "goal": goal, "met": ratio <= goal, "all_by_hand": [round(x, 3) for x in hand],
            "all_ours": [round(x, 3) for x in mine],
        }
    return figures


def bench_presets(source: Path, work: Path) -> list[dict]:
    rows = []
    for preset in ("veryfast", "faster", "fast", "medium"):
        settings = EncodeSettings(preset=preset)
        out = work / f"preset_{preset}.mp4"
        _, cpu = time_by_hand(by_hand_command(source, out, settings))
        rows.append({"preset": preset, "fps_per_cpu_second": round(FPS * SECONDS / cpu, 1),
                     "kbytes": round(out.stat().st_size / 1000)})
        print(f"preset {preset}: {rows[-1]}", file=sys.stderr)
    return rows


def bench_decode(source: Path, work: Path, repeats: int) -> list[dict]:
    """Frames decoded per CPU second (PyAV, one thread, whole file) for outputs of a few x264 variants."""
    import av

    def without_bframes(cmd: list[str]) -> list[str]:
        at = cmd.index("-x264-params") + 1
        return [*cmd[:at], cmd[at] + ":bframes=0", *cmd[at + 1 :]]

    variants = {
        "no tune (x264 default)": by_hand_command(source, work / "dec_plain.mp4", EncodeSettings(tune=None)),
        "tune fastdecode (our default)": by_hand_command(source, work / "dec_fastdecode.mp4", EncodeSettings()),
        "no tune, bframes=0": without_bframes(by_hand_command(source, work / "dec_nob.mp4",
                                                              EncodeSettings(tune=None))),
    }
    outputs = {}
    for name, cmd in variants.items():
        _, encode_cpu = time_by_hand(cmd)
        outputs[name] = (Path(cmd[-1]), encode_cpu)

    def decode_cpu(path: Path) -> tuple[float, int]:
        started = time.process_time()
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            frames = sum(1 for _ in container.decode(stream))
        return time.process_time() - started, frames

    times: dict[str, list[float]] = {name: [] for name in outputs}
    for _ in range(repeats):
        for name, (path, _) in outputs.items():  # interleaved, so load bursts hit every variant
            times[name].append(decode_cpu(path)[0])
    rows = []
    for name, (path, encode_cpu) in outputs.items():
        frames = decode_cpu(path)[1]
        rows.append({"variant": name, "decode_fps_per_cpu_second": round(frames / statistics.median(times[name])),
                     "kbytes": round(path.stat().st_size / 1000), "encode_cpu_s": round(encode_cpu, 3)})
        print(f"decode {rows[-1]}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="files for the -j comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codec", choices=["h264", "mjpeg", "vp9"], default="h264")
    parser.add_argument("--presets", action="store_true", help="also compare x264 presets on one file")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videoprep-bench-transcode")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--decode", action="store_true", help="also compare decode speed of x264 variants")
    parser.add_argument("--goal", action="store_true",
                        help="measure only the overhead goal on 256p clips of 10 s and 2 s (see above)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel videos for --goal")
    parser.add_argument("--top-priority", action="store_true",
                        help="run at autogroup nice -20, as on an idle machine (root; see above)")
    args = parser.parse_args(argv)

    if args.goal:
        with tempfile.TemporaryDirectory() as tmp:
            if args.top_priority:
                take_top_priority(Path(tmp))
            figures = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                       "goal": bench_goal(args.cache, Path(tmp), jobs=args.jobs, repeats=args.repeats),
                       "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    t0 = time.perf_counter()
    sources = make_sources(args.cache, videos=max(args.videos, 1))
    print(f"{len(sources)} sources ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    settings = EncodeSettings(codec=args.codec)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.top_priority:
            take_top_priority(work)
        figures = {
            "machine_cpus": os.cpu_count(),
            "top_priority": args.top_priority,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "source": f"{WIDTH}x{HEIGHT} {FPS} fps {SECONDS} s H.264",
            "settings": {"codec": settings.codec, "short_side": settings.short_side, "gop": settings.gop,
                         "preset": settings.preset, "threads": settings.threads},
            "overhead": bench_overhead(sources[0], work, settings, args.repeats),
            "batch": bench_batch(sources, work, settings, args.repeats),
            "pipeline": bench_pipeline(sources[0], work, settings, args.repeats),
        }
        if args.presets:
            figures["presets"] = bench_presets(sources[0], work)
        if args.decode:
            figures["decode"] = bench_decode(sources[0], work, args.repeats)
        figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
