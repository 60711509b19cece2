"""Run under torchrun: each rank streams a shard pattern in one mode and rank 0 writes what every rank saw.

python -m torch.distributed.run --nproc_per_node=2 tests/pipelines/ddp_shards_probe.py PATTERN MODE OUT.json
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch.distributed as dist

from pipelines.shards import build_shard_loader
from pipelines.spec import ClipSpec, LoaderConfig


def main(pattern: str, mode: str, out: str) -> None:
    dist.init_process_group("gloo")
    clip = ClipSpec(mode=mode, seq_length=4, sample_rate=2, crop_size=32, scale_size=40)  # the test's CLIP
    config = LoaderConfig(batch_size=2, workers=1, num_classes=2, seed=3, distributed=True)
    loader = build_shard_loader(pattern, clip, config)
    seen = []
    batches = 0
    for clips, labels in loader:
        batches += 1
        for sample, label in zip(clips, labels.tolist(), strict=True):
            seen.append([hashlib.sha1(sample.numpy().tobytes()).hexdigest(), label])
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, {"seen": seen, "batches": batches, "len": len(loader)})
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(everyone, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
