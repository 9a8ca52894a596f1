"""Batches: report and exit codes, the cache, resume after kill -9, injected faults, rate limits,
and the Batch API route, all against the scripted endpoint on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BAD, DVT_PDF, HPYLORI_PDF, HTTP, PAPERS, ROOT, chat_request, claims, load_scripts
from pdfmaker import make_bomb_pdf
from scripted_endpoint import Faults, ScriptedEndpoint, Scripts

from pipeline.cli.batch import _summary_table
from pipeline.core.errors import InputError
from pipeline.core.memo import computed_once
from pipeline.core.resources import data_dir
from pipeline.llm.base import request_priority
from pipeline.llm.openai import OpenAIChatModel
from pipeline.llm.ratelimit import RateLimiter, RequestSlots
from pipeline.team.store import Store
from pipeline.workflow.batch import read_inputs
from pipeline.workflow.paper import PaperResult, stage_priority
from pipeline.workflow.pool import ParsePool

INJECTED = PAPERS / "injected_dvt_review.pdf"


def write_list(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "papers.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def batch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def use(endpoint: ScriptedEndpoint) -> Path:
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch")
        monkeypatch.setenv("CLAIMS_HTTP_CASSETTE", str(HTTP / "nitrate_found.json"))
        monkeypatch.setenv("CLAIMS_MAILTO", "curator@example.org")
        monkeypatch.setenv("CLAIMS_BATCH_POLL_SECONDS", "0.05")
        monkeypatch.chdir(tmp_path)
        return tmp_path / "batch-report.json"

    return use


def stage_names(endpoint: ScriptedEndpoint) -> list[str]:
    return [r["response_format"]["json_schema"]["name"] for r in endpoint.scripts.requests]


def test_read_inputs(tmp_path: Path) -> None:
    listing = write_list(
        tmp_path, "# a comment", "", "doi:10.1136/pgmj.2009.089987  # trailing comment", "papers/x.pdf"
    )
    assert read_inputs(listing) == ["doi:10.1136/pgmj.2009.089987", str(tmp_path / "papers" / "x.pdf")]
    assert read_inputs(PAPERS) == [str(p) for p in sorted(PAPERS.glob("*.pdf"))]
    with pytest.raises(InputError, match="no DOI or PDF path"):
        read_inputs(write_list(tmp_path, "# nothing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no PDF"):
        read_inputs(empty)


def test_batch_reports_every_paper_and_goes_on_after_failures(
    runner: CliRunner, batch_env, clean_environment, tmp_path: Path
) -> None:
    with ScriptedEndpoint(load_scripts()) as endpoint:
        report_path = batch_env(endpoint)
        listing = write_list(
            tmp_path,
            str(HPYLORI_PDF),
            "10.1016/j.nutres.2016.11.004",
            str(BAD / "scanned_image_only_no_text.pdf"),
            str(tmp_path / "missing.pdf"),
            "10.123",
        )
        result = runner.invoke(claims, ["batch", str(listing), "--model", "gpt-4o-mini", "-j", "3"])
    assert result.exit_code == 1, result.output
    report = json.loads(report_path.read_text())
    by_source = {p["source"]: p for p in report["papers"]}
    assert report["inputs"] == 5 and report["succeeded"] == 2 and report["failed"] == 3
    done = by_source[str(HPYLORI_PDF)]
    assert done["status"] == "done" and done["calls"] == 3 and done["prompt_tokens"] > 0 and done["cost"] > 0
    assert set(done["seconds"]) >= {"ingest", "extract", "draft", "grade", "check", "total"}
    assert "run OCR first" in by_source[str(BAD / "scanned_image_only_no_text.pdf")]["error"]
    assert "no such file" in by_source[str(tmp_path / "missing.pdf")]["error"]
    assert "is not a DOI" in by_source["10.123"]["error"]
    assert report["cost_usd"] > 0 and report["model_calls"] == 6
    store = Store(clean_environment)
    assert len(store.summaries()) == 2
    assert "2 succeeded, 0 already done, 3 failed" in result.output


def test_what_the_endpoint_refused_is_said_in_the_output_the_report_and_each_recording(
    runner: CliRunner, batch_env, clean_environment, tmp_path: Path
) -> None:
    """A server that takes neither json_schema nor temperature 0, met by several papers at once."""
    with ScriptedEndpoint(load_scripts()) as endpoint:
        endpoint.traits.refuse_json_schema = True
        endpoint.traits.refused_params = ("temperature",)
        report_path = batch_env(endpoint)
        listing = write_list(tmp_path, str(HPYLORI_PDF), str(DVT_PDF), str(INJECTED))
        result = runner.invoke(claims, ["batch", str(listing), "-j", "3", "--record", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["succeeded"] == 3
    said = report["endpoint_adaptations"]  # learnt once each, however many papers were refused
    assert sorted(line.split(";")[0].split(" (")[0] for line in said) == [
        "the endpoint refused response_format json_schema",
        "the endpoint refused temperature=0.0",
    ]
    for line in said:
        assert f"note: {line}" in " ".join(result.output.split())
    recordings = list((tmp_path / "rec").glob("*/recording.json"))
    assert len(recordings) == 3
    for recording in recordings:
        assert "refused temperature=0.0" in json.loads(recording.read_text())["made_against"]


def test_unchanged_rerun_makes_no_model_call_and_an_edited_prompt_reruns_only_its_stage(
    runner: CliRunner, batch_env, clean_environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = write_list(tmp_path, str(HPYLORI_PDF), str(DVT_PDF))
    with ScriptedEndpoint(load_scripts()) as endpoint:
        batch_env(endpoint)
        assert runner.invoke(claims, ["batch", str(listing)]).exit_code == 0
        first = len(endpoint.scripts.requests)
        again = runner.invoke(claims, ["batch", str(listing)])
        assert again.exit_code == 0 and len(endpoint.scripts.requests) == first == 6
        assert "0 succeeded, 2 already done, 0 failed; 0 model calls" in again.output
        prompts = tmp_path / "prompts"
        shutil.copytree(data_dir("prompts"), prompts)
        grade = prompts / "grade.md"
        grade.write_text(grade.read_text().replace("two to four ideal studies", "two to five ideal studies"))
        monkeypatch.setenv("CLAIMS_PROMPTS", str(prompts))
        edited = runner.invoke(claims, ["batch", str(listing)])
        assert edited.exit_code == 0, edited.output
        assert stage_names(endpoint)[first:] == ["grade", "grade"]
        assert "2 succeeded" in edited.output and "(4 answers from the cache)" in edited.output
    assert len(Store(clean_environment).summaries()) == 4


def test_failures_are_never_cached(runner: CliRunner, batch_env, tmp_path: Path) -> None:
    scripts = load_scripts("huang-2010-hpylori-iron")
    scripts.scripts[0]["answers"]["draft"] = [{"$raw": "{ not json"}]
    listing = write_list(tmp_path, str(HPYLORI_PDF))
    with ScriptedEndpoint(scripts) as endpoint:
        batch_env(endpoint)
        assert runner.invoke(claims, ["batch", str(listing)]).exit_code == 1
        assert stage_names(endpoint) == ["extract", "draft", "draft"]
        assert runner.invoke(claims, ["batch", str(listing)]).exit_code == 1
        assert stage_names(endpoint)[3:] == ["draft", "draft"]  # extract came from the cache, the failure did not


def test_fail_fast_stops_starting_papers(runner: CliRunner, batch_env, tmp_path: Path) -> None:
    others = [str(p) for p in (HPYLORI_PDF, DVT_PDF, INJECTED)] * 2
    listing = write_list(tmp_path, str(BAD / "blank_single_page.pdf"), *others)
    with ScriptedEndpoint(load_scripts()) as endpoint:
        report_path = batch_env(endpoint)
        result = runner.invoke(claims, ["batch", str(listing), "-j", "1", "--fail-fast"])
    assert result.exit_code == 1
    statuses = [p["status"] for p in json.loads(report_path.read_text())["papers"]]
    # Papers already open finish; none is started after the failure.
    assert statuses[0] == "failed" and statuses[-1] == "not_started"


def test_an_endpoint_that_refuses_the_model_stops_the_batch_at_once(
    runner: CliRunner, batch_env, tmp_path: Path
) -> None:
    missing = {"$status": 404, "$error": "The model `no-such-model` does not exist."}
    scripts = Scripts([{"name": "refuses", "model": "no-such-model", "answers": {"extract": [missing]}}])
    listing = write_list(tmp_path, *[str(p) for p in (HPYLORI_PDF, DVT_PDF, INJECTED)] * 3)
    with ScriptedEndpoint(scripts) as endpoint:
        report_path = batch_env(endpoint)
        result = runner.invoke(claims, ["batch", str(listing), "-j", "1", "--model", "no-such-model"])
        requests = len(endpoint.scripts.requests)
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: the endpoint does not know model 'no-such-model'") and "does not exist" in last
    assert "the batch stopped (6 papers not started): run the same command again" in last
    report = json.loads(report_path.read_text())
    assert (report["failed"], report["not_started"]) == (3, 6)
    assert requests == 3  # the papers already open when the first refusal came; none after
    assert report["papers"][-1]["error"].startswith("not started: the endpoint does not know model")
    assert report["papers"][-1]["cost"] == 0.0  # made no call


def test_injected_faults_never_lose_a_paper(
    runner: CliRunner, batch_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAIMS_TIMEOUT", "1")
    faults = Faults(rate=0.3, hang_seconds=1.5, retry_after="0", seed=3)
    listing = write_list(tmp_path, str(HPYLORI_PDF), str(DVT_PDF), str(INJECTED), "10.1016/j.nutres.2016.11.004")
    with ScriptedEndpoint(load_scripts(), faults=faults) as endpoint:
        report_path = batch_env(endpoint)
        result = runner.invoke(claims, ["batch", str(listing), "-j", "4"])
    report = json.loads(report_path.read_text())
    assert report["inputs"] == 4 and report["succeeded"] + report["failed"] == 4
    assert sum(faults.counts.values()) > 0
    for paper in report["papers"]:
        assert paper["status"] == "done" or paper["error"], paper
    assert result.exit_code == (1 if report["failed"] else 0)


def test_batch_api_route(runner: CliRunner, batch_env, clean_environment, tmp_path: Path) -> None:
    listing = write_list(tmp_path, str(HPYLORI_PDF), str(DVT_PDF))
    with ScriptedEndpoint(load_scripts(), batch_polls=2) as endpoint:
        report_path = batch_env(endpoint)
        result = runner.invoke(claims, ["batch", str(listing), "--via", "batch-api", "--model", "gpt-4o-mini"])
        assert result.exit_code == 0, result.output
        assert len(endpoint.batches.batches) == 3  # extract, draft and grade, each one batch for both papers
    report = json.loads(report_path.read_text())
    assert report["price_discount"] == 0.5 and report["succeeded"] == 2
    assert len(Store(clean_environment).summaries()) == 2


def test_batch_api_requests_refused_a_parameter_go_again_without_it(
    runner: CliRunner, batch_env, clean_environment, tmp_path: Path
) -> None:
    """OpenAI's reasoning models refuse temperature 0 on the Batch API as on the chat route: each
    refused request goes again, in the next batch, without it; no paper fails."""
    listing = write_list(tmp_path, str(HPYLORI_PDF), str(DVT_PDF))
    with ScriptedEndpoint(load_scripts(), batch_polls=1) as endpoint:
        endpoint.traits.refused_params = ("temperature",)
        report_path = batch_env(endpoint)
        result = runner.invoke(claims, ["batch", str(listing), "--via", "batch-api", "--model", "o4-mini"])
        assert result.exit_code == 0, result.output
        sent = [
            json.loads(line)["body"]
            for batch in endpoint.batches.batches.values()
            for line in endpoint.batches.files[batch["input_file_id"]].decode().splitlines()
        ]
    assert len(endpoint.batches.batches) == 4  # extract refused, extract again, then draft and grade
    assert ["temperature" in body for body in sent] == [True, True] + [False] * 6
    report = json.loads(report_path.read_text())
    assert report["succeeded"] == 2
    assert [line.split(" (")[0] for line in report["endpoint_adaptations"]] == ["the endpoint refused temperature=0.0"]


def test_batch_api_resumes_a_batch_sent_before_a_crash(tmp_path: Path) -> None:
    import openai

    from pipeline.llm.batch_api import BatchApiChatModel
    from pipeline.llm.openai import chat_body

    with ScriptedEndpoint(load_scripts()) as endpoint:
        client = openai.OpenAI(api_key="x", base_url=endpoint.base_url)
        request = chat_request("Bismuth based triple therapy has a better response", "extract")
        line = json.dumps(
            {
                "custom_id": request.fingerprint(),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(request),
            }
        )
        uploaded = client.files.create(file=("x.jsonl", line.encode()), purpose="batch")
        sent = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        state = tmp_path / "batches.db"
        import sqlite3

        with sqlite3.connect(state) as db:  # what the interrupted run had saved
            db.execute("CREATE TABLE sent (fingerprint TEXT PRIMARY KEY, batch_id TEXT NOT NULL)")
            db.execute("INSERT INTO sent VALUES (?, ?)", (request.fingerprint(), sent.id))
        resumed = BatchApiChatModel(client, state, expected_waiting=1, poll_seconds=0.01)
        answer = resumed.complete(request)
        assert json.loads(answer.content)["bibliography"]["year"] == 2010
        assert len(endpoint.batches.batches) == 1  # nothing was sent twice


def test_a_pdf_that_kills_its_parse_process_fails_alone(tmp_path: Path) -> None:
    """A decompression bomb overruns the parse processes' memory cap: its paper fails with one
    line, and the papers queued behind it in the dead process's pool are read again, not failed."""
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(make_bomb_pdf(50 << 20))  # 50 MB of drawing instructions: about 700 MB to read
    with ParsePool(workers=1, memory_bytes=384 << 20) as pool:
        assert pool.parse(HPYLORI_PDF).pages  # the first, in this process while the other starts
        with ThreadPoolExecutor(3) as threads:
            blown = threads.submit(_parsed, pool, bomb)
            time.sleep(0.3)  # the bomb takes about a second to reach the cap; these queue behind it
            queued = [threads.submit(_parsed, pool, pdf) for pdf in (DVT_PDF, INJECTED)]
            outcomes = [blown.result(), *(q.result() for q in queued)]
    assert outcomes == [
        "bomb.pdf: reading it crashed the PDF reader or took more than 384 MB of memory (a damaged or hostile "
        "file): get another copy of the paper",
        "parsed",
        "parsed",
    ]


