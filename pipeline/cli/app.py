"""The `claims` command line.

Every known error becomes one line on stderr (`error: ...`) and the error's exit code: 2 for bad
input or configuration, 1 for a failed run or replay. An unexpected exception is also one line,
unless CLAIMS_DEBUG=1 asks for the traceback; locals are never shown, so no key can leak.
"""

from __future__ import annotations

import errno
import functools
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pipeline import __version__
from pipeline.core.errors import ClaimsError, InputError
from pipeline.core.settings import RunSettings, Settings, current, use
from pipeline.llm.base import ChatModel
from pipeline.llm.cache import SQLiteResponseCache
from pipeline.llm.providers import LiveModel
from pipeline.sources.http import make_client
from pipeline.sources.metadata import DoiCache, DoiSettings
from pipeline.team.accounts import Credentials
from pipeline.team.store import Store, database_trouble
from pipeline.workflow.batch import load_prices
from pipeline.workflow.paper import DoiAccess, PaperTools
from pipeline.workflow.pool import ParsePool
from pipeline.workflow.run import STAGES, Progress, quiet


def one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Known errors become `error: ...` and their exit code; a bug becomes one line too."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            with use(Settings.from_environment()):  # read once; every layer finds it with current()
                command(*args, **kwargs)
        except ClaimsError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except sqlite3.DatabaseError as exc:  # the response cache's
            err.print(f"error: {database_trouble(str(exc))}", markup=False)
            raise typer.Exit(1) from None
        except OSError as exc:
            err.print(f"error: {_file_trouble(exc)}", markup=False)
            raise typer.Exit(1) from None
        except Exception as exc:
            if current().debug:
                raise
            err.print(
                f"error: internal error: {type(exc).__name__}: {exc} (set CLAIMS_DEBUG=1 for details)", markup=False
            )
            raise typer.Exit(70) from None

    return guarded


