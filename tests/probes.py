"""The hardening probes of issue 11, each as an attacker or a clumsy user would try it.

Every probe sets up its own files under a scratch folder, runs the `claims` command (in-process
through typer's runner, or as a subprocess where memory, time or another user matter), and says
whether what it tried held. `tests/test_hardening.py` runs each as a test; `bench/probes.py`
runs them all and prints tried / held / lost.

A probe holds when the command refuses with one line (`error: ...`), the exit code given (never
70, never a traceback), writes nothing it should not, and loses nothing a user typed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from pdfmaker import make_pdf
from scripted_endpoint import RandomWithinSchema, ScriptedEndpoint
from starlette.testclient import TestClient

from pipeline.cli import click_command
from pipeline.llm.recording import load_recording, recorded_pdf
from pipeline.review import decisions
from pipeline.sources.pdf import read_pdf
from pipeline.team.accounts import drafted_note, hash_password
from pipeline.team.store import Store
from pipeline.web import create_app

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "fixtures" / "runs"
PAPERS = ROOT / "fixtures" / "papers"
LECTURE_NOTES = ROOT / "fixtures" / "bad" / "long_117_pages_geotopo.pdf"
SITE = "http://127.0.0.1:8000"
HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
    "<javascript:alert(4)> ![i](javascript:alert(5)) &lt;b&gt; \\<i>x</i>"
)


@dataclass
class Outcome:
    held: bool
    detail: str


@dataclass
class Scratch:
    """A probe's own folder, store and environment."""

    folder: Path

    @property
    def db(self) -> Path:
        return self.folder / "claims.db"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CLAIMS_DB": str(self.db),
            "CLAIMS_CACHE": str(self.folder / "cache"),
            "HOME": str(self.folder),
            "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": "",
            **extra,
        }

    def claims(self, *args: str, stdin: str | None = None, **env: str) -> tuple[int, str]:
        result = CliRunner().invoke(click_command(), list(args), env=self.env(**env), input=stdin)
        return result.exit_code, result.output

    def as_admin(self, *args: str) -> tuple[int, str]:
        """`claims ARGS` as the team store's admin (root), proved by the password."""
        return self.claims(*args, "--admin", "root", "--password-stdin", stdin=_PASSWORD + "\n")

    def approve(self, record_id: str) -> None:
        store = Store(self.db)
        decisions.approve(store, record_id, store.version_of(record_id), "probe", override="set up by the probe")

    def stored(self, name: str = "misbehaving-fabricated-quote") -> str:
        """A bundled record in this scratch store, with its paper's text."""
        recording, record = load_recording(RUNS / name)
        assert record is not None
        pages = read_pdf(recorded_pdf(RUNS / name, recording)).pages
        return Store(self.db).add(record, source_pages=pages)


Probe = Callable[[Scratch], Outcome]
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        PROBES[name] = function
        return function

    return register


