"""`videoprep demo`: the whole toolkit end to end on a generated Kinetics-format dataset.

It sits beside cli.py because it runs every layer: it generates a small dataset in
the exact mirror format, serves it on 127.0.0.1, and then runs each real subcommand
the way a user would (download, validate, transcode, index, bench, train, test),
each as its own process, with its output kept in OUT/logs/.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import json
import logging
import os
import shutil
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from videoprep.atomic import atomic_write_json
from videoprep.errors import VideoprepError
from videoprep.kinetics import clip_id
from videoprep.records import read_list
from videoprep.synth import ACTIONS, pack_mirror, write_action_video

log = logging.getLogger(__name__)

# Source footage varies like real downloads: sizes, rates, long GOPs.
_SIZES = ((320, 240), (426, 240), (400, 300), (352, 288))
_RATES = (24.0, 25.0, 30.0)
# A small BAT network that trains in minutes on 2 CPU cores: I3D ResNet-18 with 2-D BAT
# blocks in layer2 only, at 64x64 crops (layer2 maps are 8x8, BAT's smallest grid) from
# 73-pixel short sides (the official 224/256 ratio), 8 frames at rate 4.
_MODEL_ARGS = ("--arch", "i3d_resnet18", "--nonlocal_mod", "2", "1000", "--nltype", "bat", "--k", "4",
               "--seq_length", "8", "--sample_rate", "4")
_CROP, _SCALE = 64, 73


class DemoError(VideoprepError):
    """A demo step that failed; the message names the step and its log file."""


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; `quick` shrinks everything for the CI test."""

    out: Path
    train_per_class: int = 24
    val_per_class: int = 8
    seconds: float = 3.0
    epochs: int = 16
    jobs: int = 2
    seed: int = 0
    quick: bool = False

    @classmethod
    def reduced(cls, out: Path) -> DemoConfig:
        """The CI-sized demo: every step runs, on a handful of clips."""
        return cls(out=out, train_per_class=4, val_per_class=2, seconds=2.0, epochs=1, quick=True)


@dataclass
class StepResult:
    """What one step did: its command line, wall time and log file."""

    name: str
    argv: list[str]
    seconds: float
    log: Path
    returncode: int


@dataclass
class DemoResult:
    """Everything the summary reports; also written to OUT/demo_summary.json."""

    steps: list[StepResult] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


# --- 1. the dataset -------------------------------------------------------------------


def _youtube_id(rng: np.random.Generator) -> str:
    """An 11-character id in YouTube's alphabet (dashes and underscores included)."""
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=11))


