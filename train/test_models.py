"""`python -m train.test_models`: the official test_models.py command line (which crashes as published), on our Evaluator.

    python -m train.test_models VAL_LIST CHECKPOINT --read_mode video --arch c2d_resnet50 \
        --nonlocal_mod 2 --nltype bat --k 8 --tk 4 --test_segments 10 --test_crops 3 \
        --seq_length 8 --sample_rate 8 -j 16
    torchrun --nproc_per_node=8 -m train.test_models VAL_LIST CHECKPOINT ...   # large test sets

The work is in `train.evaluate`; this module only keeps the official name and exit statuses.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from train.config import parse_test_args
from train.evaluate import run_test
from videoprep.errors import VideoprepError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train.test_models`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = parse_test_args(argv)
    try:
        run_test(cfg)
    except VideoprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