def one_line_refusal(code: int, output: str, expected_code: int | tuple[int, ...] = (1, 2)) -> Outcome:
    """Held: the expected exit code and a single `error:` line, no traceback, no internal error."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    codes = expected_code if isinstance(expected_code, tuple) else (expected_code,)
    held = code in codes and len(errors) == 1 and "internal error" not in output and "Traceback" not in output
    return Outcome(held, f"exit {code}: {(errors[0] if errors else output.strip())[:300]}")


def subprocess_claims(
    scratch: Scratch, *args: str, user: str | None = None, timeout: float = 60, **extra_env: str
) -> tuple[int, str, float, float]:
    """`claims ARGS` in its own process: exit code, output, seconds and that process's peak RSS in
    MB (measured by a fresh parent whose only child it is, so no earlier child counts)."""
    command = [sys.executable, "-m", "pipeline", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    env = {**os.environ, **scratch.env(**extra_env), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=scratch.folder,
    )
    seconds = time.perf_counter() - started
    *output, peak = (completed.stdout + completed.stderr).rstrip("\n").split("\n")
    return completed.returncode, "\n".join(output), seconds, int(peak.removeprefix("peak-rss-kb ")) / 1024


_MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("peak-rss-kb", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


# --------------------------------------------------------------------------- 1. the review page


def _site(scratch: Scratch) -> tuple[Callable[..., TestClient], str, Store]:
    record_id = scratch.stored()
    application = create_app(Store(scratch.db))
    return (
        (lambda base_url=SITE, **kw: TestClient(application, base_url=base_url, **kw)),
        record_id,
        Store(scratch.db),
    )


def _token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


@probe("web: a page on a foreign host name (DNS rebinding) reads a record")
def rebinding_read(scratch: Scratch) -> Outcome:
    client, record_id, _ = _site(scratch)
    pages = [
        client("http://evil.test:8000").get(path)
        for path in ("/", f"/records/{record_id}", f"/records/{record_id}/edit")
    ]
    leaked = [page.url for page in pages if page.status_code != 400 or record_id in page.text]
    return Outcome(not leaked, f"statuses {[p.status_code for p in pages]}")


@probe("web: a foreign host name approves a flagged record with a stolen token")
def rebinding_approve(scratch: Scratch) -> Outcome:
    client, record_id, store = _site(scratch)
    token = _token(client().get(f"/records/{record_id}").text)
    answer = client("http://evil.test:8000", cookies={"claims_csrf": token}).post(
        f"/records/{record_id}/approve",
        headers={"Origin": "http://evil.test:8000"},
        data={"csrf": token, "version": "1", "reviewer": "x", "override": "x"},
    )
    return Outcome(store.get(record_id).status.value == "draft", f"HTTP {answer.status_code}")


def _post_probe(headers: dict[str, str], should_pass: bool) -> Probe:
    def run(scratch: Scratch) -> Outcome:
        client, record_id, store = _site(scratch)
        session = client()
        token = _token(session.get(f"/records/{record_id}").text)
        answer = session.post(
            f"/records/{record_id}/approve",
            headers=headers,
            data={"csrf": token, "version": "1", "reviewer": "ana", "override": "checked"},
        )
        approved = store.get(record_id).status.value == "approved"
        return Outcome(approved is should_pass, f"HTTP {answer.status_code}, approved: {approved}")

    return run


probe("web: a POST with only a foreign Referer")(_post_probe({"Referer": "https://evil.example/x"}, False))
probe("web: a POST with neither Origin nor Referer")(_post_probe({}, False))
probe("web: a POST with a foreign Origin and a same-site Referer")(
    _post_probe({"Origin": "https://evil.example", "Referer": f"{SITE}/"}, False)
)
probe("web: a same-site POST with only a Referer still works")(_post_probe({"Referer": f"{SITE}/records/x"}, True))


@probe("web: a response without CSP, X-Frame-Options or nosniff")
def security_headers(scratch: Scratch) -> Outcome:
    client, record_id, _ = _site(scratch)
    missing = []
    for response in (
        client().get("/"),
        client().get(f"/records/{record_id}"),
        client().get("/records/nope"),
        client("http://evil.test").get("/"),
    ):
        policy = response.headers.get("content-security-policy", "")
        if "default-src 'none'" not in policy or "frame-ancestors 'none'" not in policy or "script-src" in policy:
            missing.append(f"{response.url} CSP")
        if (
            response.headers.get("x-frame-options") != "DENY"
            or response.headers.get("x-content-type-options") != "nosniff"
        ):
            missing.append(f"{response.url} framing/nosniff")
    return Outcome(not missing, ", ".join(missing) or "every response carries them")


@probe("web: the 404 page shows the store's file path")
def not_found_path(scratch: Scratch) -> Outcome:
    client, _, _ = _site(scratch)
    response = client().get("/records/0123456789ab")
    return Outcome(response.status_code == 404 and str(scratch.folder) not in response.text, response.text[:120])


# --------------------------------------------------------------------------- 2. Markdown


def _hostile_record(scratch: Scratch) -> str:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    store = Store(scratch.db)
    record = store.get(record_id)
    record.claim.text = HOSTILE
    record.mechanism.plain_language = HOSTILE
    record.mechanism.summary = "line one\n\n<script>alert(6)</script>\n\n[x]: javascript:alert(7)\n\n[x]"
    record.mechanism.steps[0].text = HOSTILE
    record.studies[0].summary = HOSTILE
    record.studies[0].findings[0].outcome = HOSTILE
    record.studies[0].reference.title = HOSTILE
    record.gold_standard[0].why = HOSTILE
    store.update(record, 1, "edited", "probe", "")  # what a hostile PDF or model could have put there
    scratch.approve(record_id)
    return record_id


def raw_html_in_markdown(markdown: str) -> list[str]:
    """Raw HTML or a script link that a CommonMark renderer (raw HTML allowed) makes of the text."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": True}).render(markdown)
    found = re.findall(r"<(script|img|i|b|iframe)\b", html) + re.findall(r"(?:href|src)=\"(?!https?:)[^\"]*\"", html)
    return found


