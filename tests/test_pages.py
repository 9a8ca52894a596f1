"""Issue 17: each quote on its page. The paper's PDF kept once in the store, the quote's offsets
mapped back to PDFium's characters, the page rendered with the quote highlighted (the web page,
and PNG files for the terminal), an ungrounded quote's nearest passage, an unfound number's
nearest number, and records stored before PDFs were kept."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pypdfium2 as pdfium
from click.testing import CliRunner
from conftest import RUNS, claims
from PIL import Image
from starlette.testclient import TestClient
from test_review import stored

from pipeline.llm.recording import load_recording, recorded_pdf
from pipeline.review import pages
from pipeline.sources.pdf import read_pdf
from pipeline.team.store import Store
from pipeline.web import create_app

SITE = "http://127.0.0.1:8000"


def paper_of(name: str) -> tuple[Path, list[str]]:
    recording, _ = load_recording(RUNS / name)
    pdf = recorded_pdf(RUNS / name, recording)
    return pdf, read_pdf(pdf).pages


def pdfium_boxes(pdf: Path, page: int, phrase: str) -> list[tuple[float, float, float, float]]:
    """PDFium's own boxes for the characters of a phrase, found by PDFium's own search."""
    document = pdfium.PdfDocument(str(pdf))
    textpage = document[page - 1].get_textpage()
    found = textpage.search(phrase, match_case=True).get_next()
    assert found is not None, phrase
    index, count = found
    boxes = [textpage.get_charbox(i) for i in range(index, index + count)]
    return [b for b in boxes if b[2] > b[0] and b[3] > b[1]]


def covered(pdf: Path, page: int, phrase: str, boxes: list[pages.Box]) -> float:
    """The share of the phrase's character boxes whose centres lie inside the highlight boxes."""
    document = pdfium.PdfDocument(str(pdf))
    left, bottom, right, top = document[page - 1].get_cropbox()
    chars = pdfium_boxes(pdf, page, phrase)
    inside = 0
    for x0, y0, x1, y1 in chars:
        cx, cy = ((x0 + x1) / 2 - left) / (right - left), (top - (y0 + y1) / 2) / (top - bottom)
        inside += any(b.left <= cx <= b.left + b.width and b.top <= cy <= b.top + b.height for b in boxes)
    return inside / len(chars)


def mark(record_name: str, where: str) -> pages.Highlight:
    _, record = load_recording(RUNS / record_name)
    _, texts = paper_of(record_name)
    found = [m for m in pages.highlights(record, {record.studies[0].reference.study_id: texts}) if m.where == where]
    return found[0]


def test_a_quote_across_a_hyphenated_line_break_gets_a_box_on_each_line() -> None:
    pdf, texts = paper_of("huang-2010-hpylori-iron")
    quote = mark("huang-2010-hpylori-iron", "studies[0].findings[3].quote")
    assert "esti-mates" in quote.found or "esti-mates" in texts[3][quote.start : quote.end]
    boxes = pages.Paper(pdf.read_bytes()).boxes(quote.page, texts[quote.page - 1], quote.start, quote.end)
    assert len(boxes) == 2  # "... the pooled esti-" and "mates for adult ... 22.35 g/l"
    assert boxes[1].top > boxes[0].top
    assert covered(pdf, 4, "lower than the pooled esti", boxes) == 1.0
    assert covered(pdf, 4, "mates for adult individuals of 15.11", boxes) == 1.0
    assert covered(pdf, 4, "The WMD of Hb for children", boxes) == 0.0  # the sentence before is not marked


def test_a_ligature_is_highlighted_whole() -> None:
    pdf, texts = paper_of("huang-2010-hpylori-iron")
    quote = mark("huang-2010-hpylori-iron", "mechanism.steps[0].quote")  # "... H\npylori and iron deficiency"
    [f_box, i_box] = pdfium_boxes(pdf, 5, "deficiency")[2:4]  # the "fi" ligature: one glyph, one box
    assert f_box == i_box
    boxes = pages.Paper(pdf.read_bytes()).boxes(quote.page, texts[4], quote.start, quote.end)
    assert len(boxes) == 2
    assert covered(pdf, 5, "It suggests an association between H", boxes) == 1.0
    assert covered(pdf, 5, "pylori and iron deficiency", boxes) == 1.0


