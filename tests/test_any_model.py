"""Any model that follows the output schema yields a checked record, and a failed run explains
itself (issue 10). The endpoints here are the scripted one (answers written for the papers, with
injected faults) and one that answers at random within each request's schema: what a
constrained decoder with no understanding of the paper would write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DVT_PDF, HPYLORI_PDF, PAPERS, claims
from scripted_endpoint import Faults, RandomWithinSchema, ScriptedEndpoint, Scripts
from test_cli import record_id_from

from pipeline.core.retry import RetryPolicy
from pipeline.core.schema import schema_errors
from pipeline.core.settings import RunSettings
from pipeline.llm.base import LLMContext
from pipeline.llm.openai import OpenAIChatModel
from pipeline.llm.recording import load_recording, public_url
from pipeline.team.store import Store
from pipeline.workflow.run import run_pipeline

# papers whose scripted answers name the study as its PDF does (the nitrate script names its DOI,
# which a run from the PDF alone does not know)
SCRIPTED_PAPERS = (HPYLORI_PDF, DVT_PDF)


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: ScriptedEndpoint, base_url: str | None = None) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base_url or endpoint.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-never-recorded-0123456789")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("paper", sorted(PAPERS.glob("*.pdf")), ids=lambda p: p.stem)
def test_random_answers_within_the_schema_give_a_stored_checked_record(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path, paper: Path, seed: int
) -> None:
    with ScriptedEndpoint(RandomWithinSchema(seed)) as endpoint:
        use_endpoint(monkeypatch, endpoint)
        result = runner.invoke(claims, ["run", str(paper), "--model", "random-within-schema"])
    assert result.exit_code == 0, result.output
    record = Store(clean_environment).get(record_id_from(result.output))
    assert schema_errors(record.model_dump(mode="json")) == []
    # nonsense is flagged, never passed: random quotes cannot all be found in the paper
    assert any(check.flags for check in record.checks)
    assert record.provenance.answered_by == ["random-within-schema (claims-scripted-endpoint)"]


def test_every_answer_the_random_endpoint_gave_was_valid_against_the_schema_sent() -> None:
    """The test above proves something only if the random answers keep to the schema; this
    checks the generator itself against the schemas the pipeline sends."""
    from jsonschema import Draft202012Validator

    from pipeline.core.models import DraftOutput, ExtractOutput, GradeOutput
    from pipeline.llm.strict_schema import RequestFacts, request_schema

    answers = RandomWithinSchema(7)
    for model in (ExtractOutput, DraftOutput, GradeOutput):
        schema = request_schema(model, RequestFacts(study_ids=("10.1/a",), pages=5))
        body = {
            "response_format": {"json_schema": {"schema": schema}},
            "messages": [{"role": "user", "content": "a b c"}],
        }
        for _ in range(20):
            assert list(Draft202012Validator(schema).iter_errors(answers.next_answer(body))) == []


def test_under_30_percent_injected_faults_no_paper_fails() -> None:
    """429s, 500s, hangs past the timeout and answers cut off at the token limit, at random (seeded):
    every paper still gets its record, because each fault is one a retry can save."""
    counts: dict[str, int] = {}
    for seed in range(1, 7):
        faults = Faults(rate=0.3, hang_seconds=0.6, retry_after="0", seed=seed)
        with ScriptedEndpoint(
            Scripts.from_files(sorted((PAPERS.parent / "scripts").glob("*.json"))), faults=faults
        ) as endpoint:
            chat = OpenAIChatModel(
                "sk-test", endpoint.base_url, timeout=0.3, retry=RetryPolicy(attempts=5), sleep=lambda _: None
            )
            for pdf in SCRIPTED_PAPERS:
                record = run_pipeline(pdf, LLMContext(chat, RunSettings(model="scripted-endpoint"))).record
                assert not [c for c in record.checks if c.name == "model_output"]  # retried, not salvaged
        for kind, number in faults.counts.items():
            counts[kind] = counts.get(kind, 0) + number
    assert counts.get("truncated", 0) >= 2 and sum(counts.values()) >= 10, counts


def test_a_failed_recorded_run_keeps_its_recording_and_replays_as_failed(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_environment: Path
) -> None:
    script = {
        "name": "broken",
        "model": "broken-model",
        "answers": {
            "extract": json.loads((PAPERS.parent / "scripts" / "huang-2010-hpylori-iron.json").read_text())["answers"][
                "extract"
            ],
            "draft": [{"$raw": "I am sorry, I cannot produce JSON for this paper."}],
        },
    }
    target = tmp_path / "failed-run"
    with ScriptedEndpoint(Scripts([script])) as endpoint:
        use_endpoint(monkeypatch, endpoint)
        result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", "broken-model", "--record", str(target)])
    assert result.exit_code == 1
    assert "stage draft" in result.output and "recording of the failed run saved" in result.output
    recording, record = load_recording(target)
    assert record is None and not (target / "record.json").exists()
    assert recording.failure is not None and recording.failure.startswith("stage draft")
    assert [i["stage"] for i in recording.interactions] == ["extract", "draft", "draft"]
    assert "cannot produce JSON" in recording.interactions[1]["response"]["content"]  # the raw answer, to read
    assert not Store(clean_environment).summaries()  # no half-written record
    replayed = runner.invoke(claims, ["replay", str(target)])
    assert replayed.exit_code == 0, replayed.output
    assert "failed as recorded" in replayed.output


def test_a_server_error_is_kept_in_the_failed_recording(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = {
        "name": "small",
        "model": "small-context",
        "answers": {
            "extract": [
                {
                    "$status": 400,
                    "$error": "This model's maximum context length is 8192 tokens. However, you requested 21000 tokens.",
                }
            ]
        },
    }
    target = tmp_path / "too-long"
    with ScriptedEndpoint(Scripts([script])) as endpoint:
        use_endpoint(monkeypatch, endpoint)
        result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", "small-context", "--record", str(target)])
    assert result.exit_code == 1
    assert "maximum context length is 8192 tokens" in result.output
    recording, _ = load_recording(target)
    assert "maximum context length is 8192 tokens" in recording.interactions[0]["response"]["error"]


def test_credentials_in_the_base_url_are_never_written(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_environment: Path
) -> None:
    target = tmp_path / "recorded"
    scripts = Scripts.from_files([PAPERS.parent / "scripts" / "huang-2010-hpylori-iron.json"])
    with ScriptedEndpoint(scripts) as endpoint:
        port = endpoint.server.server_address[1]
        use_endpoint(monkeypatch, endpoint, f"http://curator:hunter2-password@127.0.0.1:{port}/v1")
        result = runner.invoke(
            claims, ["run", str(HPYLORI_PDF), "--model", "scripted-endpoint", "--record", str(target)]
        )
    assert result.exit_code == 0, result.output
    written = (target / "recording.json").read_text() + (target / "record.json").read_text()
    for secret in ("hunter2", "curator:", "SECRET"):
        assert secret not in written


def test_an_endpoint_is_described_without_its_credentials() -> None:
    assert public_url("https://user:pa55@llm.example.org:8443/v1?key=abc#x") == "https://llm.example.org:8443/v1"
    assert public_url("http://[::1]:8080/v1") == "http://[::1]:8080/v1"


def test_the_page_footer_names_what_answered(runner: CliRunner, live_env, clean_environment: Path) -> None:
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", "scripted-endpoint"])
    assert result.exit_code == 0, result.output
    page = runner.invoke(claims, ["render", record_id_from(result.output), "--format", "md"]).output
    assert "with model scripted-endpoint (answered by scripted-endpoint (claims-scripted-endpoint))" in page


def test_a_registered_provider_is_what_a_run_talks_to(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, endpoint: ScriptedEndpoint
) -> None:
    """The model seam as a second provider would use it: one entry in PROVIDERS, chosen by
    CLAIMS_PROVIDER; the command line names no client class."""
    from pipeline.llm import providers

    made: list[str] = []

    def other(settings, max_in_flight):  # type: ignore[no-untyped-def]
        made.append(settings.provider)
        return OpenAIChatModel(api_key="sk-other", base_url=endpoint.base_url)

    monkeypatch.setitem(providers.PROVIDERS, "other", other)
    monkeypatch.setenv("CLAIMS_PROVIDER", "other")
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", "scripted-endpoint"])
    assert result.exit_code == 0, result.output
    assert made == ["other"] and endpoint.scripts.requests
    monkeypatch.setenv("CLAIMS_PROVIDER", "nonesuch")
    unknown = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert unknown.exit_code == 2
    assert unknown.output.strip() == "error: CLAIMS_PROVIDER=nonesuch: no such provider; choose one of openai, other"