@probe("markdown: claims export --markdown carries raw HTML or script links")
def markdown_export(scratch: Scratch) -> Outcome:
    _hostile_record(scratch)
    code, _output = scratch.claims("export", str(scratch.folder / "public"), "--markdown")
    pages = list((scratch.folder / "public").glob("*.md"))
    found = [hit for page in pages for hit in raw_html_in_markdown(page.read_text())]
    return Outcome(code == 0 and len(pages) == 1 and not found, f"exit {code}; raw HTML: {found[:5]}")


@probe("markdown: claims render --format md carries raw HTML or script links")
def markdown_render(scratch: Scratch) -> Outcome:
    record_id = _hostile_record(scratch)
    code, output = scratch.claims("render", record_id, "--format", "md")
    found = raw_html_in_markdown(output)
    shown = "alert(1)" in output  # the text is still there, as text
    return Outcome(code == 0 and not found and shown, f"raw HTML: {found[:5]}")


# --------------------------------------------------------------------------- 3. edits


def _edited_file(scratch: Scratch, record_id: str, claim: str) -> Path:
    data = Store(scratch.db).get(record_id).model_dump(mode="json")
    data["claim"]["text"] = claim
    path = scratch.folder / "edit.json"
    path.write_text(json.dumps(data))
    return path


@probe("edit: a file taken at version 1 overwrites another reviewer's version 2")
def stale_file(scratch: Scratch) -> Outcome:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    old = _edited_file(scratch, record_id, "Mine, from version 1.")
    theirs = _edited_file(scratch, record_id, "Theirs, version 2.")
    scratch.claims("review", "edit", record_id, "--file", str(theirs), "--version", "1", "--reviewer", "bo")
    code, output = scratch.claims(
        "review", "edit", record_id, "--file", str(old), "--version", "1", "--reviewer", "ana"
    )
    kept = Store(scratch.db).get(record_id).claim.text == "Theirs, version 2."
    no_version = scratch.claims("review", "edit", record_id, "--file", str(old), "--reviewer", "ana")
    held = one_line_refusal(code, output, 1).held and kept and no_version[0] == 2
    return Outcome(held, f"exit {code}; claim kept: {kept}; without --version: exit {no_version[0]}")


def _editor(scratch: Scratch, body: str) -> str:
    script = scratch.folder / "editor.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


@probe("edit: the editor's text is lost when the save is refused as stale")
def editor_conflict(scratch: Scratch) -> Outcome:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    other = _edited_file(scratch, record_id, "Another reviewer's claim.")
    editor = _editor(
        scratch,
        f"""import json, subprocess, sys
subprocess.run([sys.executable, "-m", "pipeline", "review", "edit", "{record_id}", "--file", {str(other)!r},
                "--version", "1", "--reviewer", "bo"], check=True, capture_output=True)
path = sys.argv[1]
data = json.load(open(path))
data["claim"]["text"] = "What I typed while they saved."
json.dump(data, open(path, "w"))
""",
    )
    code, output = scratch.claims(
        "review", "edit", record_id, "--reviewer", "ana", EDITOR=editor, VISUAL="", PYTHONPATH=str(ROOT)
    )
    kept = re.search(r"your edit is kept in (\S+?):", output)
    typed = kept is not None and "What I typed" in Path(kept.group(1)).read_text()
    return Outcome(code == 1 and typed, f"exit {code}; {output.strip()[:160]}")


@probe("edit: the editor's text is lost when the edit is invalid")
def editor_invalid(scratch: Scratch) -> Outcome:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    editor = _editor(
        scratch,
        """import sys
open(sys.argv[1], "w").write('{"claim": "half typed')
""",
    )
    code, output = scratch.claims("review", "edit", record_id, "--reviewer", "ana", EDITOR=editor, VISUAL="")
    kept = re.search(r"your edit is kept in (\S+?):", output)
    typed = kept is not None and "half typed" in Path(kept.group(1)).read_text()
    return Outcome(code == 2 and typed, f"exit {code}; {output.strip().splitlines()[0][:160]}")


