"""Ingest: real papers give pages, sections and DOI; every bad file gets its own clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BAD, DVT_PDF, HPYLORI_PDF, NITRATE_PDF
from pdfmaker import make_pdf

from pipeline.core.errors import InputError, NoTextLayerError
from pipeline.core.models import PageProblem
from pipeline.sources.pdf import (
    ExtractedPages,
    build_document,
    garbled_share,
    heading_of,
    read_pdf,
    split_sections,
    strip_line_numbers,
)

PAPER_LIKE_TEXT = (
    "Abstract\nWe studied whether a daily walk lowers blood pressure in adults. "
    "Results showed a small fall in systolic pressure after twelve weeks of walking. " * 6
)


def test_real_paper_has_pages_sections_and_doi() -> None:
    document = read_pdf(HPYLORI_PDF)
    assert len(document.pages) == 7
    assert document.doi == "10.1136/pgmj.2009.089987"
    assert {"abstract", "methods", "results", "discussion", "references"} <= set(document.sections_found())
    assert "12.88 g/l" in document.text_of(("abstract",), 10_000)


def test_doi_in_cite_box_after_references_is_found_but_reference_dois_are_not() -> None:
    assert read_pdf(DVT_PDF).doi == "10.1186/1752-2897-4-1"


def test_paper_without_doi_gets_a_hash_study_id() -> None:
    document = read_pdf(NITRATE_PDF)
    assert document.doi is None
    assert document.study_id == f"sha256:{document.sha256[:16]}"


def test_manuscript_line_numbers_are_stripped() -> None:
    abstract = read_pdf(NITRATE_PDF).text_of(("abstract",), 5_000)
    assert "Beetroot juice\ndid not influence resting" in abstract
    assert " 69\n" not in abstract


def test_table_rows_ending_in_numbers_are_not_taken_for_line_numbers() -> None:
    table = "\n".join(f"Study {name} 2005 China {n}" for name, n in zip("ABCDEFGHIJKLMNOPQRSTUVWXY", range(13, 99, 3)))
    assert strip_line_numbers([table]) == [table]


def test_wrong_metadata_title_is_not_trusted() -> None:
    # The nitrate manuscript's PDF metadata names another paper entirely.
    assert read_pdf(NITRATE_PDF).title is None
    assert read_pdf(DVT_PDF).title.startswith("Complications related to deep venous thrombosis")


@pytest.mark.parametrize(
    ("line", "section"),
    [
        ("METHODS", "methods"),
        ("2. METHODS and MATERIALS", "methods"),
        ("4. DISCUSSION", "discussion"),
        ("Results:", "results"),
        ("REFERENCES", "references"),
        ("Summary estimates", None),
        ("Methods are", None),
    ],
)
def test_headings(line: str, section: str | None) -> None:
    assert heading_of(line) == section


def test_summary_label_in_a_table_does_not_reopen_the_abstract() -> None:
    spans = split_sections(["Abstract\ntext", "Methods\nhow\nSummary\nestimate 1.2"])
    assert [span.section for span in spans] == ["abstract", "methods"]


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("encrypted_user_password_libreoffice.pdf", InputError, "encrypted and needs a password"),
        ("not_a_pdf_corrupted.pdf", InputError, "not a PDF"),
        ("blank_single_page.pdf", NoTextLayerError, "no text layer"),
        ("scanned_image_only_no_text.pdf", NoTextLayerError, "run OCR first"),
        ("invisible_text_layer.pdf", NoTextLayerError, "no text layer"),
        ("malformed_array_abrupt_ending.pdf", InputError, "too little to be a study"),
    ],
)
def test_bad_pdfs_are_refused_with_their_reason(name: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        read_pdf(BAD / name)
    assert name in str(caught.value)
    assert "\n" not in str(caught.value)


def test_long_document_is_read_whole() -> None:
    assert len(read_pdf(BAD / "long_117_pages_geotopo.pdf").pages) == 117


def test_empty_and_truncated_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_pdf(empty)
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(HPYLORI_PDF.read_bytes()[:3000])
    with pytest.raises(InputError, match="truncated.pdf"):
        read_pdf(truncated)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_pdf(tmp_path / "nope.pdf")
    with pytest.raises(InputError, match="folder"):
        read_pdf(tmp_path)


def test_glyph_names_instead_of_words_is_an_unreadable_text_layer(tmp_path: Path) -> None:
    glyphs = " ".join(["/two.tnum/seven.tnum", "/T/h/e.alt", "/one.tnum/zero.tnum"] * 200)
    path = tmp_path / "glyphs.pdf"
    path.write_bytes(make_pdf([glyphs[:3000], glyphs[:3000]]))
    with pytest.raises(NoTextLayerError, match="unreadable text layer"):
        read_pdf(path)


def test_garbled_share_of_real_text_is_low() -> None:
    assert garbled_share(" ".join(read_pdf(HPYLORI_PDF).pages)) < 0.01


def test_a_page_that_fails_is_reported_and_skipped() -> None:
    extracted = ExtractedPages(
        texts=[PAPER_LIKE_TEXT, None, PAPER_LIKE_TEXT],
        problems=[PageProblem(page=2, problem="PdfReadError: broken content stream")],
        metadata={},
    )
    document = build_document("partly-broken.pdf", b"%PDF-1.4", extracted)
    assert document.pages[1] == ""
    assert document.problems[0].page == 2
    assert "walk lowers blood pressure" in document.text_of(("abstract",), 10_000)


def test_pdfium_is_the_default_and_pypdf_the_fallback_for_a_failing_page() -> None:
    from pipeline.sources.pdf import FallbackExtractor, PdfiumExtractor, PypdfExtractor, default_extractor

    class BrokenOnPage2:
        name = "broken"

        def extract(self, data: bytes, file_name: str) -> ExtractedPages:
            real = PdfiumExtractor().extract(data, file_name)
            texts = list(real.texts)
            texts[1] = None
            return ExtractedPages(texts, [PageProblem(page=2, problem="boom")], real.metadata)

    assert default_extractor().name == "pdfium+pypdf"
    data = HPYLORI_PDF.read_bytes()
    merged = FallbackExtractor(BrokenOnPage2(), PypdfExtractor()).extract(data, HPYLORI_PDF.name)
    assert merged.problems == [] and "Quality assessment" in merged.texts[1]


def test_glyph_names_from_the_first_extractor_are_replaced_by_the_second() -> None:
    from pipeline.sources.pdf import FallbackExtractor, PdfiumExtractor

    class GlyphNames:
        name = "glyphs"

        def extract(self, data: bytes, file_name: str) -> ExtractedPages:
            real = PdfiumExtractor().extract(data, file_name)
            return ExtractedPages(["/two.tnum/seven.tnum " * 50, *list(real.texts[1:])], [], real.metadata)

    merged = FallbackExtractor(GlyphNames(), PdfiumExtractor()).extract(HPYLORI_PDF.read_bytes(), HPYLORI_PDF.name)
    assert merged.texts[0].startswith("Iron deficiency anaemia")


def test_line_numbers_displaced_into_the_line_are_removed() -> None:
    lines = [f"{n} line of text here" for n in range(11, 40)]
    lines[5] = "(NO3"
    lines.insert(6, "- 16 ) ingestion appears")
    [cleaned] = strip_line_numbers(["\n".join(lines)])
    assert "- ) ingestion appears" in cleaned and "\n1 line" not in cleaned and cleaned.startswith("line of text")


def test_a_paper_without_content_headings_is_sent_whole() -> None:
    spans = split_sections(["A Title\nSome Journal\n" + "The text of the paper goes on. " * 200, "More text. " * 100])
    from pipeline.sources.pdf import Document

    document = Document("x.pdf", "0" * 64, ["", ""], spans, None, None)
    sent = document.text_of(("front", "abstract", "methods", "results"), 100_000)
    assert "More text." in sent and len(sent) > 5000  # not just the first 3000 characters of front matter


def test_a_file_the_first_parser_cannot_open_goes_to_the_second() -> None:
    from pipeline.sources.pdf import FallbackExtractor, PypdfExtractor

    class CannotOpen:
        name = "cannot-open"

        def extract(self, data: bytes, file_name: str) -> ExtractedPages:
            raise InputError(f"{file_name}: the PDF is damaged")

    extracted = FallbackExtractor(CannotOpen(), PypdfExtractor()).extract(HPYLORI_PDF.read_bytes(), HPYLORI_PDF.name)
    assert len(extracted.texts) == 7 and "Helicobacter" in extracted.texts[0]
    with pytest.raises(InputError, match="encrypted"):
        FallbackExtractor(PypdfExtractor(), CannotOpen()).extract(
            (BAD / "encrypted_user_password_libreoffice.pdf").read_bytes(), "locked.pdf"
        )