def test_the_review_page_links_each_quote_to_its_page(db: str) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    client = TestClient(create_app(store), base_url=SITE)
    page = client.get(f"/records/{record_id}")
    links = re.findall(rf'href="(/records/{record_id}/quotes/\d+)">show on page', page.text)
    assert len(links) == 9 * 2  # the claim's statement, 5 findings, 3 causal steps: in the list and beside each
    body = page.text[page.text.index("<article>") :]
    beside = re.findall(
        rf'<li[^>]*>([^<]*)(?:<[^a][^>]*>[^<]*)*<a class="show-on-page" href="/records/{record_id}/quotes/6">', body
    )
    assert beside and beside[0].startswith("H pylori infection")  # a causal step's link stands at the step
    quote = client.get(links[6])
    assert "It suggests an association between H" in quote.text and "highlighted in" in quote.text
    assert len(re.findall(r'class="hl quote"', quote.text)) == 2
    image = re.search(r'<img src="([^"]+)"', quote.text).group(1)  # type: ignore[union-attr]
    png = client.get(image)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert client.get(f"/records/{record_id}/quotes/99").status_code == 404
    assert client.get("/papers/0000/pages/1.png").status_code == 404


def test_an_ungrounded_quote_shows_its_nearest_passage_and_a_missing_number_its_nearest_number(db: str) -> None:
    fabricated, wrong_numbers = stored(db, "misbehaving-fabricated-quote", "misbehaving-wrong-numbers")
    client = TestClient(create_app(Store(db)), base_url=SITE)
    text = client.get(f"/records/{fabricated}").text
    assert re.search(
        r"studies\[0\]\.findings\[1\]\.quote</code>: not found; nearest passage, page 1 \(similarity 61\.8\)", text
    )
    nearest = client.get(f"/records/{fabricated}/quotes/2").text
    assert "This quote is not in the paper" in nearest and "similarity 61.8" in nearest
    assert 'class="hl nearest-passage"' in nearest
    numbers = client.get(f"/records/{wrong_numbers}").text
    found = re.findall(
        rf'number not found; nearest number, page (\d+).*?href="/records/{wrong_numbers}/quotes/(\d+)"', numbers
    )
    assert found, "a number_not_found flag links to the nearest number's page"
    page_number, index = found[0]
    shown = client.get(f"/records/{wrong_numbers}/quotes/{index}").text
    assert "The nearest number" in shown and f"page {page_number}" in shown and 'class="hl nearest-number"' in shown


def test_the_pdf_is_kept_once_however_many_records_cite_it(tmp_path: Path) -> None:
    db = tmp_path / "claims.db"
    stored(db, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote", "misbehaving-overstated")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM pdfs").fetchone() == (1,)


def test_a_record_stored_before_pdfs_were_kept_says_so_until_the_pdf_is_added(
    runner: CliRunner, clean_environment: Path, tmp_path: Path
) -> None:
    recording, record = load_recording(RUNS / "huang-2010-hpylori-iron")
    pdf = recorded_pdf(RUNS / "huang-2010-hpylori-iron", recording)
    store = Store(clean_environment)
    store.add(record, source_pages=read_pdf(pdf).pages)  # as before: text, no PDF
    client = TestClient(create_app(store), base_url=SITE)
    assert "PDF is not in the store" in client.get(f"/records/{record.record_id}").text
    quote = client.get(f"/records/{record.record_id}/quotes/0")
    assert quote.status_code == 200 and "claims db add-pdf" in quote.text and "<img" not in quote.text
    stray = tmp_path / "other.pdf"
    stray.write_bytes((RUNS.parent / "papers" / "nutres_dietary_nitrate_crossover_rct_2016.pdf").read_bytes())
    refused = runner.invoke(claims, ["db", "add-pdf", str(stray)])
    assert refused.exit_code == 0 and "no stored record cites this PDF" in refused.output
    added = runner.invoke(claims, ["db", "add-pdf", str(pdf)])
    assert added.exit_code == 0 and f"kept, for {record.record_id}" in added.output
    assert "<img" in client.get(f"/records/{record.record_id}/quotes/0").text


