"""No lost update: every change is made from a record and its version read together, so a second
writer in between makes the first one's change stale; it is refused, never merged (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DVT_PDF, claims, load_scripts
from scripted_endpoint import ScriptedEndpoint, Scripts
from test_review import stored

from pipeline.core.errors import StaleVersionError
from pipeline.team.store import Store


def test_a_change_made_from_an_old_read_is_refused(db: str) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    first, second = Store(db), Store(db)
    mine, my_version = first.get_versioned(record_id)
    theirs, their_version = second.get_versioned(record_id)
    theirs.claim.text = "The other reviewer's wording."
    second.update(theirs, their_version, "edited", "bo", "")
    mine.claim.text = "My wording, from the version I read."
    with pytest.raises(StaleVersionError, match="changed by bo .* reload and try again"):
        first.update(mine, my_version, "edited", "ana", "")
    assert first.get(record_id).claim.text == "The other reviewer's wording."


class EditsWhileTheModelWorks(Scripts):
    """The scripted endpoint, and a reviewer who edits the claim while its first request is answered."""

    def __init__(self, scripts: Scripts, store: Store, record_id: str):
        super().__init__(scripts.scripts)
        self.store, self.record_id, self.edited = store, record_id, False

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.edited:
            self.edited = True
            record, version = self.store.get_versioned(self.record_id)
            record.claim.text = "A reviewer's edit made while evidence was being added."
            self.store.update(record, version, "edited", "bo", "")
        return super().next_answer(body)


def test_evidence_added_while_a_reviewer_edits_is_refused_not_merged(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    [claim_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    with ScriptedEndpoint(EditsWhileTheModelWorks(load_scripts(), store, claim_id)) as endpoint:
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        result = runner.invoke(claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-add-evidence"])
    assert result.exit_code == 1
    assert "was changed by bo" in result.output and "reload and try again" in result.output
    record = store.get(claim_id)
    assert record.claim.text == "A reviewer's edit made while evidence was being added."
    assert len(record.studies) == 1 and store.version_of(claim_id) == 2