def _parsed(pool: ParsePool, pdf: Path) -> str:
    try:
        return "parsed" if pool.parse(pdf).pages else "no pages"
    except InputError as exc:
        return str(exc)


def test_rate_limiter_waits_for_the_window() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rpm=2, tpm=None, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire(10)
    assert slept == [60.0]
    tokens = RateLimiter(rpm=None, tpm=100, clock=lambda: now[0], sleep=sleep)
    tokens.acquire(80)
    tokens.acquire(80)
    assert slept[-1] == 60.0


def test_requests_in_flight_keep_to_j_and_a_freed_slot_goes_to_the_longest_chain_left() -> None:
    """`-j 2`: never more than two requests at the server. The requests waiting for a slot are
    served extract before draft before grade (the most stages left first), and among the same
    stage the paper the batch opened first, whatever order they started waiting in."""
    scripts = Scripts([{"name": "t", "match": "PAPER", "answers": {"answer": [{"ok": True}] * 7}}])
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    with ScriptedEndpoint(scripts, latency=0.8) as endpoint:
        model = OpenAIChatModel("sk-test", endpoint.base_url, timeout=10, max_in_flight=2)
        model.warm()

        def paper(stage: str, place: int) -> None:
            request_priority.set(stage_priority(stage, place))
            model.complete(chat_request(f"PAPER {place} {stage}", schema=schema))

        waiting = [
            ("extract", 6),
            ("extract", 5),
            ("grade", 0),
            ("draft", 1),
            ("extract", 3),
            ("extract", 2),
            ("grade", 4),
        ]
        threads = [threading.Thread(target=paper, args=pair) for pair in waiting]
        for number, thread in enumerate(threads):
            thread.start()
            time.sleep(0.2 if number == 1 else 0.02)  # the first two take the slots; the others queue in this order
        for thread in threads:
            thread.join()
    served = [request["messages"][-1]["content"] for request in scripts.requests]
    # two slots: the requests of one round reach the server together, in either order
    rounds = [set(served[at : at + 2]) for at in range(0, len(served), 2)]
    assert rounds[1:] == [{"PAPER 2 extract", "PAPER 3 extract"}, {"PAPER 1 draft", "PAPER 0 grade"}, {"PAPER 4 grade"}]
    arrivals = sorted(scripts.timeline)
    overlapping = max(sum(1 for start, end in arrivals if start <= at < end) for at, _ in arrivals)
    assert overlapping == 2