# --------------------------------------------------------------------------- 4. unbounded local inputs


def _bounded(scratch: Scratch, target: str) -> Outcome:
    """Refused before it is read, with a key set (as a user runs it), within 200 MB; the seconds
    are reported (bench/probes.py: about 0.5 s on an idle machine) and here only bound a hang."""
    code, output, seconds, peak = subprocess_claims(scratch, "run", target, OPENAI_API_KEY="sk-test")
    refused = one_line_refusal(code, output, 2)
    why = "not a regular file" in output or "over the 50 MB limit" in output
    return Outcome(
        refused.held and why and seconds < 20 and peak < 200, f"{refused.detail} in {seconds:.1f} s, {peak:.0f} MB"
    )


@probe("input: claims run /dev/zero")
def dev_zero(scratch: Scratch) -> Outcome:
    return _bounded(scratch, "/dev/zero")


@probe("input: claims run on a FIFO named .pdf")
def fifo(scratch: Scratch) -> Outcome:
    path = scratch.folder / "paper.pdf"
    os.mkfifo(path)
    return _bounded(scratch, str(path))


@probe("input: claims run on a 2 GB sparse %PDF file")
def sparse_2gb(scratch: Scratch) -> Outcome:
    path = scratch.folder / "huge.pdf"
    with path.open("wb") as handle:
        handle.write(b"%PDF-1.4\n")
        handle.truncate(2 * 1024**3)
    return _bounded(scratch, str(path))


# --------------------------------------------------------------------------- 5. ids and export


@probe("export: a tampered record id writes outside the export folder")
def tampered_id(scratch: Scratch) -> Outcome:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    scratch.approve(record_id)
    with sqlite3.connect(scratch.db) as db:  # the store changed by hand, its history too
        body = json.loads(db.execute("SELECT body FROM records").fetchone()[0])
        body["record_id"] = "../../escaped"
        db.execute("UPDATE records SET body = ?", (json.dumps(body),))
        db.execute("UPDATE history SET body = ? WHERE body IS NOT NULL", (json.dumps(body),))
    code, output = scratch.claims("export", str(scratch.folder / "public" / "inner"))
    escaped = list(scratch.folder.rglob("escaped*"))
    refused = one_line_refusal(code, output, (1, 2))
    bad = scratch.folder / "bad-id.json"
    bad.write_text(json.dumps(body))
    invalid = scratch.claims("validate", str(bad))[0] == 1
    return Outcome(
        refused.held and not escaped and invalid,
        f"{refused.detail}; written outside: {escaped}; validate says invalid: {invalid} (record {record_id})",
    )


@probe("export: exported files ignore the umask (0600)")
def umask(scratch: Scratch) -> Outcome:
    scratch.approve(scratch.stored("huang-2010-hpylori-iron"))
    previous = os.umask(0o022)
    try:
        scratch.claims("export", str(scratch.folder / "public"))
    finally:
        os.umask(previous)
    modes = {oct(path.stat().st_mode & 0o777) for path in (scratch.folder / "public").glob("*.json")}
    return Outcome(modes == {"0o644"}, f"modes {modes}")


@probe("doi: a DOI with dot segments (10.1234/../../etc/passwd)")
def doi_dots(scratch: Scratch) -> Outcome:
    return one_line_refusal(*scratch.claims("fetch", "10.1234/../../etc/passwd", "-o", str(scratch.folder)), 2)


# --------------------------------------------------------------------------- 7. one line, never exit 70


@probe("cli: a 100,000-character DOI")
def long_doi(scratch: Scratch) -> Outcome:
    code, output = scratch.claims("run", "10.1234/" + "x" * 100_000, OPENAI_API_KEY="sk-test")
    refused = one_line_refusal(code, output, 2)
    return Outcome(refused.held and "more than any DOI has" in output, refused.detail)


def _json_file(scratch: Scratch, content: bytes) -> Path:
    path = scratch.folder / "input.json"
    path.write_bytes(content)
    return path


@probe("cli: binary data to claims validate")
def validate_binary(scratch: Scratch) -> Outcome:
    code, output = scratch.claims("validate", str(_json_file(scratch, bytes(range(256)) * 4)))
    return Outcome(code == 1 and "internal error" not in output and "not UTF-8" in output, output.strip()[:160])


