"""Quote pages: how long the first render of a page takes (PDFium to a PNG), and a quote's boxes.

    python bench/pages.py [--width 1000] [--corpus DIR] [--quick]

For every page of the bundled papers (fixtures/papers), from a cold cache: open the paper,
render the page at the review page's width and encode the PNG (what the first visit to a quote
on that page costs; later visits are served from the cache), and map the whole page's text back
to PDFium's character boxes (the most a quote can cost). Prints p50, p95 and the worst, in ms
(target: the first render under 300 ms p95). With --corpus DIR, also how well the stored text's
characters map back to PDFium's over every page of the PDFs in DIR: how many land on a character
that is not theirs (should be 0) and how many get no box (the clean-up wrote them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from pipeline.review import pages  # noqa: E402
from pipeline.review.pages import _characters, align  # noqa: E402
from pipeline.sources.pdf import read_pdf  # noqa: E402


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return f"{name}: p50 {statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms, worst {ordered[-1]:.0f} ms over {len(ordered)} pages"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=pages.PAGE_WIDTH)
    parser.add_argument("--corpus", help="a folder of PDFs to measure the offset mapping on")
    parser.add_argument("--quick", action="store_true", help="the first two pages of one paper")
    args = parser.parse_args()
    renders, boxes = [], []
    papers = sorted((ROOT / "fixtures" / "papers").glob("*.pdf"))
    for pdf in papers[:1] if args.quick else papers:
        data, texts = pdf.read_bytes(), read_pdf(pdf).pages
        for number in range(1, min(len(texts), 2 if args.quick else len(texts)) + 1):
            started = time.perf_counter()
            cache = pages.PageCache()  # cold: nothing opened, nothing rendered
            paper = cache.paper(pdf.name, lambda data=data: data)
            cache.image(pdf.name, paper, number, args.width)
            renders.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            paper.boxes(number, texts[number - 1], 0, len(texts[number - 1]))
            boxes.append((time.perf_counter() - started) * 1000)
            cache.close()
    print(summary(f"first render of a page at {args.width} px (open, render, PNG)", renders))
    print(summary("boxes of a whole page's text", boxes))
    if args.corpus:
        mapping_accuracy(sorted(Path(args.corpus).glob("*.pdf")))


def mapping_accuracy(pdfs: list[Path]) -> None:
    import pypdfium2 as pdfium

    total = wrong = unmapped = 0
    for pdf in pdfs:
        texts = read_pdf(pdf).pages
        document = pdfium.PdfDocument(str(pdf))
        for number, text in enumerate(texts):
            characters, _ = _characters(document[number].get_textpage())
            for position, index in enumerate(align(characters, text)):
                if text[position].isspace():
                    continue
                total += 1
                if index is None:
                    unmapped += 1
                elif characters[index] != text[position] and (characters[index], text[position]) != ("\ufffe", "-"):
                    wrong += 1
        document.close()
    print(
        f"{len(pdfs)} papers, {total:,} characters (spaces aside): {wrong} mapped to a character not theirs, "
        f"{unmapped} without a box"
    )


if __name__ == "__main__":
    main()
