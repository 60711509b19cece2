"""`make gpu-check` (benchmarks/gpu_check.py) in CPU mode, as CI runs it: every part listed, exit 0."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ["gpu_tests", "dali_gpu", "torchcodec_cuda", "transcode_gpu", "train_throughput", "bench_gpu",
         "transcode_args", "refusals", "dali_cpu_vp9", "torchcodec_cpu"]
HAS_GPU = any(Path("/dev").glob("nvidia[0-9]*"))
HAS_TORCHCODEC = importlib.util.find_spec("torchcodec") is not None


def _kit(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    run = subprocess.run([sys.executable, str(KIT), "--out", str(out), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=240, check=False)
    return run, json.loads((out / "report.json").read_text())


@pytest.mark.slow  # every CPU part of the kit end to end
@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: the kit runs its GPU parts there (make gpu-check)")
def test_cpu_mode_runs_what_a_cpu_can_and_lists_every_skipped_part_with_its_reason(tmp_path: Path):
    run, report = _kit(tmp_path)
    assert run.returncode == 0, run.stderr
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == PARTS
    assert_gpu_parts_skipped_for_no_gpu_only(report)
    for name in PARTS[6:9]:
        assert parts[name]["status"] == "ok", parts[name]["reason"]
    if HAS_TORCHCODEC:
        assert parts["torchcodec_cpu"]["status"] == "ok", parts["torchcodec_cpu"]["reason"]
        assert parts["torchcodec_cpu"]["figures"]["h264_gop16"]["same_index_share"] == 1.0
    else:  # the reason names what to add
        assert "wheel torchcodec, wheelhouse group torchcodec" in parts["torchcodec_cpu"]["reason"]
    assert "-hwaccel cuda" in parts["transcode_args"]["figures"]["arguments"]["nvdec_x264"]
    assert parts["refusals"]["figures"]["--hwaccel cuda"]["exit"] == 1
    vp9 = parts["dali_cpu_vp9"]["figures"]["vp9"]
    assert vp9["same_index_share"] == 1.0 and vp9["clips_per_s"] > 0
    assert {"max_abs_diff", "share_over_2", "pyav_clips_per_s"} <= set(vp9)
    assert report["summary"] == f"{3 + HAS_TORCHCODEC} ok, 0 failed, {7 - HAS_TORCHCODEC} skipped"
    md = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in md for name in PARTS)
    goals = {g["goal"]: g for g in report["goals"]}
    assert goals["training: ours / official clips/s per GPU"]["target"] == ">= 2"
    assert all(g["met"] is None and g["note"].startswith("not measured: ") for g in goals.values())
    assert "| NVDEC+NVENC transcode: videos/s / CPU path's, 720p |" in md


def assert_gpu_parts_skipped_for_no_gpu_only(report: dict) -> None:
    """Every GPU part skipped because this machine has no GPU, none for a missing package."""
    parts = {p["name"]: p for p in report["parts"]}
    for name in PARTS[:6]:
        assert parts[name]["status"] == "skipped"
        assert "no NVIDIA GPU" in parts[name]["reason"] or "no CUDA GPU" in parts[name]["reason"]
        assert "not installed" not in parts[name]["reason"], parts[name]["reason"]


def _unshare_allowed() -> str:
    """Why `unshare -n` cannot run here, or '' when it can."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    run = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    return "" if run.returncode == 0 else f"unshare -n is not allowed here: {run.stderr.strip()}"


@pytest.mark.slow
@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: the kit runs its GPU parts there")
def test_gpu_check_from_a_wheelhouse_runs_to_the_end_without_a_network(tmp_path: Path):
    why_not = _unshare_allowed()
    if why_not:
        pytest.skip(why_not)
    wheelhouse = tmp_path / "wheelhouse"
    # The small wheelhouse CI can afford: the build backend (1 MB, from PyPI or pip's cache), in 0.25 MiB pieces;
    # this venv (PYTHON) supplies torch and the rest, as the node's Python supplies its CUDA torch.
    build = subprocess.run([sys.executable, "-m", "tools.wheelhouse", "build", "--out", str(wheelhouse), "--groups",
                            "core", "--only", "setuptools", "--max-piece-mib", "0.25"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    assert any(p.name.endswith(".part001") for p in (wheelhouse / "core").iterdir())
    out, venv = tmp_path / "report", tmp_path / "venv-gpu"
    run = subprocess.run(["unshare", "-n", "make", "-s", "gpu-check", f"PYTHON={sys.executable}",
                          f"WHEELHOUSE={wheelhouse}", f"GPU_VENV={venv}", f"GPU_OUT={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert_gpu_parts_skipped_for_no_gpu_only(report)
    cpu_parts = report["parts"][6:] if HAS_TORCHCODEC else report["parts"][6:9]
    assert all(p["status"] == "ok" for p in cpu_parts), cpu_parts
    assert report["install"]["groups"]["core"] == "installed" and report["install"]["seconds"] > 0
    assert "\n- install: " in (out / "report.md").read_text()
    assert (venv / "bin" / "python").is_file() and not list(tmp_path.glob(".venv-gpu.wheels-*"))


def test_a_part_that_cannot_run_is_recorded_as_failed_and_the_exit_status_says_so(tmp_path: Path):
    run, report = _kit(tmp_path, "--budget", "1", "--only", "transcode_args", "refusals")
    assert run.returncode == 1
    assert [(p["name"], p["status"]) for p in report["parts"]] == [("transcode_args", "failed"),
                                                                   ("refusals", "failed")]
    assert all(p["reason"].startswith("not started: ") for p in report["parts"])


@pytest.mark.slow  # the kit's machine record imports torch, DALI and torchcodec: ~40 s on 2 busy cores
def test_a_part_skipped_for_a_missing_package_names_its_wheel_and_wheelhouse_group(tmp_path: Path):
    shadow = tmp_path / "shadow" / "nvidia"  # an `nvidia` package without dali ahead on the path: DALI is missing
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    run = subprocess.run([sys.executable, str(KIT), "--out", str(tmp_path / "out"), "--only", "dali_cpu_vp9"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr
    (part,) = json.loads((tmp_path / "out" / "report.json").read_text())["parts"]
    assert part["status"] == "skipped"
    assert part["reason"].startswith("not installed here: nvidia.dali (wheel nvidia-dali-cuda130, wheelhouse group "
                                     "dali): add the group to WHEELHOUSE")