def test_a_request_cancelled_while_waiting_does_not_keep_a_slot() -> None:
    async def scenario() -> list[str]:
        slots, order = RequestSlots(1), []

        async def use(name: str, priority: int, hold: float) -> None:
            async with slots.slot(priority):
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(use("first", 5, 0.05))
        await asyncio.sleep(0.01)
        cancelled = asyncio.create_task(use("cancelled", 0, 0))
        later = asyncio.create_task(use("later", 9, 0))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.gather(first, later, return_exceptions=True)
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == ["first", "later"]


def test_a_value_many_threads_ask_for_at_once_is_computed_once() -> None:
    made: list[int] = []

    @computed_once
    def slow(key: str) -> str:
        made.append(1)
        time.sleep(0.05)
        return key.upper()

    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(slow("schema"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["SCHEMA"] * 8
    assert len(made) == 1


def test_a_long_batch_whose_papers_are_all_stored_prints_no_table_of_them(capsys: pytest.CaptureFixture[str]) -> None:
    results = [PaperResult(source=f"p{n}.pdf", status="already_done", record_id=f"r{n}") for n in range(51)]
    totals = {"cost_usd": 0.0, "succeeded": 0, "already_done": 51, "failed": 0, "not_started": 0}
    _summary_table(
        results,
        {**totals, "model_calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
        Path("r.json"),
    )
    shown = capsys.readouterr().out
    assert "51 papers, every one stored (each is in r.json)" in shown
    assert "p0.pdf" not in shown and "batch summary" not in shown


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has name=value (Linux /proc; other processes are skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{name}={value}".encode() in environ:
                found.append(int(entry.name))
    return found


def test_kill_9_then_resume_stores_every_record_once(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from batch import make_inputs  # the benchmark's distinct copies of the bundled papers

    papers = make_inputs(tmp_path, 6)
    listing = write_list(tmp_path, *map(str, papers))
    db = tmp_path / "store.db"
    env = {
        **os.environ,
        "CLAIMS_DB": str(db),
        "CLAIMS_CACHE": str(tmp_path / "cache"),
        "OPENAI_API_KEY": "sk-test",
        "PYTHONPATH": str(ROOT),
    }
    with ScriptedEndpoint(load_scripts(), latency=0.3) as endpoint:
        env["OPENAI_BASE_URL"] = endpoint.base_url
        command = [
            sys.executable,
            "-m",
            "pipeline",
            "batch",
            str(listing),
            "-j",
            "1",
            "--report",
            str(tmp_path / "r.json"),
        ]
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # a paper stored and its progress line written (a kill between the two left no line)
            progress_log = tmp_path / "r.json.progress.jsonl"
            if db.exists() and Store(db).summaries() and progress_log.exists() and progress_log.read_text().strip():
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # other papers are half-way through their stages
        process.wait()
        deadline = time.monotonic() + 5
        while processes_with_env("CLAIMS_DB", str(db)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with_env("CLAIMS_DB", str(db)) == []  # the killed batch's parse processes are gone
        stored_before = len(Store(db).summaries())
        assert 1 <= stored_before < len(papers)
        # what the killed batch had finished, one JSON line a paper, each a stored record
        progress = [json.loads(line) for line in (tmp_path / "r.json.progress.jsonl").read_text().splitlines()]
        assert progress and {p["record_id"] for p in progress} <= {s.record_id for s in Store(db).summaries()}
        endpoint.traits.latency = 0.0  # the latency kept papers in flight at the kill; the resume needs none
        resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    store = Store(db)
    summaries = store.summaries()
    assert len(summaries) == len(papers)
    for summary in summaries:
        store.get(summary.record_id)  # complete and valid (the store validates against the schema on read)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["already_done"] == stored_before and report["succeeded"] == len(papers) - stored_before
    assert not (tmp_path / "r.json.progress.jsonl").exists()  # the finished report holds it all


# --------------------------------------------------------------------------- issue 15: workers sharing a batch


def _batch_process(listing: Path, env: dict[str, str], report: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "pipeline", "batch", str(listing), "-j", "2", "--report", str(report)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_three_batches_over_the_same_papers_pay_for_each_paper_once(tmp_path: Path, db: str) -> None:
    """Three workers at once on a shared store: each paper is drafted, and paid for, by one of
    them; every call the three made belongs to a paper it stored. (bench/workers.py compares the
    calls with one batch's alone.)"""
    sys.path.insert(0, str(ROOT / "bench"))
    from batch import make_inputs  # the benchmark's distinct copies of the bundled papers

    listing = write_list(tmp_path, *map(str, make_inputs(tmp_path, 8)))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(ROOT), "CLAIMS_DB": db}
    with ScriptedEndpoint(load_scripts(), latency=0.05) as endpoint:
        env["OPENAI_BASE_URL"] = endpoint.base_url
        # three at once on the shared store, each with a cache of its own (as on three machines)
        workers = [
            _batch_process(listing, {**env, "CLAIMS_CACHE": str(tmp_path / f"cache-{n}")}, tmp_path / f"w{n}.json")
            for n in range(3)
        ]
        for worker in workers:
            assert worker.wait(timeout=180) == 0, worker.stdout.read() if worker.stdout else ""
        later = _batch_process(listing, {**env, "CLAIMS_CACHE": str(tmp_path / "c")}, tmp_path / "later.json")
        assert later.wait(timeout=120) == 0, later.stdout.read() if later.stdout else ""
    again = json.loads((tmp_path / "later.json").read_text())
    assert again["already_done"] == 8 and again["stored_by_other_workers"] == 0  # stored before it started
    reports = [json.loads((tmp_path / f"w{n}.json").read_text()) for n in range(3)]
    assert sum(r["succeeded"] for r in reports) == 8  # each paper drafted by one worker
    assert all(r["succeeded"] + r["already_done"] == 8 for r in reports)  # and every worker accounts for all
    # what a worker found done was stored meanwhile by the others (the store was empty at the start)
    assert all(r["stored_by_other_workers"] == r["already_done"] for r in reports), reports
    # no call was spent on a paper another worker stored: every call is a stored paper's
    papers = [paper for report in reports for paper in report["papers"]]
    assert all(paper["calls"] > 0 for paper in papers if paper["status"] == "done")
    assert sum(paper["calls"] for paper in papers if paper["status"] != "done") == 0
    assert sum(r["model_calls"] for r in reports) == sum(paper["calls"] for paper in papers)
    assert len(Store(db).summaries()) == 8


@pytest.mark.parametrize("command", ["batch", "run"])
def test_a_dead_workers_paper_is_taken_once_its_lease_runs_out(
    runner: CliRunner, batch_env, db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    """`claims run` is a batch of one: it honours another worker's lease on the paper as a batch does."""
    listing = write_list(tmp_path, str(HPYLORI_PDF))
    monkeypatch.setenv("CLAIMS_LEASE_SECONDS", "2")
    with ScriptedEndpoint(load_scripts()) as endpoint:
        batch_env(endpoint)
        scratch = tmp_path / "scratch.db"  # a first run, only to learn the paper's run key
        monkeypatch.setenv("CLAIMS_DB", str(scratch))
        assert runner.invoke(claims, ["batch", str(listing), "--report", str(tmp_path / "a.json")]).exit_code == 0
        with sqlite3.connect(scratch) as connection:
            [(key,)] = connection.execute("SELECT run_key FROM records").fetchall()
        # on the shared store, a worker on another machine took the paper and then died
        shared = Store(db)
        assert shared.take_lease(key, "elsewhere:4242:dead", 1.5).outcome == "taken"
        assert shared.take_lease(key, "elsewhere:4343:alive", 60).outcome == "held"
        monkeypatch.setenv("CLAIMS_DB", db)
        started = time.monotonic()
        arguments = (
            ["batch", str(listing), "--report", str(tmp_path / "b.json")]
            if command == "batch"
            else ["run", str(HPYLORI_PDF)]
        )
        result = runner.invoke(claims, arguments)
        waited = time.monotonic() - started
    assert result.exit_code == 0, result.output
    if command == "batch":
        assert json.loads((tmp_path / "b.json").read_text())["succeeded"] == 1
    else:
        assert "saved as a draft" in result.output and "model calls:" in result.output
        assert result.output.count("another worker (elsewhere:4242:dead) is running it; waiting for it") == 1
    assert waited >= 1.0  # it waited for the dead worker's lease instead of running beside it
    assert len(shared.summaries()) == 1
    assert shared.take_lease(key, "elsewhere:4343:alive", 60).outcome == "stored"
