"""Process group set-up from torchrun's environment, and the few collectives the runners need.

Single process:   python -m train.main TRAIN VAL ...
One node, N GPUs: torchrun --nproc_per_node=N -m train.main TRAIN VAL ...
Several nodes:    torchrun --nnodes=M --node_rank=R --master_addr=HOST --master_port=PORT \
                      --nproc_per_node=N -m train.main TRAIN VAL ...
NCCL on GPU, Gloo on CPU (also what tests use). Rank 0 alone logs and saves.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from videoprep.errors import GpuUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, local rank, world size, its device, the backend in use."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, prints and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group with more than one member is up."""
        return self.world_size > 1


def check_device(preference: str) -> None:
    """Before any work: --device must be auto, cpu or cuda, and cuda needs a GPU torch can see (one line otherwise)."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device ({preference!r}) must be one of auto, cpu, cuda")
    if preference == "cuda" and not torch.cuda.is_available():
        raise GpuUnavailableError("--device cuda: torch sees no CUDA GPU on this machine; "
                                  "use --device cpu, or --device auto (a GPU when there is one)")


def resolve_device(preference: str, *, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:local_rank when a GPU exists, else cpu; 'cuda' without a GPU is an error."""
    check_device(preference)
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(f"LOCAL_RANK ({local_rank}) needs GPU {local_rank} but only {count} GPU(s) are visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) outside torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local_rank, world_size


def setup_distributed(*, device: str = "auto", backend: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    rank, local_rank, world_size = env_world()
    dev = resolve_device(device, local_rank=local_rank)
    if world_size <= 1:
        return DistContext(device=dev)
    chosen = backend if backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
    if chosen == "nccl" and dev.type != "cuda":
        raise ValueError("dist-backend 'nccl' needs --device cuda; use gloo on CPU")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": chosen, "timeout": datetime.timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    log.info("rank %d/%d (local %d) on %s with %s", rank, world_size, local_rank, dev, chosen)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=chosen)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all ranks (float64/int64 keep counts exact); identity for one process."""
    if not ctx.is_distributed:
        return values
    # Gloo reduces CPU tensors; NCCL needs them on the GPU.
    work = values.to(ctx.device) if ctx.backend == "nccl" else values.cpu()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(values.device)


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's picklable object, in rank order; [obj] for one process."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, ctx: DistContext, *, src: int = 0) -> Any:
    """Rank src's object on every rank (e.g. the seed rank 0 drew)."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(model: torch.nn.Module, ctx: DistContext, *, src: int = 0) -> None:
    """Give every rank rank 0's buffers (BN running stats drift apart after the last DDP step)."""
    if not ctx.is_distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=src)


def split_batch_size(total: int, ctx: DistContext) -> int:
    """Per-process batch from the official total batch size; it must divide evenly."""
    if total % ctx.world_size:
        raise ValueError(f"batch-size ({total}) must be divisible by the number of processes ({ctx.world_size})")
    return total // ctx.world_size
