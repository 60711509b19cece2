"""The `torchcodec` reader: PyTorch's FFmpeg-based decoder (needs FFmpeg's shared libraries), on CPU or CUDA.

One `VideoDecoder` per call and one `get_frames_at` of the sorted unique indices, as the
torchcodec maintainers advise for DataLoaders. `seek_mode="exact"` (default) scans the
file's packets first and gives the frames a full PyAV decode gives at those indices;
"approximate" trusts the container header (faster to open) and can be a frame off where
timestamps are irregular. With `device="cuda[:N]"` NVDEC decodes and the frames stay on
the GPU (the transforms run there too); use it with workers 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from pipelines.backends import DecodeError, plan_indices
from pipelines.backends.pyav import PyAVReader
from videoprep.decode import decoder_threads, past_end_error

SeekMode = Literal["exact", "approximate"]
SEEK_MODES: tuple[str, ...] = ("exact", "approximate")


class TorchCodecReader:
    """Reads frames of a video file at 0-based indices (any order, duplicates allowed) with torchcodec."""

    def __init__(self, *, seek_mode: SeekMode = "exact", device: str = "cpu", num_threads: int | None = None) -> None:
        if seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode ({seek_mode!r}) must be one of {', '.join(SEEK_MODES)}")
        self.seek_mode = seek_mode
        self.device = device
        self.num_threads = num_threads  # None: the process's decoder thread setting (1 in loader workers)

    def read(self, path: str | os.PathLike[str], indices: Sequence[int]) -> np.ndarray | torch.Tensor:
        """uint8 [len(indices), H, W, 3] RGB: a numpy array on CPU, a CUDA tensor with device cuda."""
        from torchcodec.decoders import VideoDecoder

        label = os.fspath(path)
        unique, inverse = plan_indices(indices)
        threads = self.num_threads if self.num_threads is not None else decoder_threads()
        try:
            decoder = VideoDecoder(label, seek_mode=self.seek_mode, device=self.device, dimension_order="NHWC",
                                   num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as exc:
            raise DecodeError(label, f"torchcodec cannot open it: {_first_line(exc)}") from None
        count = decoder.metadata.num_frames
        if count is not None and unique[-1] >= count:
            raise past_end_error(label, unique[-1], count)
        try:
            frames = decoder.get_frames_at(unique).data
        except IndexError:
            raise past_end_error(label, unique[-1], count if count is not None else unique[-1]) from None
        except RuntimeError as exc:
            raise DecodeError(label, f"torchcodec cannot decode it: {_first_line(exc)}") from None
        if len(unique) == len(inverse) and bool(np.all(inverse == np.arange(len(unique)))):
            return frames if frames.is_cuda else frames.numpy()
        order = torch.as_tensor(inverse, device=frames.device)
        return frames[order] if frames.is_cuda else frames.numpy()[inverse]

    # Frames a full decode yields, counted from packets as the pyav reader does (no decoding).
    frame_count = PyAVReader.frame_count

    def __repr__(self) -> str:
        return f"TorchCodecReader(seek_mode={self.seek_mode!r}, device={self.device!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
