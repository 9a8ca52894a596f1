"""One settings object: every variable is read in pipeline/core/settings.py and nowhere else, and the
configuration page's table (docs/configuration.md) names exactly those variables (issue 12)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from pipeline.core.errors import ConfigError
from pipeline.core.settings import VARIABLES, Settings


def test_no_module_but_settings_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "pipeline").rglob("*.py")
        if path.name != "settings.py" and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
    ]
    assert readers == []


def test_the_configuration_page_names_every_variable_and_no_other() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = page.split("# Configuration", 1)[1].split("\n# ", 1)[0]
    named = set(re.findall(r"`((?:CLAIMS|OPENAI)_[A-Z_]+)[`=]", table))
    assert named == set(VARIABLES)


def test_values_and_their_errors() -> None:
    settings = Settings({"HOME": "/home/ana", "CLAIMS_TIMEOUT": "abc", "CLAIMS_MAX_PDF_MB": "0", "USER": "ana"})
    assert settings.db == "/home/ana/.local/share/claims/claims.db"
    assert settings.reviewer == "ana" and settings.model == "gpt-4o-mini"
    with pytest.raises(ConfigError, match="CLAIMS_TIMEOUT=abc is not a number"):
        settings.timeout
    with pytest.raises(ConfigError, match="CLAIMS_MAX_PDF_MB=0 must be more than 0"):
        settings.max_pdf_megabytes
