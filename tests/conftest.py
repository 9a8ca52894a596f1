"""Shared fixtures. Every test runs with a clean environment: no key, no base URL, a store in a
temporary folder, so no test can read a developer's setup or reach a real endpoint."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scripted_endpoint import ScriptedEndpoint, Scripts

from pipeline.cli import click_command
from pipeline.core.models import ClaimRecord
from pipeline.core.settings import VARIABLES, RunSettings
from pipeline.llm.base import ChatRequest
from pipeline.workflow.replay import replay

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
PAPERS = FIXTURES / "papers"
BAD = FIXTURES / "bad"
RUNS = FIXTURES / "runs"
SCRIPTS = FIXTURES / "scripts"
HTTP = FIXTURES / "http"

HPYLORI_PDF = PAPERS / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf"
NITRATE_PDF = PAPERS / "nutres_dietary_nitrate_crossover_rct_2016.pdf"
DVT_PDF = PAPERS / "bmc_trauma_dvt_prophylaxis_review_2010.pdf"


CHROMIUM = os.environ.get("CLAIMS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for root in a container with no network but loopback (see the workplace's notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's, driven by Playwright) for a test module: starting one
    costs 1.3 s of CPU; each test opens its own page, so its own cookies. Skipped, saying how to
    install them, when Playwright or a Chromium is missing (.ci/run installs both)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    if not CHROMIUM:
        pytest.skip("no Chromium: apt-get install chromium (or set CLAIMS_CHROMIUM to a Chromium binary)")
    with sync_api.sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: no error where xdist is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml): one test process more than the cores. Many tests wait on
    something else (batch processes, Chromium, PostgreSQL, a lease running out), and the extra
    process fills those waits: on 2 cores the suite took 97 s this way, 104-106 s with 2."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (*VARIABLES, "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "VISUAL", "EDITOR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    db = tmp_path / "claims.db"
    monkeypatch.setenv("CLAIMS_DB", str(db))
    # Every login hashes a password, and the suite logs in hundreds of times: OWASP's minimum
    # costs 25 ms a hash here against 125 ms. The default profile's cost under a flood of logins
    # is bench/login_flood.py's, and a test below checks each profile's parameters.
    monkeypatch.setenv("CLAIMS_PASSWORD_HASHING", "owasp-minimum")
    return db


# The store's tests run on SQLite and on PostgreSQL: .ci/run starts a throw-away server and names
# it here. Without one they skip, except under CI, where a missing server is a failure.
POSTGRES = os.environ.get("CLAIMS_TEST_POSTGRES", "")


@contextlib.contextmanager
def postgres_store() -> Iterator[str]:
    """A store of its own on the test server: a fresh schema, dropped afterwards."""
    if not POSTGRES:
        reason = "no PostgreSQL server: .ci/run starts one, or set CLAIMS_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the PostgreSQL tests to run: {reason}")
        pytest.skip(reason)
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The record store (CLAIMS_DB), once a SQLite file and once a PostgreSQL database."""
    if request.param == "sqlite":
        yield str(clean_environment)
        return
    with postgres_store() as url:
        monkeypatch.setenv("CLAIMS_DB", url)
        yield url


# The command a user runs as `claims`, with its help as `claims --help` shows it.
claims = click_command()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@functools.cache
def _replayed_json(name: str) -> str:
    outcome = replay(RUNS / name)
    assert outcome.replayed is not None and outcome.diff == [], f"{name} no longer replays identically"
    return outcome.replayed.model_dump_json()


def replayed(name: str) -> ClaimRecord:
    """A bundled run replayed now: the pipeline and every check run again on the recorded answers
    (the record it gives must equal the recorded one). A fresh copy each call; replayed once a session."""
    return ClaimRecord.model_validate_json(_replayed_json(name))


def load_scripts(*names: str) -> Scripts:
    paths = [SCRIPTS / f"{name}.json" for name in names] if names else sorted(SCRIPTS.glob("*.json"))
    return Scripts.from_files(paths)


def chat_request(text: str, stage: str = "answer", schema: dict[str, Any] | None = None) -> ChatRequest:
    """One stage's request holding one user message, as the model seam's tests send it."""
    return ChatRequest(
        stage=stage,
        model="m",
        messages=[{"role": "user", "content": text}],
        output_schema={"name": stage, "schema": schema or {"type": "object"}},
        params=RunSettings().params(),
    )


@pytest.fixture
def endpoint():
    """The scripted endpoint with every bundled script, on a free loopback port."""
    with ScriptedEndpoint(load_scripts()) as server:
        yield server


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch, endpoint: ScriptedEndpoint) -> ScriptedEndpoint:
    """Environment for `claims run` against the scripted endpoint, as a user would set it."""
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-never-recorded-0123456789")
    return endpoint


@pytest.fixture
def recording_copy(tmp_path: Path):
    """A copy of a bundled recording, with its PDF, that a test may change."""

    def copy(name: str) -> Path:
        target = tmp_path / "fixtures"
        shutil.copytree(RUNS / name, target / "runs" / name)
        shutil.copytree(PAPERS, target / "papers")
        return target / "runs" / name

    return copy


@pytest.fixture
def cassette(monkeypatch: pytest.MonkeyPatch):
    """Point the CLI's HTTP at a recorded cassette, with a contact address, as a curator would set it."""

    def use(name: str, mailto: bool = True) -> Path:
        path = HTTP / f"{name}.json"
        monkeypatch.setenv("CLAIMS_HTTP_CASSETTE", str(path))
        if mailto:
            monkeypatch.setenv("CLAIMS_MAILTO", "curator@example.org")
        return path

    return use
