"""Errors of the model layer: a bad architecture choice or an input the model cannot take."""

from __future__ import annotations

from videoprep.errors import VideoprepError


class ModelConfigError(VideoprepError, ValueError):
    """A model option outside what the architecture supports (unknown name, bad divisor)."""


class ModelInputError(VideoprepError, ValueError):
    """An input tensor whose shape the model cannot process (e.g. too small for BAT's 7x7 grid)."""