@probe("cli: 100,000-deep JSON to claims validate")
def validate_deep(scratch: Scratch) -> Outcome:
    code, output = scratch.claims("validate", str(_json_file(scratch, b"[" * 100_000 + b"]" * 100_000)))
    return Outcome(code == 1 and "internal error" not in output and "nested too deeply" in output, output.strip()[:160])


@probe("cli: binary and 100,000-deep JSON to review edit --file")
def edit_binary_deep(scratch: Scratch) -> Outcome:
    record_id = scratch.stored("huang-2010-hpylori-iron")
    outcomes = [
        scratch.claims(
            "review",
            "edit",
            record_id,
            "--file",
            str(_json_file(scratch, content)),
            "--version",
            "1",
            "--reviewer",
            "ana",
        )
        for content in (bytes(range(256)) * 4, b"[" * 100_000 + b"]" * 100_000)
    ]
    held = all(code == 2 and "internal error" not in output for code, output in outcomes)
    return Outcome(held, "; ".join(output.strip().splitlines()[0][:80] for _, output in outcomes))


@probe("cli: a batch list line naming a folder")
def batch_folder_line(scratch: Scratch) -> Outcome:
    (scratch.folder / "a-folder").mkdir()
    listing = scratch.folder / "list.txt"
    listing.write_text("a-folder\n")
    code, output = scratch.claims(
        "batch", str(listing), "--report", str(scratch.folder / "report.json"), OPENAI_API_KEY="sk-unused"
    )
    report = json.loads((scratch.folder / "report.json").read_text())
    error = report["papers"][0]["error"] if report.get("papers") else ""
    return Outcome(code == 1 and "is a folder" in error and "internal error" not in output, f"exit {code}; {error}")


def _not_a_folder(scratch: Scratch) -> Path:
    """A place no one can write, root included: inside a regular file."""
    blocker = scratch.folder / "a-file"
    blocker.write_text("x")
    return blocker / "sub"


@probe("cli: an unwritable --record folder, found before any model call")
def unwritable_record(scratch: Scratch) -> Outcome:
    endpoint = ScriptedEndpoint(RandomWithinSchema(1))
    with endpoint:
        code, output = scratch.claims(
            "run",
            str(PAPERS / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf"),
            "--record",
            str(_not_a_folder(scratch) / "rec"),
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=endpoint.base_url,
        )
    calls = len(endpoint.scripts.requests)
    refused = one_line_refusal(code, output, 2)
    return Outcome(refused.held and calls == 0, f"{refused.detail}; model calls made: {calls}")


@probe("cli: an unwritable --report folder, found before any model call")
def unwritable_report(scratch: Scratch) -> Outcome:
    listing = scratch.folder / "list.txt"
    listing.write_text(str(PAPERS / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf") + "\n")
    endpoint = ScriptedEndpoint(RandomWithinSchema(1))
    with endpoint:
        code, output = scratch.claims(
            "batch",
            str(listing),
            "--report",
            str(_not_a_folder(scratch) / "r.json"),
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=endpoint.base_url,
        )
    refused = one_line_refusal(code, output, 2)
    return Outcome(refused.held and not endpoint.scripts.requests, refused.detail)


@probe("cli: an unwritable store folder")
def unwritable_store(scratch: Scratch) -> Outcome:
    return one_line_refusal(*scratch.claims("review", "list", "--db", str(_not_a_folder(scratch) / "c.db")), 1)


@probe("cli: a malformed database page")
def malformed_database(scratch: Scratch) -> Outcome:
    scratch.stored("huang-2010-hpylori-iron")
    with sqlite3.connect(scratch.db) as db:  # everything into the main file, then damage it there
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(scratch.db.read_bytes())
    for offset in range(4096, len(data), 4096):  # every page but the header: garbage
        data[offset : offset + 64] = b"\xff" * 64
    scratch.db.write_bytes(bytes(data))
    return one_line_refusal(*scratch.claims("review", "list"), 1)


@probe("cli: a disk that fills up while a record is exported")
def disk_full(scratch: Scratch) -> Outcome:
    scratch.approve(scratch.stored("huang-2010-hpylori-iron"))
    small = scratch.folder / "small"
    small.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(small)], capture_output=True
        ).returncode
        != 0
    ):
        return Outcome(True, "skipped: mounting a small tmpfs needs root")
    try:
        (small / "filler").write_bytes(b"x" * 4096)
        code, output = scratch.claims("export", str(small), "--markdown")
        return one_line_refusal(code, output, 1)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


