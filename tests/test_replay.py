"""Replay: every bundled recording reproduces its record offline, and every kind of change is
caught and named (prompt, model, parameters, input, record)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import NITRATE_PDF, RUNS, claims, replayed

from pipeline.core.resources import data_dir
from pipeline.review.render import render

RECORDINGS = sorted(path.name for path in RUNS.iterdir() if (path / "recording.json").exists())


def edit_json(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_bundled_recording_replays_identically(runner: CliRunner, name: str) -> None:
    result = runner.invoke(claims, ["replay", str(RUNS / name)])
    assert result.exit_code == 0, result.output
    assert "record identical" in result.output or "as recorded" in result.output


def test_bundled_recordings_say_what_answered_them() -> None:
    assert len(RECORDINGS) >= 3
    for name in RECORDINGS:
        recording = json.loads((RUNS / name / "recording.json").read_text())
        if name.startswith("local-"):  # a real model on this machine: the server, its version, the model file
            assert "llama-cpp-python 0.3.36 server" in recording["made_against"]
            assert re.search(r"SmolLM2-135M-Instruct\.Q4_1\.gguf .*sha256 [0-9a-f]{64}", recording["made_against"])
            continue
        assert "scripted local endpoint" in recording["made_against"]
        assert "not a real model" in recording["made_against"]


def test_the_local_model_s_poor_answers_are_flagged_and_the_page_renders() -> None:
    record = replayed("local-smollm2-hpylori")
    flags = [flag.code for check in record.checks for flag in check.flags]
    assert flags.count("ungrounded_quote") == 11 and "number_not_found" in flags
    assert record.provenance.answered_by == ["smollm2-135m-instruct"]
    assert "Gold Standard Evidence Needed" in render(record, "md") and "<h1>" in render(record, "html")


def test_replay_show_prints_the_claim_page(runner: CliRunner) -> None:
    result = runner.invoke(claims, ["replay", str(RUNS / "huang-2010-hpylori-iron"), "--show"])
    assert result.exit_code == 0
    for part in (
        "# In people with iron deficiency anaemia",
        "Mechanism — from one study",
        "Most probable mechanism",
        "Supporting (1)",
        "Contradicting (0)",
        "Community contributions welcome",
        "Gold Standard Evidence Needed",
    ):
        assert part in result.output


def use_edited_prompt(tmp_path: Path, monkeypatch, name: str, old: str, new: str) -> None:  # type: ignore[no-untyped-def]
    """Copies of the shipped prompts with one edited, in effect through CLAIMS_PROMPTS."""
    prompts = tmp_path / "prompts"
    shutil.copytree(data_dir("prompts"), prompts)
    edited = prompts / name
    assert old in edited.read_text()
    edited.write_text(edited.read_text().replace(old, new))
    monkeypatch.setenv("CLAIMS_PROMPTS", str(prompts))


def test_edited_prompt_fails_and_names_the_prompt(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    use_edited_prompt(
        tmp_path, monkeypatch, "draft.md", "worded no stronger than its evidence", "worded as strongly as you like"
    )
    result = runner.invoke(claims, ["replay", str(RUNS / "huang-2010-hpylori-iron")])
    assert result.exit_code == 1
    assert "stage draft: the request no longer matches the recording: prompt file draft.md changed" in result.output


def test_changed_model_and_parameters_are_named(runner: CliRunner, recording_copy) -> None:
    run = recording_copy("siervo-2016-nitrate")
    edit_json(run / "recording.json", lambda d: d["settings"].update(model="gpt-x", temperature=0.7))
    result = runner.invoke(claims, ["replay", str(run)])
    assert result.exit_code == 1
    assert "stage extract" in result.output
    assert "model changed (scripted-endpoint -> gpt-x)" in result.output
    assert "parameters changed (temperature)" in result.output


def test_changed_input_text_is_named(runner: CliRunner, recording_copy) -> None:
    run = recording_copy("siervo-2016-nitrate")
    edit_json(run / "recording.json", lambda d: d["settings"]["stage_text_budget"].update(extract=5000))
    result = runner.invoke(claims, ["replay", str(run)])
    assert result.exit_code == 1
    assert "stage extract" in result.output and "the input changed" in result.output


def test_other_pdf_is_refused(runner: CliRunner, recording_copy) -> None:
    run = recording_copy("huang-2010-hpylori-iron")
    result = runner.invoke(claims, ["replay", str(run), "--pdf", str(NITRATE_PDF)])
    assert result.exit_code == 1
    assert "input changed" in result.output


def test_missing_pdf_says_how_to_pass_it(runner: CliRunner, recording_copy) -> None:
    run = recording_copy("huang-2010-hpylori-iron")
    shutil.rmtree(run.parent.parent / "papers")
    result = runner.invoke(claims, ["replay", str(run)])
    assert result.exit_code == 1 and "pass it with --pdf" in result.output


def test_a_changed_record_is_shown_as_a_diff(runner: CliRunner, recording_copy) -> None:
    run = recording_copy("datta-2010-dvt-prophylaxis")
    edit_json(run / "record.json", lambda d: d["claim"].update(text="Heparin is perfectly safe."))
    result = runner.invoke(claims, ["replay", str(run)])
    assert result.exit_code == 1
    assert '-    "text": "Heparin is perfectly safe."' in result.output
    assert "differs from the recorded one" in result.output


def test_several_recordings_report_each(runner: CliRunner, recording_copy, tmp_path: Path) -> None:
    good = RUNS / "huang-2010-hpylori-iron"
    result = runner.invoke(claims, ["replay", str(good), str(tmp_path / "nothing-here")])
    assert result.exit_code == 1
    assert "ok " in result.output and "not a recording" in result.output
    assert "1 of 2 recordings replayed identically" in result.output


def test_edited_stance_prompt_is_named_for_an_add_evidence_recording(
    runner: CliRunner, tmp_path: Path, monkeypatch
) -> None:
    use_edited_prompt(tmp_path, monkeypatch, "stance.md", "Judge the study's results", "Weigh the study's results")
    result = runner.invoke(claims, ["replay", str(RUNS / "evidence-datta-on-huang")])
    assert result.exit_code == 1
    assert "stage stance: the request no longer matches the recording: prompt file stance.md changed" in result.output
