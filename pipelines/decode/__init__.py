"""One frame-exact decode core on PyAV: the pyav, lintel and frames readers and the bench's limit use it.

- `core`: `decode_indices` (keyframe seek, keyframe jumps, non-reference skipping,
  intra-only access), thread settings;
- `index`: intra-only sample access through MP4 sample tables, AVI idx1 and MKV cues;
- `h264`: which H.264 packets no frame refers to;
- `rgb`: RGB conversion through one reused swscale context;
- `summary`: codec, frame count and size from demuxing alone;
- `errors`: DecodeError, FrameIndexError and the index rule.
"""

from pipelines.decode.core import (
    KeyframeStarts,
    Unplaceable,
    decode_indices,
    decoder_threads,
    frames_at,
    nonref_skipper,
    open_video,
    set_decoder_threads,
)
from pipelines.decode.errors import (
    MEMORY_SOURCE,
    DecodeError,
    FrameIndexError,
    check_frame_nums,
    past_end_error,
)
from pipelines.decode.h264 import h264_is_nonref, h264_nal_length_size, h264_nonref_packets
from pipelines.decode.index import SampleIndex, fed_packets, sample_index
from pipelines.decode.rgb import RGBConverter, stack, to_rgb
from pipelines.decode.summary import StreamSummary, count_frames, native_size, stream_summary

__all__ = [
    "MEMORY_SOURCE",
    "DecodeError",
    "FrameIndexError",
    "KeyframeStarts",
    "RGBConverter",
    "SampleIndex",
    "StreamSummary",
    "Unplaceable",
    "check_frame_nums",
    "count_frames",
    "decode_indices",
    "decoder_threads",
    "fed_packets",
    "frames_at",
    "h264_is_nonref",
    "h264_nal_length_size",
    "h264_nonref_packets",
    "native_size",
    "nonref_skipper",
    "open_video",
    "past_end_error",
    "sample_index",
    "set_decoder_threads",
    "stack",
    "stream_summary",
    "to_rgb",
]
