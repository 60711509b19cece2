"""URL checks for options (standard library only: the CLI checks them before importing anything heavy)."""

from __future__ import annotations

import urllib.parse


def check_url(url: str) -> str:
    """'' for an http(s) URL with a host, else why it is not one (for option checks before any work)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"{url!r} is not an http:// or https:// URL"
    if not parts.hostname:
        return f"{url!r} has no host"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{url!r} has an invalid port"
    return ""
