"""The `videoprep` command line: parses options, calls the library, reports errors once.

Each subcommand is one function; its docstring is its --help. Domain errors
(videoprep.errors.VideoprepError) become one-line messages and exit 1.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from videoprep.errors import VideoprepError
from videoprep.progress import ProgressFn

err_console = Console(stderr=True)


class _Group(click.Group):
    """Click group that reports our own errors without a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VideoprepError as exc:
            raise click.ClickException(str(exc)) from exc


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
def progress_bar(description: str) -> Iterator[ProgressFn]:
    """A rich progress bar on stderr driven by the stages' on_progress(done, total) callback."""
    quiet = bool((click.get_current_context().obj or {}).get("quiet"))
    if quiet or not err_console.is_terminal:
        yield _log_progress(description)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _log_progress(description: str) -> ProgressFn:
    """Non-interactive progress: a line every 10% instead of a bar (CI logs stay short)."""
    state = {"next": 0.0}

    def update(done: int, total: int) -> None:
        if total and done / total >= state["next"]:
            logging.getLogger("videoprep.progress").info("%s: %d/%d", description, done, total)
            state["next"] = done / total + 0.1

    return update


# --- subcommands ----------------------------------------------------------------
# Each feature adds its command below; keep option parsing here and the work in the library.


# --- index / validate ---


# --- transcode / frames ---


# --- download ---


# --- bench ---


# --- train / test ---


# --- demo ---


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="videoprep")


if __name__ == "__main__":
    main()
