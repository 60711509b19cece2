"""A tiny real dataset for the runner tests: a few 64x48 H.264 clips and BAT lists over them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from videoprep.records import ListRecord, write_list
from videoprep.synth import write_video

NUM_FRAMES = 12


@dataclass(frozen=True)
class TinyData:
    """Where the tiny dataset lives: root, train list (4 videos), val list (3 videos: an odd count)."""

    root: Path
    train_list: Path
    val_list: Path


def tiny_flags(data: TinyData, out: Path, *, epochs: int = 2) -> list[str]:
    """Runner flags for a fast CPU run: ResNet-18 C2D, 4-frame clips, 32 px crops, batch 2, no workers."""
    return [
        str(data.train_list), str(data.val_list), "--root_path", str(data.root),
        "--backend", "pyav", "--arch", "c2d_resnet18", "--num_classes", "2",
        "--seq_length", "4", "--sample_rate", "1", "--crop-size", "32", "--scale-size", "40",
        "-b", "2", "-j", "0", "--epochs", str(epochs), "--lr", "0.05", "--lr_steps", "1",
        "--device", "cpu", "--seed", "7", "--progress", "off", "-p", "1",
        "--log_dir", str(out / "log"), "--snapshot_dir", str(out / "ckpt"),
    ]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a shared 2-core machine the threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    """Seven real videos; label = seed parity, so the two classes differ in content."""
    root = tmp_path_factory.mktemp("tiny_videos")
    records = []
    for i in range(7):
        name = f"v{i}.mp4"
        write_video(root / name, num_frames=NUM_FRAMES, width=64, height=48, seed=i, gop=4)
        records.append(ListRecord(path=name, frame_num=NUM_FRAMES, label=i % 2))
    train_list, val_list = root / "train.txt", root / "val.txt"
    write_list(train_list, records[:4])
    write_list(val_list, records[4:])
    return TinyData(root=root, train_list=train_list, val_list=val_list)


@dataclass(frozen=True)
class TrainedRun:
    """One tiny training epoch on lists as `videoprep index` leaves them (classes.txt beside them), with the
    backend and --num_classes left to inference: its checkpoint, printed lines and log folder."""

    checkpoint: Path
    printed: str
    log_dir: Path
    lists: Path


@pytest.fixture(scope="session")
def trained_run(tiny_data: TinyData, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """Shared by evaluation, soft resume, the test runner and the inference checks."""
    from train.checkpoint import checkpoint_path
    from train.config import parse_train_args
    from train.main import run_training

    out = tmp_path_factory.mktemp("trained")
    lists = out / "lists"
    lists.mkdir()
    for name in ("train.txt", "val.txt"):
        (lists / name).write_text((tiny_data.root / name).read_text())
    (lists / "classes.txt").write_text("odd\neven\n")
    flags = tiny_flags(tiny_data, out, epochs=1)
    flags[:2] = [str(lists / "train.txt"), str(lists / "val.txt")]
    inferred = [f for i, f in enumerate(flags) if f not in ("--backend", "--num_classes")
                and flags[i - 1] not in ("--backend", "--num_classes")]
    printed = io.StringIO()
    run_training(parse_train_args(inferred), stream=printed)
    return TrainedRun(checkpoint_path(out / "ckpt", "c2d_resnet18"), printed.getvalue(), out / "log", lists)


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run: TrainedRun) -> Path:
    """The checkpoint of the shared tiny training epoch (a 2-class C2D ResNet-18 read with pyav)."""
    return trained_run.checkpoint
