"""DOI input, against recorded HTTP cassettes only: found, no open-access copy, not found,
malformed, Crossref down, rate limited, HTML instead of a PDF, oversized, retracted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, HPYLORI_PDF, HTTP, NITRATE_PDF, ROOT, claims

from pipeline.core.errors import DoiNotFoundError, InputError, NoOpenAccessPdfError
from pipeline.core.identifiers import normalise_doi
from pipeline.core.retry import RetryPolicy
from pipeline.sources.http import CassetteTransport, make_client, user_agent
from pipeline.sources.metadata import DoiCache, DoiSettings, fetch, from_crossref, from_openalex, rebuild_abstract
from pipeline.team.store import Store

CORPUS_LIKE = HTTP / "bodies"
HP = "10.1136/pgmj.2009.089987"


def tools(name: str, tmp_path: Path, mailto: str | None = "curator@example.org", **settings):  # type: ignore[no-untyped-def]
    transport = CassetteTransport(HTTP / f"{name}.json")
    sleeps: list[float] = []
    doi_settings = DoiSettings(mailto=mailto, retry=RetryPolicy(attempts=3), sleep=sleeps.append, **settings)
    return make_client(mailto, transport=transport), DoiCache(tmp_path / "cache"), doi_settings, transport, sleeps


@pytest.mark.parametrize(
    "text",
    [
        "10.1136/PGMJ.2009.089987",
        " https://doi.org/10.1136/pgmj.2009.089987 ",
        "doi:10.1136/pgmj.2009.089987",
        "DOI: 10.1136/pgmj.2009.089987",
        "http://dx.doi.org/10.1136/pgmj.2009.089987",
    ],
)
def test_doi_forms_normalise(text: str) -> None:
    assert normalise_doi(text) == HP


@pytest.mark.parametrize("text", ["10.123", "hello", "https://example.com/paper", "10.1136", "doi:"])
def test_malformed_dois_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="not a DOI"):
        normalise_doi(text)


def test_found_with_open_access_pdf(tmp_path: Path) -> None:
    client, cache, settings, transport, _ = tools("hpylori_found", tmp_path)
    fetched = fetch(HP, client, cache, settings)
    meta = fetched.metadata
    assert meta.title == "Iron deficiency anaemia can be improved after eradication of Helicobacter pylori"
    assert meta.authors[0] == "Xiaolu Huang" and meta.journal == "Postgraduate Medical Journal" and meta.year == 2010
    assert meta.sources == ["crossref", "openalex", "unpaywall"]
    assert meta.abstract.startswith("Recent guidelines on iron deficiency anaemia")
    assert fetched.pdf.read_bytes() == HPYLORI_PDF.read_bytes()
    assert fetched.pdf_url == "https://pmj.bmj.com/content/86/1015/272.full.pdf"
    sent = transport.requests
    assert sent[0].url.params["mailto"] == "curator@example.org"
    assert sent[2].url.params["email"] == "curator@example.org"
    assert "mailto:curator@example.org" in sent[0].headers["user-agent"]


def test_second_fetch_makes_no_request(tmp_path: Path) -> None:
    client, cache, settings, transport, _ = tools("hpylori_found", tmp_path)
    fetch(HP, client, cache, settings)
    count = len(transport.requests)
    again = fetch(HP, client, cache, settings)
    assert len(transport.requests) == count and again.from_cache
    fetch(HP, client, cache, settings, refresh=True)
    assert len(transport.requests) == 2 * count


def test_no_open_access_pdf(tmp_path: Path) -> None:
    client, cache, settings, *_ = tools("orglett_no_open_access", tmp_path)
    with pytest.raises(NoOpenAccessPdfError) as caught:
        fetch("10.1021/acs.orglett.9b00971", client, cache, settings)
    assert str(caught.value) == (
        "no open-access PDF found for 10.1021/acs.orglett.9b00971 (checked Unpaywall, OpenAlex, Crossref links); "
        "pass it with --pdf FILE"
    )
    assert caught.value.exit_code == 3
    assert cache.pdf("10.1021/acs.orglett.9b00971") is None


def test_not_found(tmp_path: Path) -> None:
    client, cache, settings, *_ = tools("not_found", tmp_path)
    with pytest.raises(DoiNotFoundError, match="DOI 10.9999/no.such.doi not found"):
        fetch("10.9999/no.such.doi", client, cache, settings)
    assert not cache.folder("10.9999/no.such.doi").exists()  # failures are never cached


def test_crossref_down_falls_back_to_openalex_and_says_so(tmp_path: Path) -> None:
    client, cache, settings, _transport, sleeps = tools("hpylori_crossref_down", tmp_path)
    fetched = fetch(HP, client, cache, settings)
    assert fetched.metadata.sources == ["openalex", "unpaywall"]
    assert fetched.metadata.title.startswith("Iron deficiency anaemia")
    assert fetched.notes == ["Crossref unavailable (503 after 3 attempts); carried on with OpenAlex"]
    assert len(sleeps) == 2


def test_429_is_waited_out_as_asked(tmp_path: Path) -> None:
    client, cache, settings, _transport, sleeps = tools("hpylori_rate_limited", tmp_path)
    assert fetch(HP, client, cache, settings).metadata.sources == ["crossref", "openalex", "unpaywall"]
    assert sleeps == [1.0]


def test_pdf_url_serving_html_is_reported_not_parsed(tmp_path: Path) -> None:
    client, cache, settings, *_ = tools("hpylori_html_not_pdf", tmp_path)
    with pytest.raises(NoOpenAccessPdfError) as caught:
        fetch(HP, client, cache, settings)
    message = str(caught.value)
    assert "272.landing served an HTML page (a landing page or a captcha), not a PDF" in message
    assert "272.full.pdf served an HTML page" in message  # after following its redirect
    assert message.endswith("pass it with --pdf FILE")


def test_oversized_download_is_stopped(tmp_path: Path) -> None:
    client, cache, settings, *_ = tools("hpylori_found", tmp_path, max_pdf_bytes=int(0.1 * 1024 * 1024))
    with pytest.raises(NoOpenAccessPdfError, match=r"272.full.pdf is 0.406 MB, over the 0.1 MB cap"):
        fetch(HP, client, cache, settings)


def test_retraction_is_flagged(tmp_path: Path) -> None:
    client, cache, settings, *_ = tools("retracted", tmp_path)
    fetched = fetch("10.1155/2022/8341966", client, cache, settings)
    assert fetched.metadata.retracted is True
    assert fetched.metadata.journal == "Wireless Communications and Mobile Computing"


def test_without_mailto_unpaywall_is_skipped_and_said(tmp_path: Path) -> None:
    client, cache, settings, transport, _ = tools("hpylori_found", tmp_path, mailto=None)
    fetched = fetch(HP, client, cache, settings)
    assert "Unpaywall skipped: set CLAIMS_MAILTO" in fetched.notes[0]
    assert not any("unpaywall" in str(r.url) for r in transport.requests)
    assert fetched.pdf is not None  # OpenAlex's location still gives the PDF
    assert "mailto" not in user_agent(None)


def test_parsers_on_real_responses() -> None:
    corpus = json.loads((ROOT / "fixtures" / "http" / "bodies" / "crossref_orglett.json").read_text())["message"]
    parsed = from_crossref(corpus)
    assert parsed["title"] == "A General Copper-Catalyzed Synthesis of Ynamides from 1,2-Dichloroenamides"
    assert parsed["journal"] == "Organic Letters" and parsed["year"] == 2019
    assert parsed["pdf_urls"] == []  # its one link is 'unspecified', for similarity checking
    assert from_crossref({"author": [{"family": "Sheherazade"}], "title": ["T"]})["authors"] == ["Sheherazade"]
    assert rebuild_abstract({"world": [1], "hello": [0]}) == "hello world"
    openalex = from_openalex(json.loads((CORPUS_LIKE / "openalex_pone_real.json").read_text()))
    assert openalex["retracted"] is False and openalex["journal"] == "PLoS ONE" and openalex["year"] == 2006
    assert (
        openalex["pdf_urls"][0]
        == "https://journals.plos.org/plosone/article/file?id=10.1371/journal.pone.0000030&type=printable"
    )
    assert len(openalex["pdf_urls"]) == len(set(openalex["pdf_urls"]))
    assert openalex["abstract"].startswith(
        "Triosephosphate isomerase (TPI) deficiency is an autosomal recessive disorder"
    )
    elife = from_crossref(json.loads((CORPUS_LIKE / "crossref_elife_real.json").read_text())["message"])
    assert elife["licence"] == "http://creativecommons.org/licenses/by/3.0/" and elife["abstract"].startswith(
        "Among various advantages"
    )
    assert elife["pdf_urls"] == ["https://cdn.elifesciences.org/articles/01567/elife-01567-v1.pdf"]


# --------------------------------------------------------------------------- the commands


def test_fetch_command_writes_pdf_and_metadata(runner: CliRunner, cassette, tmp_path: Path) -> None:
    cassette("hpylori_found")
    result = runner.invoke(claims, ["fetch", "https://doi.org/10.1136/PGMJ.2009.089987", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "10.1136_pgmj.2009.089987.pdf").read_bytes() == HPYLORI_PDF.read_bytes()
    meta = json.loads((tmp_path / "out" / "10.1136_pgmj.2009.089987.json").read_text())
    assert meta["pdf_url"].endswith("272.full.pdf") and meta["retracted"] is False


def test_fetch_command_exit_codes(runner: CliRunner, cassette, tmp_path: Path) -> None:
    cassette("orglett_no_open_access")
    result = runner.invoke(claims, ["fetch", "10.1021/acs.orglett.9b00971", "-o", str(tmp_path)])
    assert result.exit_code == 3
    assert (
        "error: no open-access PDF found for 10.1021/acs.orglett.9b00971 (checked Unpaywall, OpenAlex, Crossref links); pass it with --pdf FILE"
        in result.output
    )
    assert list(tmp_path.glob("*.pdf")) == []
    bad = runner.invoke(claims, ["fetch", "10.123"])
    assert bad.exit_code == 2 and "'10.123' is not a DOI" in bad.output


def test_fetch_shows_retraction(runner: CliRunner, cassette, tmp_path: Path) -> None:
    cassette("retracted")
    result = runner.invoke(claims, ["fetch", "10.1155/2022/8341966", "-o", str(tmp_path)])
    assert result.exit_code == 0 and "[RETRACTED]" in result.output


def test_run_doi_downloads_and_drafts_with_metadata(runner: CliRunner, cassette, live_env, clean_environment) -> None:
    cassette("nitrate_found")
    result = runner.invoke(claims, ["run", "doi:10.1016/j.nutres.2016.11.004"])
    assert result.exit_code == 0, result.output
    assert "PDF from https://shura.shu.ac.uk/14003/1/Siervo-DietaryNitrate.pdf" in result.output
    record_id = next(line.split()[1] for line in result.output.splitlines() if line.startswith("record "))
    ref = Store(clean_environment).get(record_id).studies[0].reference
    assert ref.doi == "10.1016/j.nutres.2016.11.004" and ref.study_id == ref.doi
    assert ref.journal == "Nutrition Research" and ref.licence == "https://www.elsevier.com/tdm/userlicense/1.0/"
    assert ref.publication_type == "journal-article" and ref.pdf_url.endswith("Siervo-DietaryNitrate.pdf")
    assert ref.metadata_sources == ["crossref", "openalex", "unpaywall"]
    page = runner.invoke(claims, ["render", record_id]).output
    assert "Licence: https://www.elsevier.com/tdm/userlicense/1.0/" in page and "PDF: https://shura.shu.ac.uk/" in page


def test_run_doi_without_open_access_exits_3_and_writes_nothing(
    runner: CliRunner, cassette, live_env, clean_environment
) -> None:
    cassette("orglett_no_open_access")
    result = runner.invoke(claims, ["run", "10.1021/acs.orglett.9b00971"])
    assert result.exit_code == 3
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("error: no open-access PDF found for 10.1021/acs.orglett.9b00971")
    )
    assert Store(clean_environment).summaries() == []
    assert live_env.scripts.requests == []


@pytest.mark.parametrize("text", ["10.123", "hello", "https://example.com/paper"])
def test_run_with_malformed_doi_exits_2(runner: CliRunner, live_env, text: str) -> None:
    result = runner.invoke(claims, ["run", text])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_run_unknown_doi_exits_2(runner: CliRunner, cassette, live_env) -> None:
    cassette("not_found")
    result = runner.invoke(claims, ["run", "10.9999/no.such.doi"])
    assert result.exit_code == 2 and "not found" in result.output


def test_run_doi_with_a_pdf_that_does_not_match_warns_or_fails_strict(runner: CliRunner, cassette, live_env) -> None:
    cassette("nitrate_found")
    strict = runner.invoke(claims, ["run", "10.1016/j.nutres.2016.11.004", "--pdf", str(HPYLORI_PDF), "--strict"])
    assert strict.exit_code == 2
    assert (
        "does not look like 10.1016/j.nutres.2016.11.004: the PDF names DOI 10.1136/pgmj.2009.089987" in strict.output
    )
    assert live_env.scripts.requests == []
    lenient = runner.invoke(claims, ["run", "10.1016/j.nutres.2016.11.004", "--pdf", str(NITRATE_PDF)])
    assert lenient.exit_code == 0, lenient.output
    assert "warning" not in lenient.output


def test_pdf_and_pdf_option_together_is_refused(runner: CliRunner, live_env) -> None:
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--pdf", str(HPYLORI_PDF)])
    assert result.exit_code == 2 and "--pdf goes with a DOI" in result.output


SECRETS = [
    re.compile(r"authorization", re.I),
    re.compile(r"bearer\s+\S+", re.I),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"api[_-]?key", re.I),
    re.compile(r"set-cookie|\bcookie\b", re.I),
    re.compile(r"openai-(organization|project)", re.I),
]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def test_fixtures_hold_no_secret_and_no_real_email() -> None:
    paths = sorted((FIXTURES / "http").rglob("*.json")) + sorted((FIXTURES / "runs").rglob("*.json"))
    assert len(paths) > 10
    for path in paths:
        text = path.read_text()
        for pattern in SECRETS:
            assert not pattern.search(text), f"{path}: {pattern.pattern}"
        emails = {e for e in EMAIL.findall(text) if not e.endswith(("example.org", "example.com"))}
        assert not emails, f"{path}: {emails}"
    for path in sorted((FIXTURES / "http").glob("*.json")):
        for interaction in json.loads(path.read_text())["interactions"]:
            assert "mailto=" not in interaction["request"]["url"] and "email=" not in interaction["request"]["url"]
