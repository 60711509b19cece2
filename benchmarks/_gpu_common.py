"""What every part of the GPU proof kit shares: Skip/PartFailed, module and CUDA checks, limited runs, generated videos.

A part raises `Skip` when this machine cannot run it (the reason goes into the report),
`PartFailed` when it ran and a check failed (its figures are kept), anything else when
it broke. Every part makes its own generated data under the work folder it is given.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, VideoSet

CLIPS_PER_VIDEO = 4
SEQ_LENGTH, SAMPLE_RATE = 8, 8


class Skip(Exception):
    """This machine cannot run the part; the message says why."""


class PartFailed(Exception):
    """The part ran and a check failed; `figures` keeps what it measured."""

    def __init__(self, reason: str, figures: dict[str, Any]) -> None:
        super().__init__(reason)
        self.figures = figures


# Where each module a part needs comes from: its wheel and the wheelhouse group that carries it.
MODULE_SOURCES: dict[str, tuple[str, str]] = {
    "av": ("av", "core"), "pytest": ("pytest", "core"), "numpy": ("numpy", "core"),
    "nvidia.dali": ("nvidia-dali-cuda130", "dali"), "torchcodec": ("torchcodec", "torchcodec"),
}


def missing_modules(names: Sequence[str]) -> list[str]:
    """The modules of `names` that do not import here (found by spec, nothing is imported)."""
    import importlib.util

    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def missing_reason(missing: Sequence[str]) -> str:
    """'not installed here: nvidia.dali (wheel nvidia-dali-cuda130, wheelhouse group dali)', naming the fix."""
    where = [f"{m} (wheel {MODULE_SOURCES.get(m, (m, 'core'))[0]}, wheelhouse group "
             f"{MODULE_SOURCES.get(m, (m, 'core'))[1]})" for m in missing]
    return (f"not installed here: {', '.join(where)}: add the group to WHEELHOUSE and rerun make gpu-check, "
            "or pip install -e '.[all]' (torchcodec: '.[torchcodec]')")


def need_modules(*names: str) -> None:
    """Skip unless every module is importable, naming the missing ones with their wheel and group."""
    missing = missing_modules(names)
    if missing:
        raise Skip(missing_reason(missing))


def need_cuda_torch() -> None:
    """Skip unless torch sees a CUDA GPU, saying whether torch or the machine is the reason."""
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise Skip(f"torch {torch.__version__} ({build}) sees no CUDA GPU")


def run_limited(cmd: Sequence[str], *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; past timeout_s SIGTERM (torchrun stops its workers), then SIGKILL.

    The child stays in the part's process group, so the kit's own limit on the part reaches it too.
    """
    proc = subprocess.Popen(list(cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise TimeoutError(f"timed out after {timeout_s:.0f} s: {' '.join(cmd[1:6])} ...") from None
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


# --- generated data -----------------------------------------------------------------------------


VIDEO_SETS: dict[str, VideoSet] = {
    s.name: s for s in (
        # veryfast keeps x264's B-frames (ultrafast has none): DALI and torchcodec must reorder
        VideoSet("h264_gop16", ".mp4", {"codec": "h264", "gop": 16, "options": {"preset": "veryfast"}}),
        VideoSet("h264_gop250", ".mp4", {"codec": "h264", "gop": 250, "options": {"preset": "veryfast"}}),
        VideoSet("hevc", ".mp4", {"codec": "hevc", "gop": 32}),
        VideoSet("vp9", ".webm", {"codec": "vp9", "gop": 16}),
    )
}


def clip_plan(paths: Sequence[Path], *, frames: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """(path, indices) of CLIPS_PER_VIDEO random 8x8 training clips per video, as the loaders draw them."""
    from pipelines.sampling import clip_indices

    rng = np.random.default_rng(seed)
    plan = []
    for path in paths:
        for _ in range(CLIPS_PER_VIDEO):
            (indices,) = clip_indices(frames, num_segments=1, seq_length=SEQ_LENGTH, sample_rate=SAMPLE_RATE,
                                      mode="train", rng=rng)
            plan.append((str(path), [int(i) for i in indices]))
    return plan



def frame_diff(test: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict[str, float]:
    """Largest and mean absolute difference, and the share of values more than 2 levels apart."""
    worst, total, over, count = 0, 0.0, 0, 0
    for a, b in zip(test, ref, strict=True):
        if a.shape != b.shape:
            raise PartFailed(f"shape {a.shape} differs from the pyav reader's {b.shape}", {})
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        worst = max(worst, int(d.max()))
        total += float(d.sum())
        over += int((d > 2).sum())
        count += d.size
    return {"max_abs_diff": worst, "mean_abs_diff": round(total / count, 3), "share_over_2": round(over / count, 5)}




def videoprep_cli(*args: str) -> list[str]:
    """The command line of `videoprep ARGS` with this interpreter (the console script may be elsewhere)."""
    return [sys.executable, "-c", "import cli; cli.main()", *args]




def _has(module: str) -> bool:
    try:
        need_modules(module)
    except Skip:
        return False
    return True



# --- pytest -m gpu ------------------------------------------------------------------------------


def part_gpu_tests(work: Path) -> dict[str, Any]:
    """Every `gpu`-marked test of the suite, run with pytest; the failing ones named."""
    need_modules("pytest")
    need_cuda_torch()
    junit = work / "gpu-tests.xml"
    run = run_limited([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       f"--junitxml={junit}", "tests"], timeout_s=70)
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {run.returncode}): {run.stdout[-400:]}{run.stderr[-400:]}")
    cases = ET.parse(junit).getroot().iter("testcase")
    figures: dict[str, Any] = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            figures["failed"].append(name)
        elif case.find("skipped") is not None:
            figures["skipped"].append(f"{name}: {case.find('skipped').get('message', '')}")
        else:
            figures["passed"].append(name)
    figures["summary"] = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    if figures["failed"] or run.returncode not in (0, 5):
        raise PartFailed(f"{len(figures['failed'])} gpu test(s) failed: {', '.join(figures['failed'])}", figures)
    return figures


