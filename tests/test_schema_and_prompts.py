"""The checked-in schema agrees with the models, and prompts are checked when loaded."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, RUNS

from pipeline.core.errors import ConfigError
from pipeline.core.models import SCHEMA_VERSION, ClaimRecord
from pipeline.core.resources import (
    INSTRUCTIONS,
    STAGE_PROMPTS,
    data_dir,
    load_prompt_set,
    parse_prompt,
    record_schema_path,
)
from pipeline.core.schema import main as schema_gen_main
from pipeline.core.schema import record_schema_text, schema_errors


def test_checked_in_schema_matches_the_models() -> None:
    checked_in = (ROOT / "schemas" / "claim_record.schema.json").read_text()
    assert checked_in == record_schema_text(), "run: python -m pipeline.core.schema"
    assert schema_gen_main(["--check"]) == 0


def test_schema_gen_check_fails_on_drift(tmp_path, monkeypatch) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "claim_record.schema.json").write_text("{}")
    monkeypatch.setattr("pipeline.core.schema.record_schema_path", lambda: schemas / "claim_record.schema.json")
    assert schema_gen_main(["--check"]) == 1


def test_the_schema_is_the_one_the_package_uses() -> None:
    assert record_schema_path().read_text() == record_schema_text()


def test_records_carry_the_schema_version() -> None:
    for path in RUNS.glob("*/record.json"):
        data = json.loads(path.read_text())
        assert data["schema_version"] == SCHEMA_VERSION
        assert schema_errors(data) == []
        ClaimRecord.model_validate(data)


def test_schema_rejects_what_the_model_would_reject() -> None:
    data = json.loads(next(RUNS.glob("*/record.json")).read_text())
    data["surprise"] = 1
    data["mechanism"]["steps"][0]["basis"] = "guessed"
    problems = schema_errors(data)
    assert any("surprise" in p for p in problems) and any("guessed" in p for p in problems)


@pytest.mark.parametrize("stage", sorted(STAGE_PROMPTS))
def test_every_stage_prompt_loads_and_fills_its_placeholders(stage: str) -> None:
    prompts = load_prompt_set()
    placeholders = STAGE_PROMPTS[stage].placeholders
    messages = prompts.render(stage, **{p: f"<{p}>" for p in placeholders})
    assert [m["role"] for m in messages] == ["system", "user"]
    assert all(f"<{p}>" in messages[0]["content"] + messages[1]["content"] for p in placeholders)
    assert "$" not in messages[0]["content"] + messages[1]["content"]  # no placeholder left unfilled


@pytest.mark.parametrize("name", sorted(INSTRUCTIONS))
def test_every_instruction_loads(name: str) -> None:
    assert len(load_prompt_set().instruction(name)) > 40


def test_the_registry_names_every_shipped_prompt_file() -> None:
    shipped = {path.name for path in data_dir("prompts").glob("*.md")}
    assert shipped == {spec.file for spec in STAGE_PROMPTS.values()} | set(INSTRUCTIONS.values())


def test_provenance_hashes_the_bytes_the_run_sent(tmp_path, monkeypatch) -> None:
    """An edited copy of a prompt (CLAIMS_PROMPTS) is what the requests carry and what provenance hashes."""
    import hashlib
    import shutil

    from pipeline.core.errors import ReplayMissError
    from pipeline.llm.base import LLMContext
    from pipeline.llm.recording import ReplayChatModel, load_recording
    from pipeline.workflow.run import run_pipeline

    edited = tmp_path / "prompts"
    shutil.copytree(data_dir("prompts"), edited)
    (edited / "extract.md").write_text((edited / "extract.md").read_text() + "\nAnswer in English.\n")
    monkeypatch.setenv("CLAIMS_PROMPTS", str(edited))
    recording, _ = load_recording(RUNS / "huang-2010-hpylori-iron")
    llm = LLMContext(ReplayChatModel(recording), recording.run_settings())
    assert llm.prompts.hashes()["extract.md"] == hashlib.sha256((edited / "extract.md").read_bytes()).hexdigest()
    with pytest.raises(ReplayMissError, match="prompt file extract.md changed"):
        run_pipeline(ROOT / "fixtures" / "papers" / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf", llm)


def test_prompt_with_unknown_or_missing_placeholder_fails_at_load() -> None:
    text = "=== system ===\nYou judge.\n=== user ===\n$paper_text and $colour\n"
    with pytest.raises(
        ConfigError, match=r"prompt x.md: placeholders do not match the stage \(missing \$findings, unknown \$colour\)"
    ):
        parse_prompt("x.md", text, {"paper_text", "findings"})


def test_prompt_without_parts_fails_at_load() -> None:
    with pytest.raises(ConfigError, match="needs one '=== system ===' and one '=== user ===' part"):
        parse_prompt("x.md", "just text $paper_text", {"paper_text"})


def test_every_prompt_file_is_hashed_in_provenance() -> None:
    shipped = {path.name for path in data_dir("prompts").glob("*.md")}
    run = json.loads((RUNS / "huang-2010-hpylori-iron" / "record.json").read_text())
    grown = json.loads((RUNS / "evidence-datta-on-huang" / "record.json").read_text())
    # the second opinion's prompt is hashed in the records of the runs that asked for one
    assert set(grown["provenance"]["prompts"]) == shipped - {"verify.md"}
    assert set(run["provenance"]["prompts"]) == shipped - {"stance.md", "synthesis.md", "verify.md"}