def test_review_show_writes_each_quote_on_its_page_as_png(runner: CliRunner, db: str, tmp_path: Path) -> None:
    [record_id] = stored(db, "misbehaving-fabricated-quote")
    result = runner.invoke(claims, ["review", "show", record_id, "--pages", str(tmp_path / "pages")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "pages").glob("*.png"))
    assert len(files) == 9 and "9 page image(s) written" in result.output
    assert "nearest passage on page 1 (similarity 61.8)" in result.output
    quote = mark("misbehaving-fabricated-quote", "studies[0].findings[0].quote")
    pdf, texts = paper_of("misbehaving-fabricated-quote")
    [box, *_] = pages.Paper(pdf.read_bytes()).boxes(quote.page, texts[0], quote.start, quote.end)
    image = Image.open(files[1]).convert("RGB")
    w, h = image.size
    inside = image.getpixel((int((box.left + box.width / 2) * w), int((box.top + 0.1 * box.height) * h)))
    assert inside[2] < inside[0] - 40  # the yellow highlight is drawn there (blue channel low)
    outside = image.getpixel((int((box.left + box.width / 2) * w), int((box.top - 3 * box.height) * h)))
    assert not (outside[0] > 200 and outside[2] < 160)  # three lines above: no yellow


def test_offsets_in_the_cleaned_text_map_back_to_pdfiums_characters() -> None:
    raw = "Write to ana@example.org for data.\r\nThe treat\ufffe\r\nment worked 17 \r\nwell in ﬁve."
    stored = "Write to [e-mail] for data.\nThe treat-\nment worked\nwell in ﬁve."
    mapping = pages.align(raw, stored)
    for word in ("Write", "for data", "treat", "ment worked", "well in ﬁve"):
        start = stored.index(word)
        assert [raw[mapping[start + k]] for k in range(len(word))] == list(word)  # type: ignore[index]
    assert raw[mapping[stored.index("-\nment")]] == "\ufffe"  # type: ignore[index]  # the soft hyphen's own box
    assert all(mapping[stored.index("[e-mail]") + k] is None for k in range(len("[e-mail]")))


def test_every_grounded_quote_of_every_bundled_record_is_highlighted_where_pdfium_finds_it() -> None:
    checked = 0
    for folder in sorted(p for p in RUNS.iterdir() if (p / "record.json").exists()):
        recording, record = load_recording(folder)
        pdf = recorded_pdf(folder, recording)
        texts = read_pdf(pdf).pages
        paper = pages.Paper(pdf.read_bytes())
        document = pdfium.PdfDocument(str(pdf))
        sha256 = hashlib.sha256(pdf.read_bytes()).hexdigest()
        for quote in pages.quote_highlights(record):
            if quote.kind != "quote" or record.pdf_sha256(quote.study_id) != sha256:
                continue  # an added study's quote: its PDF is not this recording's
            text = texts[quote.page - 1]
            boxes = paper.boxes(quote.page, text, quote.start, quote.end)
            # the quote's longest line, as PDFium's own search finds it (at any of its occurrences)
            # lines, words split at a line end, and no symbol the text layer spells otherwise (𝑁𝑂3, −)
            segments = re.split(r"\n|(?<=\w)-(?=\w)|[^\x20-\x7e]", text[quote.start : quote.end])
            line = max(segments, key=len).strip()
            searcher = document[quote.page - 1].get_textpage().search(line, match_case=True)
            best = 0.0
            while (found := searcher.get_next()) is not None:
                textpage = document[quote.page - 1].get_textpage()
                left, bottom, right, top = document[quote.page - 1].get_cropbox()
                centres = [
                    (((x0 + x1) / 2 - left) / (right - left), (top - (y0 + y1) / 2) / (top - bottom))
                    for x0, y0, x1, y1 in (textpage.get_charbox(i) for i in range(found[0], found[0] + found[1]))
                    if x1 > x0 and y1 > y0
                ]
                inside = sum(
                    any(b.left <= x <= b.left + b.width and b.top <= y <= b.top + b.height for b in boxes)
                    for x, y in centres
                )
                best = max(best, inside / len(centres))
            assert best == 1.0, (folder.name, quote.where, line)
            checked += 1
    assert checked > 100
