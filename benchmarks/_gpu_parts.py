"""The parts of the GPU proof kit (`benchmarks/gpu_check.py`), by subject: decode, transcode, training.

Each part returns its figures or raises `Skip` (this machine cannot run it) or `PartFailed`
(a check failed; its figures are kept); see _gpu_common.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from _gpu_common import PartFailed, Skip, part_gpu_tests
from _gpu_decode import (
    part_bench_gpu,
    part_dali_cpu_vp9,
    part_dali_gpu,
    part_torchcodec_cpu,
    part_torchcodec_cuda,
)
from _gpu_training import part_train_throughput
from _gpu_transcode import part_refusals, part_transcode_args, part_transcode_gpu

__all__ = ["PARTS", "PartFailed", "Skip"]

PARTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "gpu_tests": part_gpu_tests,
    "dali_gpu": part_dali_gpu,
    "torchcodec_cuda": part_torchcodec_cuda,
    "transcode_gpu": part_transcode_gpu,
    "train_throughput": part_train_throughput,
    "bench_gpu": part_bench_gpu,
    "transcode_args": part_transcode_args,
    "refusals": part_refusals,
    "dali_cpu_vp9": part_dali_cpu_vp9,
    "torchcodec_cpu": part_torchcodec_cpu,
}
