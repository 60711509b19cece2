"""`make gpu-check` (benchmarks/gpu_check.py) in CPU mode, as CI runs it: every part listed, exit 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ["gpu_tests", "dali_gpu", "torchcodec_cuda", "transcode_gpu", "train_throughput", "bench_gpu",
         "transcode_args", "refusals", "dali_cpu_vp9"]
HAS_GPU = any(Path("/dev").glob("nvidia[0-9]*"))


def _kit(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    run = subprocess.run([sys.executable, str(KIT), "--out", str(out), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=240, check=False)
    return run, json.loads((out / "report.json").read_text())


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: the kit runs its GPU parts there (make gpu-check)")
def test_cpu_mode_runs_what_a_cpu_can_and_lists_every_skipped_part_with_its_reason(tmp_path: Path):
    run, report = _kit(tmp_path)
    assert run.returncode == 0, run.stderr
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == PARTS
    for name in PARTS[:6]:
        assert parts[name]["status"] == "skipped"
        assert "no NVIDIA GPU" in parts[name]["reason"] or "no CUDA GPU" in parts[name]["reason"]
    for name in PARTS[6:]:
        assert parts[name]["status"] == "ok", parts[name]["reason"]
    assert "-hwaccel cuda" in parts["transcode_args"]["figures"]["arguments"]["nvdec_x264"]
    assert parts["refusals"]["figures"]["--hwaccel cuda"]["exit"] == 1
    vp9 = parts["dali_cpu_vp9"]["figures"]["vp9"]
    assert vp9["same_index_share"] == 1.0 and vp9["clips_per_s"] > 0
    assert {"max_abs_diff", "share_over_2", "pyav_clips_per_s"} <= set(vp9)
    assert report["summary"] == "3 ok, 0 failed, 6 skipped"
    md = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in md for name in PARTS)


def test_a_part_that_cannot_run_is_recorded_as_failed_and_the_exit_status_says_so(tmp_path: Path):
    run, report = _kit(tmp_path, "--budget", "1", "--only", "transcode_args", "refusals")
    assert run.returncode == 1
    assert [(p["name"], p["status"]) for p in report["parts"]] == [("transcode_args", "failed"),
                                                                   ("refusals", "failed")]
    assert all(p["reason"].startswith("not started: ") for p in report["parts"])
