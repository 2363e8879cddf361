"""What every `callqa` command shares, declared once: the options several commands take (`--db`, `--json`,
`--checklist`, manifests, the speech options...), the help layout (option sections, arguments with help) and
the one error handler that turns exceptions into the documented exit codes.

Exit codes (the same table is in `callqa --help` and the README):

    0    done
    1    the command ran and found a problem: no scored calls for that week or checklist, labels that join
         no manifest row, checklist examples that fit nothing or come out wrong, a worker that died
    2    usage error or bad input: an unknown, missing or malformed option; a database, manifest or
         checklist that does not exist or cannot be read
    3    the database is being written by another run (`callqa run --wait SECONDS` queues behind it)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from callqa.pipelines.store.database import DEFAULT_DB, DatabaseBusy
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
exit codes:
  0    done
  1    the command ran and found a problem (no calls for that week, labels that join nothing, a dead worker)
  2    usage error or bad input (unknown option, missing database/manifest/checklist, unreadable file)
  3    the database is being written by another run (see `callqa run --wait`)
  130  interrupted (Ctrl-C)"""

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@dataclass(frozen=True)
class Settings:
    """The root options (`callqa -v -q COMMAND`), handed to every command as `ctx.obj`."""

    verbose: bool = False
    quiet: bool = False


pass_settings = click.make_pass_decorator(Settings, ensure=True)


class Failed(click.ClickException):
    """The command ran and found a problem (exit 1 unless told otherwise); printed as `callqa CMD: message`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code
        self.where: str | None = None  # the command path, filled in by errors_to_exit_codes

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.where or 'callqa'}: {self.format_message()}", err=True)


@contextmanager
def errors_to_exit_codes(where: str) -> Iterator[None]:
    """The one error handler: what a command raises becomes its exit code and one line on stderr. Programming
    errors (KeyError, TypeError, ...) are not caught: they keep their traceback."""
    try:
        yield
    except Failed as e:
        e.where = e.where or where
        raise
    except click.ClickException:
        raise
    except DatabaseBusy as e:
        raise _failed(where, str(e), EXIT_BUSY) from e
    except (FileNotFoundError, ValueError) as e:  # bad input: a missing file, an unreadable manifest or checklist
        raise _failed(where, str(e), EXIT_USAGE) from e
    except LookupError as e:  # nothing to show: no calls for that week or checklist
        if isinstance(e, KeyError | IndexError):
            raise
        raise _failed(where, str(e), EXIT_FAILED) from e


def _failed(where: str, message: str, code: int) -> Failed:
    f = Failed(message, code)
    f.where = where
    return f


# --- help layout -------------------------------------------------------------------------------------------


class SectionOption(click.Option):
    """An option listed under its own heading in `--help` (e.g. "Speech recognition")."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class CallqaCommand(click.Command):
    """A command whose exceptions go through `errors_to_exit_codes` and whose help lists its options by section
    (click >= 8.5 lists the arguments, with their help, before them)."""

    def invoke(self, ctx: click.Context) -> Any:
        with errors_to_exit_codes(ctx.command_path):
            return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for p in self.get_params(ctx):
            rec = p.get_help_record(ctx)
            if rec is not None and not isinstance(p, click.Argument):
                sections.setdefault(getattr(p, "section", None) or "Options", []).append(rec)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class CallqaGroup(click.Group):
    """Subcommands listed in the order they were added (the order of a day's work), built as `CallqaCommand`."""

    command_class = CallqaCommand

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


CallqaGroup.group_class = CallqaGroup


# --- shared options ----------------------------------------------------------------------------------------

PathType = click.Path(path_type=Path)


def db_option(default: str = DEFAULT_DB, help: str | None = None) -> Callable:  # noqa: A002
    return click.option("--db", type=PathType, default=default, metavar="FILE",
                        help=help or f"DuckDB file (default: ./{default})")


def json_option(help: str = "print one JSON object") -> Callable:  # noqa: A002
    return click.option("--json", "as_json", is_flag=True, help=help)


def checklist_option(help: str = "bundled checklist name or YAML path", required: bool = False) -> Callable:  # noqa: A002
    if required:
        return click.option("--checklist", required=True, metavar="NAME|FILE", help=help)
    return click.option("--checklist", default=DEFAULT_CHECKLIST, metavar="NAME|FILE",
                        help=f"{help} (default: {DEFAULT_CHECKLIST})")