def _file_trouble(exc: OSError) -> str:
    """A file-system failure (disk full, permission, read-only disk, name too long) in one line."""
    name = str(exc.filename) if exc.filename else ""
    where = f"{name if len(name) <= 120 else name[:117] + '...'}: " if name else ""
    advice = {
        errno.ENOSPC: "the disk is full: free some space and run again",
        errno.EACCES: "permission denied: check the folder's permissions or choose another",
        errno.EPERM: "not permitted: check the folder's permissions or choose another",
        errno.EROFS: "the file system is read-only: choose a writable folder",
        errno.ENAMETOOLONG: "the file name is too long",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{where}{advice}"


app = typer.Typer(
    help="Turn a published study (a PDF) into a reviewed, cited evidence claim record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# markup=False: what is printed holds user text (account names, notes, claims, a paper's title);
# "[/bold]" in it is text to show, never a style (as markup it crashed the command).
out = Console(highlight=False, soft_wrap=True, markup=False)
if not out.is_terminal:
    out.width = 160  # tables in logs and pipes: wide enough to read, not the terminal's 80
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

DbOption = typer.Option(
    None,
    "--db",
    metavar="FILE|URL",
    help="Record store: a SQLite file or postgresql://USER@HOST/DB. Default: $CLAIMS_DB or ~/.local/share/claims/claims.db",
)


class StageProgress:
    """Shows the step that is running, then one line per finished stage, on stderr: the five
    stages numbered, the second opinion as [+], the rest (a DOI's lookup, a recording, a study
    added) as they are."""

    def __init__(self, console: Console):
        self._console = console
        self._status: Any = None
        self._said: set[str] = set()

    def __call__(self, stage: str, event: str, detail: str) -> None:
        numbered = stage in STAGES or stage == "verify"
        if numbered:
            label = (f"[{STAGES.index(stage) + 1}/{len(STAGES)}] " if stage in STAGES else "[+] ") + stage
        else:
            label = {"fetch": "looking up", "add": "adding", "attach": "attaching"}.get(stage, stage)
        if event == "start":
            self.stop()
            self._status = self._console.status(f"{label} {detail} ..." if detail else f"{label} ...")
            self._status.start()
            return
        if event == "done":
            self.stop()
        if event == "held":  # said once: the paper is tried again every few seconds
            if detail in self._said:
                return
            self._said.add(detail)
        self._console.print(f"{label}: {detail}" if numbered else detail, markup=False, highlight=False)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def open_store(db: str | None, read_only: bool = False) -> Store:
    """`read_only` for commands that only read: they work on a store the user may not write.
    A SQLite store other users of the machine may read is opened with a warning."""
    store = Store(db or current().db, read_only=read_only)
    if store.exposed:
        err.print(
            f"warning: {store.path} is readable by other users of this machine, and it holds password hashes "
            f"and the review page's sessions: chmod 600 {store.path}",
            markup=False,
        )
    return store


PasswordStdinOption = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin (scripts) instead of asking."
)


def credentials(password_stdin: bool) -> Credentials:
    """How a command-line decision proves its account on a store with accounts: $CLAIMS_TOKEN, or
    the password (one line of stdin with --password-stdin, else asked in a terminal)."""

    def password() -> str | None:
        if password_stdin:
            return sys.stdin.readline().rstrip("\r\n")
        if sys.stdin.isatty():
            return str(typer.prompt("password", hide_input=True))
        return None

    return Credentials(token=current().token, password=password)


def run_settings(model: str | None, live: LiveModel, verify_with: str | None = None) -> RunSettings:
    """The run's model (--model, else CLAIMS_MODEL) and, where known, its context window
    (CLAIMS_CONTEXT_TOKENS, else what the server says), which sets each stage's text budget; and
    the second opinion's model, if any (--verify-with, else CLAIMS_VERIFY_MODEL)."""
    name = model or current().model
    return RunSettings(
        model=name,
        context_tokens=current().context_tokens or live.context_window(name),
        verify_model=(verify_with or "").strip() or current().verify_model,
    )


VerifyOption = typer.Option(
    None,
    "--verify-with",
    metavar="MODEL",
    help="Also ask this model (same endpoint) whether each finding is what its quote says; doubts are "
    "flagged second_opinion. Default: $CLAIMS_VERIFY_MODEL, else none.",
)


def say_adaptations(live: LiveModel) -> None:
    """What the client changed because the endpoint refused it (an answer format, a sampling
    parameter): the user should know the requests were not those the settings describe."""
    for change in live.adaptations:
        err.print(f"note: {change}", markup=False)


def pdf_cap(max_pdf_mb: float | None) -> int:
    """The PDF size cap in bytes: --max-pdf-mb, else CLAIMS_MAX_PDF_MB, else 50 MB (downloads and local files)."""
    if max_pdf_mb is not None and max_pdf_mb <= 0:
        raise InputError(f"--max-pdf-mb {max_pdf_mb:g} must be more than 0")
    return int((max_pdf_mb or current().max_pdf_megabytes) * 1024 * 1024)


def doi_tools(max_pdf_mb: float | None) -> DoiAccess:
    mailto = current().mailto
    settings = DoiSettings(mailto=mailto, max_pdf_bytes=pdf_cap(max_pdf_mb))
    return DoiAccess(make_client(mailto), DoiCache(current().cache_dir / "doi"), settings)


def paper_tools(
    chat: ChatModel,
    live: LiveModel,
    store: Store,
    pool: ParsePool,
    max_pdf_mb: float | None,
    *,
    cached: bool = True,
    progress: Progress = quiet,
) -> PaperTools:
    """What `run`, `batch` and `add-evidence` hand the workflow: the model (through `chat`), the
    store, the response cache (unless `cached` is off), DOI look-ups, the capped parse and check
    processes, the price table and where progress goes."""
    return PaperTools(
        chat,
        store,
        SQLiteResponseCache(current().cache_dir / "responses.db") if cached else None,
        doi_tools(max_pdf_mb),
        pool.parse,
        load_prices(),
        current().base_url,
        adaptations=live.adaptations,
        check=pool.check,
        progress=progress,
    )


NotAStudyOption = typer.Option(
    False, "--not-a-study-ok", help="Draft a document that does not look like a research paper (notes, slides, a book)."
)
MaxPdfOption = typer.Option(None, "--max-pdf-mb", help="Download size cap. Default: $CLAIMS_MAX_PDF_MB or 50.")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _version(value: bool) -> None:
    if value:
        out.print(f"claims {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Turn a published study (a PDF) into a reviewed, cited evidence claim record."""