@probe("cli: serve --port 99999")
def bad_port(scratch: Scratch) -> Outcome:
    return one_line_refusal(*scratch.claims("serve", "--port", "99999"), 2)


@probe("cli: serve on a port in use")
def port_in_use(scratch: Scratch) -> Outcome:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, output = scratch.claims("serve", "--port", str(port))
    refused = one_line_refusal(code, output, 2)
    return Outcome(refused.held and "review page on" not in output, refused.detail)


@probe("cli: a read-only store cannot be listed")
def read_only_store(scratch: Scratch) -> Outcome:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return Outcome(True, "skipped: needs root to run the command as another user")
    import tempfile

    record_id = scratch.stored("huang-2010-hpylori-iron")
    shared = Path(tempfile.mkdtemp(prefix="claims-read-only-"))  # a folder another user can reach
    try:
        with sqlite3.connect(scratch.db) as source, sqlite3.connect(shared / "claims.db") as copy:
            source.backup(copy)
        sqlite3.connect(shared / "claims.db").execute("PRAGMA journal_mode=DELETE").fetchone()
        shared.chmod(0o755)
        (shared / "claims.db").chmod(0o644)
        code, output, _, _ = subprocess_claims(
            scratch, "review", "list", "--db", str(shared / "claims.db"), user="nobody"
        )
        leftovers = sorted(path.name for path in shared.iterdir())
    finally:
        shutil.rmtree(shared)
    return Outcome(
        code == 0 and record_id in output and leftovers == ["claims.db"], f"exit {code}: {output.strip()[:200]}"
    )


@probe("ingest: 'unreadable text layer (0% of tokens are glyph names ...)'")
def unreadable_message(scratch: Scratch) -> Outcome:
    path = scratch.folder / "digits.pdf"
    path.write_bytes(make_pdf(["12 34 56 78 90 " * 40] * 2))
    code, output = scratch.claims("run", str(path), OPENAI_API_KEY="sk-test")
    refused = one_line_refusal(code, output, 2)
    return Outcome(refused.held and "unreadable text layer" in output and "(0% of tokens" not in output, refused.detail)


# --------------------------------------------------------------------------- 8. not a study


@probe("ingest: 117 pages of lecture notes are drafted as a study")
def lecture_notes(scratch: Scratch) -> Outcome:
    endpoint = ScriptedEndpoint(RandomWithinSchema(1))
    with endpoint:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": endpoint.base_url}
        code, output = scratch.claims("run", str(LECTURE_NOTES), **env)
        refused = one_line_refusal(code, output, 2)
        calls = len(endpoint.scripts.requests)
        forced, _ = scratch.claims("run", str(LECTURE_NOTES), "--not-a-study-ok", "--model", "random", **env)
    held = refused.held and "does not look like a research paper" in output and calls == 0 and forced == 0
    return Outcome(held, f"{refused.detail}; model calls: {calls}; with --not-a-study-ok: exit {forced}")


# --------------------------------------------------------------------------- 9. the team server, second pass

_PASSWORD = "correct horse battery"


def _team(scratch: Scratch) -> tuple[Store, str]:
    """A login store with a draft, an admin (root), a reviewer (alice) and a curator (bob)."""
    record_id = scratch.stored("huang-2010-hpylori-iron")
    store = Store(scratch.db)
    for name, role in (("root", "admin"), ("alice", "reviewer"), ("bob", "curator")):
        store.add_account(name, role, hash_password(_PASSWORD))
    return store, record_id


def _logged_in(store: Store, name: str, **app_options: object) -> TestClient:
    client = TestClient(
        create_app(store, **app_options), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )  # type: ignore[arg-type]
    client.post("/login", data={"csrf": _token(client.get("/login").text), "name": name, "password": _PASSWORD})
    return client


