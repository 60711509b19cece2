"""GPU proof kit, training: clips/s per GPU of the official setup and ours, and the data-wait fraction."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from _common import VideoSet, generated_videos
from _gpu_common import (
    SEQ_LENGTH,
    PartFailed,
    _has,
    need_cuda_torch,
    need_modules,
    run_limited,
)

TRAIN_PRESET = "c2d_3dbat"
TRAIN_BATCH = 16
TRAIN_EPOCHS = 3  # epoch 0 warms up (cuDNN autotuning, worker start); epochs 1.. are measured
TRAIN_RUN_LIMIT_S = 45.0


def _train_lists(work: Path, *, train_videos: int, val_videos: int) -> tuple[Path, Path]:
    """BAT lists over generated 340x256 H.264 GOP 16 clips of 10 s (what `videoprep transcode` writes)."""
    from videoprep.records import ListRecord, write_list

    frames = 300
    spec = VideoSet("train", ".mp4", {"codec": "h264", "gop": 16, "options": {"tune": "fastdecode",
                                                                          "preset": "veryfast"}})
    paths = generated_videos(work / "train-videos", spec, count=train_videos + val_videos, frames=frames)
    rng = np.random.default_rng(0)
    records = [ListRecord(str(p), frames, int(rng.integers(0, 10))) for p in paths]
    train, val = work / "train-videos" / "train.txt", work / "train-videos" / "val.txt"
    write_list(train, records[:train_videos])
    write_list(val, records[train_videos:])
    return train, val


def epoch_figures(log_dir: Path) -> dict[str, Any]:
    """clips/s and data-wait fraction of the measured epochs, from the run's metrics.jsonl."""
    from train.logging_utils import read_metrics

    records = read_metrics(log_dir)
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("epoch", 0) >= 1]
    if not epochs:
        raise RuntimeError(f"no epoch records in {log_dir}/metrics.jsonl")
    waits = []
    for e in epochs:
        steps = [r for r in records if r.get("kind") == "train" and r.get("epoch") == e["epoch"]]
        last = steps[-1] if steps else {}
        if "data_wait_fraction" in e or "data_wait_fraction" in last:  # the runner's own figure, when it logs one
            waits.append(float(e.get("data_wait_fraction", last.get("data_wait_fraction"))))
        elif last.get("batch_time"):  # else: mean data time / mean step time over the epoch
            waits.append(last["data_time"] / last["batch_time"])
    return {"clips_per_s": round(median(e["clips_per_s"] for e in epochs), 2),
            "epochs": [round(e["clips_per_s"], 2) for e in epochs],
            "data_wait_fraction": round(median(waits), 3) if waits else None}


def train_command(setup: str, train: Path, val: Path, out: Path, *, workers: int) -> list[str]:
    """The command of one training setup: the official one (single process, fp32, Lintel semantics) or ours."""
    from train.config import PRESETS

    flags = [str(train), str(val), *PRESETS[TRAIN_PRESET], "-b", str(TRAIN_BATCH), "--epochs", str(TRAIN_EPOCHS),
             "--lr_steps", "1000", "-ef", "1000", "-sf", "1000", "-p", "1", "-j", str(workers), "--device", "cuda",
             "--log_dir", str(out / "log"), "--snapshot_dir", str(out / "ckpt"), "--seed", "0", "--progress", "off"]
    if setup == "official":
        return [sys.executable, "-m", "train.main", *flags, "--amp", "off"]  # --read_mode video: Lintel semantics
    backend = setup.removeprefix("ours_")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    return [*torchrun, "-m", "train.main", *flags, "--amp", "bf16", "--channels-last", "--backend", backend]


NOTES = {
    "official": "fp32, one process (nn.DataParallel over one GPU calls the module directly), --read_mode video: "
                "the Lintel loader's semantics",
    "ours_pyav": "torchrun with one process (DDP), AMP bf16, channels-last, pyav loader",
    "ours_dali": "torchrun with one process (DDP), AMP bf16, channels-last, DALI loader (NVDEC)",
}


def synthetic_clips_per_s(mode: str) -> float:
    """benchmarks/bench_train.py's step on uint8 clips already on the GPU: the model's upper bound."""
    import torch
    from bench_train import measure

    torch.backends.cudnn.benchmark = True
    return measure(TRAIN_PRESET, mode, device=torch.device("cuda"), batch=TRAIN_BATCH, steps=10, warmup=3, size=224,
                   frames=SEQ_LENGTH)


def part_train_throughput(work: Path) -> dict[str, Any]:
    """c2d_resnet50 3-D BAT, 8x8 clips, 224 px, batch 16: clips/s per GPU, official setup vs ours."""
    need_modules("av")
    need_cuda_torch()
    workers = max(1, (os.cpu_count() or 2) - 2)
    train, val = _train_lists(work, train_videos=8 * TRAIN_BATCH, val_videos=TRAIN_BATCH)
    figures: dict[str, Any] = {"preset": TRAIN_PRESET, "batch": TRAIN_BATCH, "workers": workers,
                               "videos": 8 * TRAIN_BATCH, "epochs_measured": TRAIN_EPOCHS - 1}
    for mode in ("official", "ours"):
        figures[f"synthetic_{mode}"] = {"clips_per_s": round(synthetic_clips_per_s(mode), 2)}
    errors = {}
    setups = ["official", "ours_pyav"] + (["ours_dali"] if _has("nvidia.dali") else [])
    for setup in setups:
        out = work / setup
        shutil.rmtree(out, ignore_errors=True)
        cmd = train_command(setup, train, val, out, workers=workers)
        figures[setup] = {"command": " ".join(cmd[1:]), "note": NOTES[setup]}
        try:
            run = run_limited(cmd, timeout_s=TRAIN_RUN_LIMIT_S)
        except TimeoutError as exc:
            errors[setup] = str(exc)
            continue
        if run.returncode != 0:
            errors[setup] = (run.stderr.strip() or run.stdout.strip())[-600:]
            continue
        figures[setup].update(epoch_figures(out / "log"))
    ours = [figures[s]["clips_per_s"] for s in setups[1:] if "clips_per_s" in figures[s]]
    if ours and "clips_per_s" in figures["official"]:
        figures["speedup_ours_over_official"] = round(max(ours) / figures["official"]["clips_per_s"], 2)
        figures["goal_2x_met"] = figures["speedup_ours_over_official"] >= 2.0
    if errors:
        raise PartFailed("; ".join(f"{s}: {e.splitlines()[-1] if e else 'failed'}" for s, e in errors.items()),
                         {**figures, "errors": errors})  # the full tails are in figures["errors"]
    return figures


