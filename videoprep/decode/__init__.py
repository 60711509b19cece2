"""One frame-exact decode core on PyAV, below every reader and validate's checks.

- `core`: `decode_frames` (keyframe seek, keyframe jumps, non-reference skipping,
  intra-only access) into a `FrameSink`, `frames_at`, `open_video`, thread settings;
- `index`: intra-only sample access through MP4 sample tables, AVI idx1 and MKV cues;
- `h264`: which H.264 packets no frame refers to;
- `errors`: DecodeError, FrameIndexError and the index rule.

What a frame becomes (RGB arrays, tensors) is for `pipelines.decode` and the readers.
"""

from videoprep.decode.core import (
    FrameSink,
    KeyframeStarts,
    Unplaceable,
    decode_frames,
    decoder_threads,
    frames_at,
    nonref_skipper,
    open_video,
    set_decoder_threads,
)
from videoprep.decode.errors import (
    MEMORY_SOURCE,
    DecodeError,
    FrameIndexError,
    check_frame_nums,
    past_end_error,
)
from videoprep.decode.h264 import h264_is_nonref, h264_nal_length_size, h264_nonref_packets
from videoprep.decode.index import SampleIndex, fed_packets, sample_index

__all__ = [
    "MEMORY_SOURCE",
    "DecodeError",
    "FrameIndexError",
    "FrameSink",
    "KeyframeStarts",
    "SampleIndex",
    "Unplaceable",
    "check_frame_nums",
    "decode_frames",
    "decoder_threads",
    "fed_packets",
    "frames_at",
    "h264_is_nonref",
    "h264_nal_length_size",
    "h264_nonref_packets",
    "nonref_skipper",
    "open_video",
    "past_end_error",
    "sample_index",
    "set_decoder_threads",
]
