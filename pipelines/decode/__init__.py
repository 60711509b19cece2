"""Frames as RGB arrays on the decode core of `videoprep.decode`: the pyav, lintel and frames readers use it.

- `rgb`: `decode_indices` (the core's frames at given indices as one RGB array), RGB
  conversion through one reused swscale context;
- `summary`: codec, frame count and size from demuxing alone.

The PyAV-level core (open, keyframe index, intra-only access, non-reference skipping,
`frames_at`) and its errors live in `videoprep.decode`; import them from there.
"""

from pipelines.decode.rgb import RGBClip, RGBConverter, decode_indices, stack, to_rgb
from pipelines.decode.summary import StreamSummary, count_frames, native_size, stream_summary

__all__ = [
    "RGBClip",
    "RGBConverter",
    "StreamSummary",
    "count_frames",
    "decode_indices",
    "native_size",
    "stack",
    "stream_summary",
    "to_rgb",
]
