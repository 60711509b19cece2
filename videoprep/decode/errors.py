"""The decode core's errors and its one rule on requested indices."""

from __future__ import annotations

from collections.abc import Sequence

from videoprep.errors import PathError

# Name used in error messages when the caller decodes bytes that have no path.
MEMORY_SOURCE = "<memory>"


class DecodeError(PathError):
    """A video (file or in-memory bytes) that cannot be decoded at the requested frames."""


class FrameIndexError(DecodeError):
    """Requested frame indices that break the contract or lie past the end of the video."""


def check_frame_nums(frame_nums: Sequence[int], *, source: str = MEMORY_SOURCE) -> list[int]:
    """Lintel's rule: a non-empty list of strictly increasing, 0-based frame indices."""
    nums = [int(n) for n in frame_nums]
    if not nums:
        raise FrameIndexError(source, "frame_nums is empty: ask for at least one frame")
    if nums[0] < 0:
        raise FrameIndexError(source, f"frame_nums must be 0-based, got {nums[0]} at position 0")
    for pos in range(1, len(nums)):
        if nums[pos] <= nums[pos - 1]:
            raise FrameIndexError(
                source,
                f"frame_nums must be strictly increasing (sort and de-duplicate them), "
                f"got {nums[pos - 1]} then {nums[pos]} at position {pos}",
            )
    return nums


def past_end_error(label: str, index: int, count: int, *, holder: str = "video") -> FrameIndexError:
    """The error for an index at or past the real frame count (a list frame_num larger than the video)."""
    return FrameIndexError(
        label,
        f"frame {index} requested but the {holder} has only {count} frames "
        f"(is the list's frame_num larger than the real count? re-run `videoprep index`)",
    )
