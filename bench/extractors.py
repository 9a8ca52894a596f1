"""Compare the PDF text extractors on every paper we have: time, and how much survives.

    python bench/extractors.py [PDF ...]      (default: fixtures/papers/*.pdf and fixtures/bad/long_*.pdf)
    python bench/extractors.py --quick        (one paper)

For each extractor and paper: seconds, characters, numbers found, and how many of the verbatim
quotes in fixtures/scripts/ (written against the papers as printed) are found in its text after
the pipeline's own clean-up and normalisation.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.sources.pdf import PdfiumExtractor, PypdfExtractor, build_document  # noqa: E402
from pipeline.stages.textmatch import locate, numbers_in  # noqa: E402

logging.getLogger("pypdf").setLevel(logging.ERROR)


def script_quotes() -> dict[str, list[tuple[str, int]]]:
    """Quotes of the faithful scripts, by the paper they quote (the script's `source` names it)."""
    by_paper: dict[str, list[tuple[str, int]]] = {}
    for path in sorted((ROOT / "fixtures" / "scripts").glob("*.json")):
        script = json.loads(path.read_text())
        if not isinstance(script, dict) or "model" in script:
            continue  # a list of stance answers (the eval's), or a misbehaving or add-evidence script
        paper = script["source"].rsplit("/", 1)[-1].rstrip(")")
        found: list[tuple[str, int]] = []

        def walk(node: object, found: list[tuple[str, int]] = found) -> None:
            if isinstance(node, dict):
                if set(node) == {"text", "page"}:
                    found.append((node["text"], node["page"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(script["answers"])
        by_paper[paper] = found
    return by_paper


def main(paths: list[Path]) -> None:
    quotes = script_quotes()
    print(f"{'paper':44} {'pages':>5} | {'extractor':8} {'seconds':>8} {'chars':>8} {'numbers':>8} {'quotes':>8}")
    totals: dict[str, list[float]] = {}
    for path in paths:
        data = path.read_bytes()
        wanted = quotes.get(path.name, [])
        for extractor in (PypdfExtractor(), PdfiumExtractor()):
            started = time.perf_counter()
            extracted = extractor.extract(data, path.name)
            seconds = time.perf_counter() - started
            try:
                document = build_document(path.name, data, extracted)
                pages = document.pages
            except Exception:
                pages = [t or "" for t in extracted.texts]
            text = "\n".join(pages)
            grounded = sum(1 for quote, page in wanted if locate(quote, pages, page).similarity == 100.0)
            total = totals.setdefault(extractor.name, [0.0, 0, 0, 0])
            total[0] += seconds
            total[1] += len(numbers_in(text))
            total[2] += grounded
            total[3] += len(wanted)
            shown = f"{grounded}/{len(wanted)}" if wanted else "-"
            print(
                f"{path.name[:44]:44} {len(pages):>5} | {extractor.name:8} {seconds:8.2f} {len(text):8} {len(numbers_in(text)):8} {shown:>8}"
            )
    for name, (seconds, numbers, grounded, wanted) in totals.items():
        print(f"TOTAL {name:8}: {seconds:.2f} s, {numbers} numbers, {grounded}/{wanted} quotes grounded")


if __name__ == "__main__":
    given = [Path(p) for p in sys.argv[1:] if p != "--quick"]
    every = sorted((ROOT / "fixtures" / "papers").glob("*.pdf")) + sorted(
        (ROOT / "fixtures" / "bad").glob("long_*.pdf")
    )
    main(given or (every[:1] if "--quick" in sys.argv else every))
