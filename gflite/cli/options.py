"""``gflite``'s flags (the table in :mod:`.flags`) as a click command: the help,
every usage error, and the command lines :func:`.flags.parse` leaves to it.

Built from click's classes directly: typer (which ``gwasm`` uses) costs this
command about a fifth of its start-up to import and to build these options from
a signature. The help keeps typer's layout (an Arguments section before the Options).
"""
from __future__ import annotations

from typing import Any, List

import click

from gflite.cli import flags

# click rewraps help paragraphs unless they start with a \b line.
EPILOG = """\b
exit codes: 0 ok, 1 other error, 2 bad usage, 3 bad input text or voice,
  5 a chunk failed or the job timed out, 6 providers disagreed, 7 bid or budget,
  8 cluster, 9 output, 130 interrupted (finished chunks are cached: rerun to resume)

\b
cache: finished chunks are kept in $GFLITE_CACHE_DIR (default ~/.cache/gflite),
  so a rerun resumes and an edited book re-synthesises only the chunks it changed.

\b
examples:
  gflite book.txt book.mp3                   flite's positional form
  gflite -voice slt -f book.txt -o book.wav  flite's flags
  gflite book.txt -o - | aplay               starts playing after the first chunk
  gflite book.epub -o book.m4b               an audiobook: chapters, title, author, cover
  gflite book.epub --list-chapters           then --chapters 3-7,9 or --split chapters -o DIR/
"""
HELP = """Convert text to speech with flite, in parallel, as sandboxed subtasks.
Existing flite commands work with a g in front."""


_TYPES = {flags.TEXT: click.STRING, flags.NUMBER: click.FLOAT, flags.COUNT: click.IntRange(min=1),
          flags.NON_NEGATIVE: click.FloatRange(min=0), flags.FRACTION: click.FloatRange(min=0.0, max=1.0)}


def _option(flag: flags.Flag) -> click.Option:
    decls = [*flag.names, flag.dest]
    if flag.kind == flags.SWITCH:
        return click.Option(decls, is_flag=True, default=False, help=flag.help, hidden=flag.hidden)
    kw: dict[str, Any] = {"multiple": True} if flag.kind == flags.MANY else {"default": flag.default}
    return click.Option(decls, type=_TYPES[flag.type], metavar=flag.metavar, help=flag.help, hidden=flag.hidden,
                        show_default=flag.show_default, envvar=flag.envvar, show_envvar=flag.envvar is not None,
                        **kw)


PARAMS: List[click.Parameter] = [
    click.Argument([flags.POSITIONAL], nargs=-1, required=False, metavar=flags.POSITIONAL_METAVAR),
    *(_option(flag) for flag in flags.FLAGS),
]


class _Command(click.Command):
    """click's command with the help layout gflite has always had (typer's):
    the positional arguments in a section of their own before the options."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        args = [(p.make_metavar(ctx), "") for p in self.get_params(ctx) if isinstance(p, click.Argument)]
        opts = [rv for p in self.get_params(ctx) if isinstance(p, click.Option)
                and (rv := p.get_help_record(ctx)) is not None]
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _callback(**kw: Any) -> None:
    from gflite.cli.job import run_args

    try:
        run_args(flags.to_args(kw))
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        # click would turn these into exit codes of its own (an Abort, or 1 for
        # a closed pipe); carry them past it to main(), which decides.
        raise Carry(exc) from None


class Carry(Exception):
    """Ctrl-C or a closed pipe, carried past click to the caller."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


command = _Command(
    "gflite", params=PARAMS, callback=_callback, help=HELP, epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help", "-?"]},
)
