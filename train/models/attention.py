"""One factory for the blocks inserted into res3/res4 (`--nltype`): chosen by name, listing valid names."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from train.models.bat import BATBlock
from train.models.errors import ModelConfigError
from train.models.nonlocal_block import NonLocal3D

# name -> constructor(channels, *, k, tk, ts, nl_drop); each block has init_weights().
ATTENTION_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "nl3d": lambda channels, *, k, tk, ts, nl_drop: NonLocal3D(channels),
    "bat": lambda channels, *, k, tk, ts, nl_drop: BATBlock(channels, k=k, tk=tk, ts=ts, nl_drop=nl_drop),
}
ATTENTION_ALIASES = {"nl": "nl3d"}

AttentionLayer = Callable[[int], nn.Module]


def attention_names() -> list[str]:
    """Every accepted `nltype`, aliases included."""
    return sorted([*ATTENTION_BLOCKS, *ATTENTION_ALIASES])


def create_attention(nltype: str, *, k: int = 4, tk: int = 0, ts: int = 4, nl_drop: float = 0.2) -> AttentionLayer:
    """Return `channels -> block` for `nltype` ("nl3d", "nl" or "bat"); BAT options are bound here."""
    name = ATTENTION_ALIASES.get(nltype, nltype)
    if name not in ATTENTION_BLOCKS:
        raise ModelConfigError(f"unknown nltype {nltype!r}; valid names are {', '.join(attention_names())}")
    return partial(ATTENTION_BLOCKS[name], k=k, tk=tk, ts=ts, nl_drop=nl_drop)