def wait_until_serving(base: str, seconds: float = 10.0) -> None:
    """Until a review server started in another process answers its login page (or time is up)."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/login", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)


@probe("team: disabling every account turns the review page open")
def all_disabled_open(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    for name in ("alice", "bob"):
        scratch.as_admin("user", "disable", name)
    scratch.as_admin("user", "disable", "root", "--force")
    client = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    page = client.get("/")
    token = _token(client.get("/login").text)
    post = client.post(
        f"/records/{record_id}/approve", data={"csrf": token, "version": "1", "reviewer": "root", "override": "x"}
    )
    held = page.status_code == 303 and post.status_code == 401 and store.version_of(record_id) == 1
    return Outcome(held, f"GET / {page.status_code}, anonymous approve {post.status_code}")


@probe("team: the CLI takes --reviewer anybody-at-all on a login store")
def cli_any_name(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    code, output = scratch.claims("review", "approve", record_id, "--reviewer", "anybody-at-all")
    refused = one_line_refusal(code, output, 1)
    return Outcome(refused.held and store.version_of(record_id) == 1, refused.detail)


@probe("team: a decision filed under another account's name from the CLI")
def cli_other_name(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    code, output = scratch.claims("review", "reopen", record_id, "--reviewer", "alice")  # no credentials at all
    refused = one_line_refusal(code, output, 1)
    return Outcome(refused.held and "credentials" in output and store.version_of(record_id) == 1, refused.detail)


@probe("team: the CLI manages accounts without an admin's credentials")
def cli_manages_without_admin(scratch: Scratch) -> Outcome:
    store, _ = _team(scratch)
    code, output = scratch.claims(
        "user", "role", "alice", "admin", "--admin", "alice", "--password-stdin", stdin=_PASSWORD + "\n"
    )
    refused = one_line_refusal(code, output, 1)
    unproven = scratch.claims("user", "disable", "root", "--force")[0]
    held = refused.held and "may not manage users" in output and unproven != 0
    return Outcome(
        held and store.account("alice").role == "reviewer" and not store.account("root").disabled, refused.detail
    )  # type: ignore[union-attr]


@probe("team: the old cookie still answers after logout")
def cookie_after_logout(scratch: Scratch) -> Outcome:
    store, _ = _team(scratch)
    client = _logged_in(store, "alice")
    cookie = client.cookies.get("claims_session") or ""
    client.post("/logout", data={"csrf": _token(client.get("/").text)})
    replay = TestClient(create_app(store), base_url=SITE, follow_redirects=False, cookies={"claims_session": cookie})
    status = replay.get("/").status_code
    return Outcome(bool(cookie) and status == 303, f"old cookie after logout: HTTP {status}")


@probe("team: re-enabling an account revives its old sessions")
def reenable_revives(scratch: Scratch) -> Outcome:
    store, _ = _team(scratch)
    client = _logged_in(store, "alice")
    cookie = client.cookies.get("claims_session") or ""
    scratch.as_admin("user", "disable", "alice")
    scratch.as_admin("user", "enable", "alice")
    replay = TestClient(create_app(store), base_url=SITE, follow_redirects=False, cookies={"claims_session": cookie})
    status = replay.get("/").status_code
    return Outcome(bool(cookie) and status == 303, f"old cookie after disable and enable: HTTP {status}")


@probe("team: an editor approves their own edit with --override (four eyes on)")
def own_edit_override(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    scratch.as_admin("db", "settings", "--require-second-reviewer", "on")
    record = store.get(record_id)
    record.claim.text = record.claim.text.rstrip(".") + " in adults."
    decisions.edit(store, record_id, 1, record.model_dump_json(), "alice", "wording")
    result = CliRunner().invoke(
        click_command(),
        ["review", "approve", record_id, "--reviewer", "alice", "--override", "fine", "--password-stdin"],
        env=scratch.env(),
        input=_PASSWORD + "\n",
    )
    refused = one_line_refusal(result.exit_code, result.output, 1)
    return Outcome(refused.held and store.get(record_id).status.value == "draft", refused.detail)


@probe("team: a curator approves the draft they ran (four eyes on)")
def curator_own_run(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    scratch.as_admin("db", "settings", "--require-second-reviewer", "on")
    with store._write() as conn:
        from pipeline.team.store import history

        conn.execute(history.update().where(history.c.record_id == record_id).values(note=drafted_note("bob")))
    client = _logged_in(store, "bob")
    token = _token(client.get(f"/records/{record_id}").text)
    answer = client.post(f"/records/{record_id}/approve", data={"csrf": token, "version": "1", "override": "x"})
    return Outcome(answer.status_code == 400 and store.version_of(record_id) == 1, f"HTTP {answer.status_code}")


@probe("team: X-Forwarded-For from loopback chooses the address the login limit counts")
def forwarded_spray(scratch: Scratch) -> Outcome:
    _team(scratch)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, **scratch.env(), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base)
        statuses = []
        with httpx.Client(base_url=base, headers={"Origin": base}) as client:
            token = _token(client.get("/login").text)
            for n in range(7):
                answer = client.post(
                    "/login",
                    data={"csrf": token, "name": f"guess{n}", "password": "wrong wrong wrong"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                statuses.append(answer.status_code)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return Outcome(statuses[-1] == 429, f"statuses {statuses}")


@probe("team: the login limit is forgotten on a restart")
def lockout_restart(scratch: Scratch) -> Outcome:
    store, _ = _team(scratch)
    client = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    for _ in range(5):
        client.post(
            "/login", data={"csrf": _token(client.get("/login").text), "name": "bob", "password": "wrong wrong"}
        )
    restarted = TestClient(
        create_app(Store(scratch.db)), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    answer = restarted.post(
        "/login", data={"csrf": _token(restarted.get("/login").text), "name": "bob", "password": _PASSWORD}
    )
    return Outcome(answer.status_code == 429, f"after a restart: HTTP {answer.status_code}")


@probe("team: a new SQLite store is readable by other users")
def store_mode(scratch: Scratch) -> Outcome:
    old = os.umask(0o022)
    try:
        Store(scratch.folder / "fresh.db").add_account("root", "admin", hash_password(_PASSWORD))
    finally:
        os.umask(old)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in scratch.folder.glob("fresh.db*")}
    return Outcome(all(mode == "0o600" for mode in modes.values()), f"modes {modes}")


@probe("team: markup in an account name or a reason crashes the CLI")
def markup_crash(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    store.add_account("[/bold]", "reviewer", hash_password(_PASSWORD))
    decisions.reject(store, record_id, 1, "[/bold]", "a [/red] quote")
    codes = [
        scratch.claims(*command)[0]
        for command in (
            ["user", "list"],
            ["review", "history", record_id],
            ["review", "list"],
            ["review", "show", record_id],
        )
    ]
    return Outcome(codes == [0, 0, 0, 0], f"exit codes {codes}")


@probe("team: /?page=99999999999999999999 or a NUL byte is an HTTP 500")
def server_errors(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    client = _logged_in(store, "alice")
    statuses = [
        client.get(path).status_code
        for path in ("/?page=99999999999999999999", "/?q=%00", f"/records/{record_id}%00", "/papers/%00/pages/1.png")
    ]
    login = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    statuses.append(
        login.post(
            "/login", data={"csrf": _token(login.get("/login").text), "name": "a\x00", "password": "x"}
        ).status_code
    )
    return Outcome(500 not in statuses and statuses[0] == 200, f"statuses {statuses}")


@probe("team: the ?done= message is taken from the URL")
def done_message(scratch: Scratch) -> Outcome:
    store, record_id = _team(scratch)
    client = _logged_in(store, "alice")
    page = client.get(f"/records/{record_id}?done=Call+555-0100+to+unlock")
    return Outcome("555-0100" not in page.text, f"HTTP {page.status_code}")


def run_all(root: Path, names: list[str] | None = None) -> dict[str, Outcome]:
    results = {}
    for index, (name, function) in enumerate(PROBES.items()):
        if names and name not in names:
            continue
        folder = root / f"probe-{index:02d}"
        folder.mkdir(parents=True)
        try:
            results[name] = function(Scratch(folder))
        except Exception as exc:
            results[name] = Outcome(False, f"the probe crashed: {type(exc).__name__}: {exc}")
    return results


def main(quick: bool = False) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        results = run_all(Path(scratch), list(PROBES)[:5] if quick else None)
    for name, outcome in results.items():
        print(f"{'held' if outcome.held else 'LOST'}  {name}: {outcome.detail}")
    lost = sum(1 for outcome in results.values() if not outcome.held)
    print(f"tried {len(results)}, held {len(results) - lost}, lost {lost}")
