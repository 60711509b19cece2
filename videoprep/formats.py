"""Which files are videos: the one extension list every stage, report and fingerprint shares (no av import)."""

from __future__ import annotations

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".ogv", ".m4v")