def checklist_id_option() -> Callable:
    """A stored checklist, read back from the database (reports, reviews, the app)."""
    return click.option("--checklist", default=DEFAULT_CHECKLIST, metavar="ID",
                        help=f"checklist id (default: {DEFAULT_CHECKLIST})")


def manifest_option(help: str, required: bool = False, multiple: bool = False) -> Callable:  # noqa: A002
    return click.option("--manifest", type=PathType, required=required, multiple=multiple, metavar="FILE",
                        help=help)


def labels_option(help: str) -> Callable:  # noqa: A002
    return click.option("--labels", type=PathType, default=None, metavar="FILE", help=help)


def week_option(help: str = "ISO week YYYY-Www (default: the latest week with calls)") -> Callable:  # noqa: A002
    return click.option("--week", metavar="YYYY-Www", help=help)


def lang_option() -> Callable:
    return click.option("--lang", default="en", type=click.Choice(["en", "zh"]),
                        help="language of item titles (default: en)")


def routing_option(help: str) -> Callable:  # noqa: A002
    return click.option("--routing", metavar="FILE|default", help=help)


def max_attempts_option(help: str) -> Callable:  # noqa: A002
    return click.option("--max-attempts", type=int, default=3, metavar="N", help=help)


def vocabulary_option(section: str | None = None) -> Callable:
    return click.option("--vocabulary", cls=SectionOption, section=section, default=None, metavar="A,B",
                        help="comma-separated product/store names to prime the decoder")


def vocab_file_option(section: str | None = None) -> Callable:
    return click.option("--vocab", "vocab_file", cls=SectionOption, section=section, type=PathType, default=None,
                        metavar="FILE", help="team vocabulary for the decoder: UTF-8 text, one term per line "
                        "(# starts a comment); a missing or empty file is an error")


def split_list(text: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')"""
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


SPEECH = "Speech recognition"
_ASR_PARAMS = ("runtime", "model", "compute_type", "device", "threads", "beam_size", "language", "vocabulary",
               "vocab_file", "hints", "product_hints")


def asr_options(f: Callable) -> Callable:
    """The speech options of `run` and `eval`, handed to the command as one `asr: AsrOptions` argument."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from callqa.models.asr import AsrOptions
        from callqa.models.hints import run_vocabulary

        o = {k: kwargs.pop(k) for k in _ASR_PARAMS}
        kwargs["asr"] = AsrOptions(runtime=o["runtime"], model=o["model"], compute_type=o["compute_type"],
                                   device=o["device"], cpu_threads=o["threads"], beam_size=o["beam_size"],
                                   language=o["language"], hints=o["hints"], product_hints=o["product_hints"],
                                   vocabulary=run_vocabulary(split_list(o["vocabulary"]), o["vocab_file"]))
        return f(*args, **kwargs)

    opt = functools.partial(click.option, cls=SectionOption, section=SPEECH)
    for decorate in reversed([
        opt("--runtime", default="faster-whisper", type=click.Choice(["faster-whisper", "openai-whisper"]),
            metavar="RUNTIME", help="Whisper runtime: faster-whisper (default, CTranslate2 int8) or openai-whisper"),
        opt("--model", default=None, metavar="NAME|PATH",
            help="Whisper model: 'base' (bundled, default), another Whisper name, or a local folder/file"),
        opt("--compute-type", default="int8", metavar="TYPE",
            help="faster-whisper compute type (int8, float16, float32)"),
        opt("--device", default="cpu", metavar="DEVICE", help="cpu or cuda"),
        opt("--threads", type=int, default=0, metavar="N", help="CPU threads for the model (0: all cores)"),
        opt("--beam-size", type=int, default=5, metavar="N", help="beam search width (default 5)"),
        opt("--language", default=None, metavar="LANG", help="force a language (zh, en); default: detect per call"),
        vocabulary_option(SPEECH),
        vocab_file_option(SPEECH),
        opt("--hints", default="prompt", type=click.Choice(["prompt", "hotwords", "off"]), metavar="MODE",
            help="how the vocabulary reaches Whisper: prompt (first 30 s window, default), hotwords (every window; "
            "openai-whisper: the prompt carried), off"),
        opt("--product-hints", is_flag=True, help="add each call's manifest `product` to its own vocabulary "
            "(measured, not a default: docs/asr.md)"),
    ]):
        wrapper = decorate(wrapper)
    return wrapper
