"""Loader throughput benchmark: clips/s of every backend, side by side, against the decode limit and peers.

For each file set (one encoding of the same videos) and each view (train: random
starts; val: centred clip; test: `test_segments` clips per video) it measures, on
the same clips and interleaved round-robin per repetition (the machine is noisy):

- `reader`: our per-sample readers (`pipelines.backends`), single process, and the
  pyav reader with one decoder thread (`pyav_1t`: the per-core figure);
- `loader`: the real DataLoader path (`pipelines.loader.build_loader`), per worker count;
- `dali`: the DALI loader (`pipelines.dali`) where DALI decodes the codec on this machine;
- `peer`: torchcodec (exact and approximate, one FFmpeg thread: its default) and decord,
  called directly as their users do (skipped with a note when they do not load);
- `reference`: the official BAT usage of Lintel (decode from frame 0, no seek);
- `limit`: the decode limit, see `DecodeLimit`.

A clip is `seq_length` frames; a test sample holds `test_segments` clips, so
clips/s counts clips in every view and frames/s = clips/s * seq_length.

Modules: `plan` (config, samples), `measures` (what is timed), `limits` (the decode
limit), `goals` (the speed goals, as data), `report` (JSON, Markdown), `render`
(table, plot), `run` (the interleaved run).
"""

from pipelines.bench.goals import GOALS, Goal, evaluate
from pipelines.bench.limits import DecodeLimit, JpegLimit
from pipelines.bench.measures import Measure, peer_status, spread, time_batches
from pipelines.bench.plan import (
    DEFAULT_BACKENDS,
    PEERS,
    VIEWS,
    BenchConfig,
    Sample,
    plan_samples,
    view_segments,
)
from pipelines.bench.render import render_table, write_plot
from pipelines.bench.report import BenchReport, machine_description, summary_markdown
from pipelines.bench.run import run_bench

__all__ = [
    "DEFAULT_BACKENDS",
    "GOALS",
    "PEERS",
    "VIEWS",
    "BenchConfig",
    "BenchReport",
    "DecodeLimit",
    "Goal",
    "JpegLimit",
    "Measure",
    "Sample",
    "evaluate",
    "machine_description",
    "peer_status",
    "plan_samples",
    "render_table",
    "run_bench",
    "spread",
    "summary_markdown",
    "time_batches",
    "view_segments",
    "write_plot",
]