def generate_source(cfg: DemoConfig, source: Path) -> dict[str, object]:
    """Write the clips and annotation CSVs the mirror is packed from; corrupt a few on purpose.

    Returns what was made: clip counts per split, the corrupt clips and the one of
    them the mirror's replacement archive repairs.
    """
    rng = np.random.default_rng(cfg.seed)
    videos, annotations, replacements = source / "videos", source / "annotations", source / "replacements"
    for d in (videos, annotations, replacements):
        d.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for split, per_class in (("train", cfg.train_per_class), ("val", cfg.val_per_class)):
        rows = [("label", "youtube_id", "time_start", "time_end", "split", "is_cc")]
        for action in ACTIONS:
            for _ in range(per_class):
                width, height = _SIZES[rng.integers(len(_SIZES))]
                fps = _RATES[rng.integers(len(_RATES))]
                start = int(rng.integers(0, 300))
                ytid = _youtube_id(rng)
                name = clip_id(ytid, start, start + 10)
                write_action_video(
                    videos / split / f"{name}.mp4", action, num_frames=int(round(cfg.seconds * fps)),
                    width=int(width), height=int(height), fps=fps, seed=int(rng.integers(1 << 31)), gop=250,
                )
                rows.append((action, ytid, start, start + 10, split, 0))
                made[split].append((name, action))
        with open(annotations / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    # Corrupt three training clips the ways the mirror's files are corrupt; the
    # replacement archive carries a good copy of the first, as the real one does.
    repaired, truncated, emptied = (name for name, _ in made["train"][1::5][:3])
    shutil.copy(videos / "train" / f"{repaired}.mp4", replacements / f"{repaired}.mp4")
    for name in (repaired, truncated):
        clip = videos / "train" / f"{name}.mp4"
        data = clip.read_bytes()
        clip.write_bytes(data[: len(data) // 3])
    (videos / "train" / f"{emptied}.mp4").write_bytes(b"")
    return {
        "clips": {split: len(items) for split, items in made.items()},
        "classes": list(ACTIONS),
        "corrupt": [truncated, emptied],
        "repaired_by_replacement": repaired,
    }


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve `root` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            log.debug("http: " + format, *args)

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- 2. running the real subcommands ----------------------------------------------------


def _videoprep_argv() -> list[str]:
    """How a user runs the CLI from this environment: the console script, else `python -m cli`."""
    script = Path(sys.executable).parent / "videoprep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


class StepRunner:
    """Runs one subcommand per step as its own process, logging its output to OUT/logs/."""

    def __init__(self, out: Path, result: DemoResult, say: Callable[[str], None]) -> None:
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.result = result
        self.say = say

    def run(self, name: str, args: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> StepResult:
        argv = _videoprep_argv() + args
        log_path = self.logs / f"{len(self.result.steps) + 1:02d}-{name}.log"
        self.say(f"[{name}] videoprep {' '.join(args)}")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        start = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as logf:
            logf.write("$ " + " ".join(argv) + "\n")
            logf.flush()
            proc = subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        step = StepResult(name, argv, time.perf_counter() - start, log_path, proc.returncode)
        self.result.steps.append(step)
        if proc.returncode not in ok_codes:
            tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
            raise DemoError(f"step '{name}' exited with {proc.returncode}; log {log_path}:\n{tail}")
        self.say(f"[{name}] done in {step.seconds:.1f} s (log: {log_path})")
        return step


# --- 3. the whole run -------------------------------------------------------------------


def run_demo(cfg: DemoConfig, *, say: Callable[[str], None] = print) -> DemoResult:
    """Generate, serve, download, validate, transcode, index, bench, train and test; then summarise."""
    out = cfg.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    steps = StepRunner(out, result, say)
    source, mirror, data = out / "source", out / "mirror", out / "kinetics400"
    fast, lists, bench, run = out / "kinetics400-fast", out / "lists", out / "bench", out / "run"
    for stale in (source, mirror):  # regenerated every time; results further down are resumed
        shutil.rmtree(stale, ignore_errors=True)

    say(f"[generate] {len(ACTIONS)} motion classes -> {source}")
    t0 = time.perf_counter()
    made = generate_source(cfg, source)
    result.facts["generated"] = made | {"seconds": round(time.perf_counter() - t0, 1)}

    with serve_folder(mirror) as base_url:
        packed = pack_mirror(
            videos_dir=source / "videos", annotations_dir=source / "annotations", out_dir=mirror,
            base_url=base_url, splits=("train", "val"), clips_per_part=8,
            plain_tar_parts=(1,), replacements_dir=source / "replacements",
        )
        result.facts["mirror"] = {"base_url": base_url, "parts": sum(len(p) for p in packed.parts.values())}
        steps.run("download", ["download", "kinetics400", "--out", str(data), "--split", "train,val",
                               "--base-url", base_url, "-j", str(cfg.jobs), "--backoff", "0.2"])

    quarantine = out / "quarantine"
    steps.run("validate", ["validate", str(data), "--min-frames", "29", "--quarantine", str(quarantine),
                           "--report", str(out / "validate_report.json"), "-j", str(cfg.jobs)], ok_codes=(0, 1))
    steps.run("transcode", ["transcode", str(data), str(fast), "--short-side", "128", "--gop", "16",
                            "--preset", "veryfast", "-j", str(cfg.jobs), "--no-index"])
    steps.run("index", ["index", str(fast), "--out", str(lists), "--annotations", str(data / "annotations"),
                        "-j", str(cfg.jobs), "--export", "mmaction,dali"])
    steps.run("bench", ["bench", str(lists / "val.txt"), "--root-path", str(fast), "--backends", "pyav,lintel",
                        "--workers", "0,2", "--clips", "8" if cfg.quick else "24", "--repeats", "1" if cfg.quick else "3",
                        "--views", "train", "--seq-length", "8", "--sample-rate", "4", "--test-segments", "2",
                        "--no-peers", "--out", str(bench)])
    train_args = [
        "train", str(lists / "train.txt"), str(lists / "val.txt"),
        "--root_path", str(fast), "--backend", "pyav", "--num_classes", str(len(ACTIONS)),
        *_MODEL_ARGS, "--crop-size", str(_CROP), "--scale-size", str(_SCALE),
        "--epochs", str(cfg.epochs), "-b", "8", "--lr", "0.02", "--lr_steps", str(max(cfg.epochs - 4, 1)),
        "--warmup_epochs", "1", "--eval-freq", "4", "-j", str(cfg.jobs), "--device", "cpu", "--seed", str(cfg.seed),
        "--snapshot_dir", str(run / "checkpoints"), "--log_dir", str(run / "log"), "--progress", "off",
    ]
    steps.run("train", train_args)
    checkpoint = run / "checkpoints" / "i3d_resnet18_checkpoint.pth.tar"
    scores = run / "test_scores.npz"
    steps.run("test", [
        "test", str(lists / "val.txt"), str(checkpoint), "--root_path", str(fast), "--backend", "pyav",
        "--num_classes", str(len(ACTIONS)), *_MODEL_ARGS, "--test_segments", "2", "--test_crops", "3",
        "--img_size", str(_CROP), "-j", str(cfg.jobs), "--device", "cpu", "--save_scores", str(scores),
    ])
    result.facts.update(_collect_facts(out, data, lists, bench, scores, len(ACTIONS)))
    atomic_write_json(out / "demo_summary.json", {
        "steps": [{"name": s.name, "seconds": round(s.seconds, 1), "log": str(s.log)} for s in result.steps],
        "facts": result.facts,
    })
    return result


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _collect_facts(out: Path, data: Path, lists: Path, bench: Path, scores: Path, num_classes: int) -> dict:
    """The figures of the summary, read back from what each step wrote."""
    facts: dict[str, object] = {}
    facts["download"] = _read_json(data / "download_report.json")
    validate = out / "validate_report.json"
    facts["validate_bad"] = _read_json(validate) if validate.exists() else {}
    facts["lists"] = {p.stem: len(read_list(p)) for p in sorted(lists.glob("*.txt"))
                      if p.stem in ("train", "val", "test")}
    facts["bench"] = _read_json(bench / "bench.json")
    facts["transcode"] = _read_json(out / "kinetics400-fast" / "transcode_report.json")
    train_logs = sorted((out / "logs").glob("*-train.log"))
    done = [line for line in train_logs[-1].read_text(encoding="utf-8").splitlines()
            if line.startswith("done:")] if train_logs else []
    facts["train"] = done[-1].removeprefix("done: ").split(", checkpoint")[0] if done else ""
    with np.load(scores) as npz:
        logits, labels = npz["scores"], npz["labels"]
    # Saved per view ([videos, views, 1, classes]); the video score is the mean of raw logits.
    pred = logits.reshape(len(labels), -1, logits.shape[-1]).mean(axis=1).argmax(axis=1)
    facts["test"] = {
        "videos": int(len(labels)),
        "top1": float((pred == labels).mean()),
        "chance": 1.0 / num_classes,
    }
    return facts


def step_notes(facts: dict) -> dict[str, str]:
    """One line per step saying what it did, read from the facts the steps wrote."""
    notes: dict[str, str] = {}
    made = facts.get("generated", {})
    notes["generate"] = (f"{sum(made.get('clips', {}).values())} clips in {len(made.get('classes', []))} classes, "
                         f"3 corrupted on purpose")
    download = facts.get("download", {})
    if download:
        splits = download.get("splits", {})
        on_disk = sum(s.get("on_disk", 0) for s in splits.values())
        expected = sum(s.get("expected", 0) for s in splits.values())
        fingerprint = download.get("fingerprint", {}).get("sha256", "")[:16]
        notes["download"] = f"{on_disk}/{expected} clips on disk, fingerprint {fingerprint}; " + "; ".join(
            download.get("notes", []))
    bad = facts.get("validate_bad", {}).get("bad", [])
    notes["validate"] = f"{len(bad)} bad: " + ", ".join(
        f"{b['relpath']} ({b['reason']}{', quarantined' if b.get('quarantined_to') else ''})" for b in bad)
    transcode = facts.get("transcode", {})
    if transcode:
        settings = transcode.get("settings", {})
        notes["transcode"] = (f"{transcode.get('done', 0)} re-encoded, {transcode.get('skipped', 0)} already up to date "
                              f"({settings.get('codec')}, short side {settings.get('short_side')}, GOP "
                              f"{settings.get('gop')}), {transcode.get('failed', 0)} failed")
    notes["index"] = ", ".join(f"{split}.txt: {n} videos" for split, n in facts.get("lists", {}).items())
    loaders = [r for r in facts.get("bench", {}).get("results", [])
               if r.get("kind") in ("loader", "reader", "reference") and r.get("status") == "ok"]
    notes["bench"] = "clips/s (median): " + "; ".join(
        f"{r['backend']} {r['kind']}{'' if r.get('workers') is None else ' ' + str(r['workers']) + ' workers'} "
        f"{r['clips_per_s']['median']:.0f}" for r in loaders)
    notes["train"] = facts.get("train", "")
    test = facts.get("test", {})
    if test:
        notes["test"] = f"top-1 {test['top1']:.1%} on {test['videos']} videos (chance {test['chance']:.0%})"
    return notes
