"""The commands as a user runs them: run (live, against the scripted endpoint over HTTP), show,
render, validate, and the one-line errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BAD, DVT_PDF, HPYLORI_PDF, RUNS, claims

from pipeline.team.store import Store


def record_id_from(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("record "))
    return line.split()[1]


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT count(*) FROM records").fetchone()[0]


def test_run_saves_a_draft_and_prints_its_id(runner: CliRunner, live_env, clean_environment: Path) -> None:
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert result.exit_code == 0, result.output
    for stage in ("[1/5] ingest", "[2/5] extract", "[3/5] draft", "[4/5] grade", "[5/5] check"):
        assert stage in result.output
    assert "may raise haemoglobin" in result.output
    assert (
        "checks: 9 quotes: 9 grounded, 0 ungrounded; 0 foreign citations; 0 numbers not found; 0 overstated"
        in result.output
    )
    record_id = record_id_from(result.output)
    record = Store(clean_environment).get(record_id)
    assert record.status.value == "draft"
    assert record.studies[0].reference.doi == "10.1136/pgmj.2009.089987"
    assert record.certainty.certainty.value == "low"
    assert [u.stage for u in record.provenance.usage] == ["extract", "draft", "grade"]
    assert set(record.provenance.prompts) == {
        "extract.md",
        "draft.md",
        "grade.md",
        "plain_language.md",
        "repair.md",
        "retry_shorter.md",
    }


def test_run_sends_each_stage_only_its_sections(runner: CliRunner, live_env) -> None:
    assert runner.invoke(claims, ["run", str(HPYLORI_PDF)]).exit_code == 0
    requests = live_env.scripts.requests
    whole_paper = sum(len(str(m["content"])) for m in requests[0]["messages"])
    assert [r["response_format"]["json_schema"]["name"] for r in requests] == ["extract", "draft", "grade"]
    for request in requests:
        text = request["messages"][1]["content"]
        assert "REFERENCES" not in text  # no stage needs the reference list
    assert whole_paper < 40_000


def test_record_option_keeps_the_run_and_no_secret(runner: CliRunner, live_env, tmp_path: Path) -> None:
    target = tmp_path / "runs" / "dvt"
    result = runner.invoke(claims, ["run", str(DVT_PDF), "--record", str(target), "--model", "scripted-endpoint"])
    assert result.exit_code == 0, result.output
    recording = json.loads((target / "recording.json").read_text())
    assert "scripted local endpoint" in recording["made_against"]
    assert len(recording["interactions"]) == 3
    assert all(len(i["fingerprint"]) == 64 for i in recording["interactions"])
    for path in target.iterdir():
        text = path.read_text()
        assert "SECRET" not in text and "sk-test" not in text and "authorization" not in text.lower()
    replay = runner.invoke(claims, ["replay", str(target)])
    assert replay.exit_code == 0, replay.output


def test_missing_api_key_is_one_line_exit_2(runner: CliRunner, clean_environment: Path) -> None:
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == "error: OPENAI_API_KEY is not set: export it (and OPENAI_BASE_URL for another endpoint)"
    )
    assert stored_count(clean_environment) == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("encrypted_user_password_libreoffice.pdf", "encrypted"),
        ("not_a_pdf_corrupted.pdf", "not a PDF"),
        ("blank_single_page.pdf", "no text layer"),
        ("scanned_image_only_no_text.pdf", "run OCR first"),
        ("invisible_text_layer.pdf", "no text layer"),
        ("malformed_array_abrupt_ending.pdf", "too little to be a study"),
        ("does_not_exist.pdf", "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    runner: CliRunner, live_env, clean_environment: Path, name: str, message: str
) -> None:
    result = runner.invoke(claims, ["run", str(BAD / name)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and name in errors[0]
    assert "Traceback" not in result.output
    assert stored_count(clean_environment) == 0
    assert live_env.scripts.requests == []  # refused before any model call


def test_a_web_address_is_refused_with_what_to_give_instead(runner: CliRunner, live_env) -> None:
    result = runner.invoke(claims, ["run", "https://example.org/paper.pdf"])
    assert result.exit_code == 2
    assert "a web address is not read; give the paper's DOI, or download the PDF" in result.output
    assert live_env.scripts.requests == []


def test_show_and_render_every_format(runner: CliRunner, live_env) -> None:
    record_id = record_id_from(runner.invoke(claims, ["run", str(HPYLORI_PDF)]).output)
    shown = runner.invoke(claims, ["show", record_id[:6]])
    assert shown.exit_code == 0 and "Mechanism — from one study" in shown.output
    markdown = runner.invoke(claims, ["render", record_id, "--format", "md"]).output
    assert "## Mechanism — from one study" in markdown
    html = runner.invoke(claims, ["render", record_id, "--format", "html"]).output
    assert html.startswith("<!doctype html>") and "<h3>Supporting (1)</h3>" in html
    data = json.loads(runner.invoke(claims, ["render", record_id, "--format", "json"]).output)
    assert data["record_id"] == record_id
    bad = runner.invoke(claims, ["render", record_id, "--format", "pdf"])
    assert bad.exit_code == 2 and "unknown format" in bad.output


def test_render_writes_a_file_and_reads_a_record_file(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    result = runner.invoke(
        claims, ["render", str(RUNS / "siervo-2016-nitrate" / "record.json"), "-f", "html", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "did not improve oxygen use" in target.read_text()


def test_unknown_record_id(runner: CliRunner) -> None:
    result = runner.invoke(claims, ["show", "ffffffff"])
    assert result.exit_code == 2 and "no record with id 'ffffffff'" in result.output


def test_validate(runner: CliRunner, tmp_path: Path) -> None:
    records = sorted(str(p) for p in RUNS.glob("*/record.json"))
    assert len(records) >= 3
    ok = runner.invoke(claims, ["validate", *records])
    assert ok.exit_code == 0 and ok.output.count("valid ") == len(records)
    broken = json.loads(Path(records[0]).read_text())
    broken["certainty"]["certainty"] = "certain"
    del broken["claim"]["text"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    result = runner.invoke(claims, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "2 error(s)" in result.output and "certainty/certainty" in result.output
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    assert runner.invoke(claims, ["validate", str(not_json)]).exit_code == 1


def test_version(runner: CliRunner) -> None:
    assert runner.invoke(claims, ["--version"]).output.startswith("claims ")


def test_citations_in_another_spelling_are_the_study_not_foreign(
    runner: CliRunner, live_env, clean_environment: Path
) -> None:
    for script in live_env.scripts.scripts:
        if script["name"] == "huang-2010-hpylori-iron":
            draft = script["answers"]["draft"][0]
            draft["causal_chain"][0]["citations"] = ["https://doi.org/10.1136/PGMJ.2009.089987"]
            draft["stances"][0]["study_id"] = "doi:10.1136/pgmj.2009.089987"
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert result.exit_code == 0, result.output
    record = Store(clean_environment).get(record_id_from(result.output))
    assert record.mechanism.steps[0].citations == ["10.1136/pgmj.2009.089987"]
    assert record.studies[0].stance.value == "supporting"
    assert "0 foreign citations" in result.output


def test_a_paper_already_stored_is_not_stored_again(runner: CliRunner, live_env, clean_environment: Path) -> None:
    first = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert first.exit_code == 0
    record_id = record_id_from(first.output)
    asked = len(live_env.scripts.requests)
    again = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert again.exit_code == 0 and f"already stored as {record_id}" in again.output
    assert len(live_env.scripts.requests) == asked and stored_count(clean_environment) == 1
    forced = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--force"])
    assert forced.exit_code == 0 and stored_count(clean_environment) == 2


def test_a_forced_second_run_takes_its_answers_from_the_cache(runner: CliRunner, live_env) -> None:
    assert runner.invoke(claims, ["run", str(HPYLORI_PDF)]).exit_code == 0
    asked = len(live_env.scripts.requests)
    again = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--force"])
    assert again.exit_code == 0 and len(live_env.scripts.requests) == asked
    assert "model calls: 0 (3 answers from the cache)" in again.output
    fresh = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--force", "--no-cache"])
    assert fresh.exit_code == 0 and len(live_env.scripts.requests) == 2 * asked


def test_help_names_what_an_option_takes_not_python_types() -> None:
    def help_of(*words: str) -> str:
        return CliRunner().invoke(claims, [*words, "--help"], env={"COLUMNS": "120"}).output

    lines = {line.split()[1]: line for line in help_of("run").splitlines() if line.startswith("│ --")}
    assert "PDF " in lines["--pdf"] and "N " in lines["--max-pdf-mb"] and "MODEL" in lines["--model"]

    def commands(command, words=()):
        yield words, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*words, name))

    # every argument names what it takes (the usage line shows "{recordings}" otherwise), once bracketed
    unnamed = [
        (" ".join(words), param.name)
        for words, command in commands(claims)
        for param in command.params
        if param.param_type_name == "argument" and (param.metavar is None or param.metavar.startswith("["))
    ]
    assert unnamed == []
    placeholders = ("<str>", "<bool>", "<path>", "<int>", "<float>", "(dynamic)")
    leaks = [
        (" ".join(words), line.strip())
        for words, _ in commands(claims)
        for line in help_of(*words).splitlines()
        if any(placeholder in line for placeholder in placeholders)
    ]
    assert leaks == []
