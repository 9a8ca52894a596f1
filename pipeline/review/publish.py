"""`claims site DIR`: the approved claims as a static website, built from what `claims export`
publishes (the latest approved version of each claim; drafts, rejected claims and claims with an
unseen retraction or correction notice are left out).

Plain files, no server and no script needed to read a page: a page per claim in the order of the
claim pages we model (from `render.page_blocks`), each quote on a page of its own showing the
PDF page it stands on with the quote highlighted (where the study's licence allows the page to be
shown), a page per study listing the claims that cite it, an index whose search and filters work
in the browser (the whole list is there without them), and an about page. For machines: a
schema.org ClaimReview in JSON-LD on every claim page, the claim's JSON beside its page, and,
with a base URL, canonical links, `sitemap.xml` and an Atom feed.

Builds are incremental: a file whose content is unchanged is not written again (it keeps its
modification time), and the files of a claim that left the export are removed (the site's own
list of what it wrote, `.claims-site.json`, says which).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeline.core.files import write_bytes_atomic
from pipeline.core.models import Certainty, ClaimRecord, Stance
from pipeline.review import pages
from pipeline.review.decisions import approved_versions, stored_sources
from pipeline.review.render import CERTAINTY_MEANING, Approval, licence_name, page_blocks
from pipeline.team.store import HistoryEntry, Store

MANIFEST = ".claims-site.json"
_CERTAINTY_RANK = {Certainty.very_low: 1, Certainty.low: 2, Certainty.moderate: 3, Certainty.high: 4}
_OPEN_LICENCE = re.compile(r"creativecommons\.org|\bcc[- ]?(by|0)\b|public ?domain", re.I)


@dataclass(frozen=True)
class Published:
    record: ClaimRecord
    approval: Approval
    history: list[HistoryEntry]


@dataclass
class BuildReport:
    claims: int = 0
    studies: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    images: int = 0
    notes: list[str] = field(default_factory=list)


def published_claims(store: Store) -> list[Published]:
    """The approved versions with their history, newest approval first."""
    found = [
        Published(record, approval, store.history(record.record_id)) for record, approval in approved_versions(store)
    ]
    return sorted(found, key=lambda p: (p.approval.at, p.record.record_id), reverse=True)


def verdict(record: ClaimRecord) -> str:
    """supported, contradicted or mixed, from the studies' stances (unclear when none takes one)."""
    stances = {study.stance for study in record.studies}
    if Stance.supporting in stances and Stance.contradicting in stances:
        return "mixed"
    if Stance.supporting in stances:
        return "supported"
    if Stance.contradicting in stances:
        return "contradicted"
    return "unclear"


def study_slug(study_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", study_id.lower()).strip("-")[:120] or "study"


def may_show_pages(licence: str | None) -> bool:
    """Whether a study's licence lets its pages be shown as images (Creative Commons, public domain)."""
    return bool(licence and _OPEN_LICENCE.search(licence))


class _Files:
    """Writes only what changed, and remembers what each claim's files were made from: a claim
    whose record, approval, history and site settings are those of the last build is not built
    again (its files are kept as they are). Files of the last build that no longer belong are
    removed."""

    def __init__(self, folder: Path, report: BuildReport):
        self.folder, self.report = folder, report
        self.kept: set[str] = set()
        manifest = folder / MANIFEST
        try:
            before = json.loads(manifest.read_text()) if manifest.is_file() else {}
        except ValueError:
            before = {}
        before = before if isinstance(before, dict) else {}  # a list: the first release's manifest
        self.before_files: set[str] = set(before.get("files", []))
        self.before_claims: dict[str, dict[str, Any]] = before.get("claims", {})
        self.claims: dict[str, dict[str, Any]] = {}
        self.touched: list[str] = []  # the files of the claim being built (shared images included)

    def write(self, relative: str, content: bytes | str) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        target = self.folder / relative
        self.kept.add(relative)
        self.touched.append(relative)
        if target.is_file() and target.read_bytes() == data:
            self.report.unchanged += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
        self.report.written += 1

    def has(self, relative: str) -> bool:
        self.kept.add(relative)
        self.touched.append(relative)
        return (self.folder / relative).is_file()

    def reuse(self, claim_id: str, fingerprint: str) -> dict[str, Any] | None:
        """The last build's entry for an unchanged claim whose files are all still there."""
        entry = self.before_claims.get(claim_id)
        if not entry or entry.get("fingerprint") != fingerprint:
            return None
        if not all((self.folder / name).is_file() for name in entry["files"]):
            return None
        self.kept.update(entry["files"])
        self.claims[claim_id] = entry
        self.report.unchanged += len(entry["files"])
        return entry

    def finish(self) -> None:
        for stale in sorted(self.before_files - self.kept):
            path = (self.folder / stale).resolve()
            if path.is_file() and self.folder.resolve() in path.parents:
                path.unlink()
                self.report.removed += 1
                if path.parent != self.folder.resolve() and not any(path.parent.iterdir()):
                    path.parent.rmdir()  # a claim's folder of quote pages, now empty
        manifest = {"files": sorted(self.kept), "claims": self.claims}
        write_bytes_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=0).encode())


def _templates() -> Environment:
    folder = resources.files("pipeline") / "templates" / "site"
    environment = Environment(loader=FileSystemLoader(str(folder)), autoescape=select_autoescape(default=True))
    environment.filters["urlpart"] = lambda text: url_quote(str(text), safe="")
    return environment


def build_site(store: Store, folder: Path, base_url: str = "", title: str = "Evidence claims") -> BuildReport:
    """Build (or bring up to date) the static site in `folder`."""
    report = BuildReport()
    folder.mkdir(parents=True, exist_ok=True)
    files = _Files(folder, report)
    base = base_url.rstrip("/")
    templates = _templates()
    claims = published_claims(store)
    built = datetime.now(UTC).replace(microsecond=0).isoformat()
    common = {"site_title": title, "base_url": base, "built": built}
    by_study: dict[str, dict[str, Any]] = {}
    entries = []
    cache = pages.PageCache()
    design = _design_hash()
    try:
        for item in claims:
            record = item.record
            for study in record.studies:
                listed = by_study.setdefault(study.reference.study_id, {"reference": study.reference, "claims": []})
                listed["claims"].append(record)
            fingerprint = hashlib.sha256(
                json.dumps(
                    [record.model_dump(mode="json"), item.approval.__dict__, [h.__dict__ for h in item.history]],
                    sort_keys=True,
                ).encode()
                + f"{base}|{title}|{design}".encode()
            ).hexdigest()
            reused = files.reuse(record.record_id, fingerprint)
            if reused is not None:
                entries.append(reused["entry"])
                continue
            files.touched = []
            quotes = _quote_pages(store, cache, item, files, templates, common, report)
            entry = _summary(item)
            entries.append(entry)
            files.write(f"claims/{record.record_id}.json", json.dumps(record.model_dump(mode="json"), indent=2) + "\n")
            files.write(
                f"claims/{record.record_id}.html",
                templates.get_template("claim.html").render(
                    **common,
                    root="../",
                    item=item,
                    record=record,
                    entry=entry,
                    blocks=page_blocks(record, item.approval),
                    quotes=quotes,
                    json_ld=_claim_review(item, base, title),
                    slug=study_slug,
                    certainty_meaning=CERTAINTY_MEANING[record.certainty.certainty.value],
                ),
            )
            files.claims[record.record_id] = {
                "fingerprint": fingerprint,
                "entry": entry,
                "files": sorted(set(files.touched)),
            }
    finally:
        cache.close()
    for study_id, listed in by_study.items():
        files.write(
            f"studies/{study_slug(study_id)}.html",
            templates.get_template("study.html").render(
                **common, root="../", reference=listed["reference"], claims=listed["claims"], slug=study_slug
            ),
        )
    files.write("index.html", templates.get_template("index.html").render(**common, root="", entries=entries))
    files.write("about.html", templates.get_template("about.html").render(**common, root=""))
    files.write("style.css", (resources.files("pipeline") / "templates" / "site" / "style.css").read_text())
    files.write("search.json", json.dumps(entries, ensure_ascii=False, indent=1) + "\n")
    if base:
        files.write("sitemap.xml", _sitemap(base, claims, list(by_study)))
        files.write("feed.xml", _feed(base, title, claims, built))
    else:
        report.notes.append("no --base-url: no canonical links, sitemap.xml or feed.xml (they need absolute addresses)")
    files.finish()
    report.claims, report.studies = len(claims), len(by_study)
    return report


def _design_hash() -> str:
    """The site's templates and style sheet: a change to them builds every claim again."""
    folder = resources.files("pipeline") / "templates" / "site"
    digest = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        digest.update(name.encode() + folder.joinpath(name).read_bytes())
    return digest.hexdigest()


def _summary(item: Published) -> dict[str, Any]:
    record = item.record
    return {
        "id": record.record_id,
        "claim": record.claim.text,
        "verdict": verdict(record),
        "certainty": record.certainty.certainty.value,
        "type": record.claim.type.value,
        "studies": [s.reference.title or s.reference.study_id for s in record.studies],
        "approved": item.approval.at[:10],
        "url": f"claims/{record.record_id}.html",
    }


def _quote_pages(
    store: Store,
    cache: pages.PageCache,
    item: Published,
    files: _Files,
    templates: Environment,
    common: dict[str, Any],
    report: BuildReport,
) -> list[dict[str, Any]]:
    """A page per grounded quote: the PDF page with the quote highlighted where the licence allows
    the page to be shown, else the quote and a link to the source."""
    record = item.record
    sources = stored_sources(store, record)
    marks = pages.highlights(record, {study: document.pages for study, document in sources.items()})
    # each study's pages may be shown when its licence allows and its PDF is stored: asked once a study
    references = {s.reference.study_id: s.reference for s in record.studies}
    showable = {
        study_id: may_show_pages(references[study_id].licence) and store.has_pdf(document.sha256)
        for study_id, document in sources.items()
        if study_id in references
    }
    found = []
    for number, mark in enumerate(m for m in marks if m.kind == "quote"):
        study = next((s for s in record.studies if s.reference.study_id == mark.study_id), record.studies[0])
        document = pages.document_of(record, sources, mark.study_id)
        shown = document is not None and showable.get(study.reference.study_id, False)
        # named by what it shows (the paper, the page, the quote's place), so an unchanged image is
        # never drawn again, claims quoting the same passage share one, and a changed one gets a
        # new name (the old one leaves with the manifest)
        drawn = hashlib.sha256(f"{document.sha256 if document else ''}:{mark.page}:{mark.start}:{mark.end}".encode())
        image = f"pages/{drawn.hexdigest()[:20]}.png"
        if shown and document is not None and not files.has(image):
            paper = cache.paper(document.sha256, functools.partial(store.pdf, document.sha256))
            if paper is not None:
                boxes = paper.boxes(mark.page, document.pages[mark.page - 1], mark.start, mark.end)
                picture = pages.with_highlights(paper.render(mark.page), boxes, pages.COLOURS["quote"])
                files.write(image, pages.png(picture))
                report.images += 1
        quote = {
            "number": number + 1,
            "text": mark.text,
            "page": mark.page,
            "where": mark.where,
            "image": f"../../{image}" if shown else None,
            "licence": licence_name(study.reference.licence) if study.reference.licence else "not stated",
            "source": f"https://doi.org/{study.reference.doi}" if study.reference.doi else None,
            "study": study.reference.title or study.reference.study_id,
        }
        files.write(
            f"claims/{record.record_id}/quote-{number + 1}.html",
            templates.get_template("quote.html").render(**common, root="../../", record=record, quote=quote),
        )
        found.append(quote)
    return found


def _claim_review(item: Published, base: str, title: str) -> str:
    record = item.record
    rank = _CERTAINTY_RANK[record.certainty.certainty]
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "ClaimReview",
        "claimReviewed": record.claim.text,
        "datePublished": item.approval.at[:10],
        "author": {"@type": "Organization", "name": title},
        "reviewRating": {
            "@type": "Rating",
            "ratingValue": rank,
            "bestRating": 4,
            "worstRating": 1,
            "alternateName": f"{verdict(record)}; {record.certainty.certainty.value.replace('_', ' ')} certainty",
        },
        "itemReviewed": {
            "@type": "Claim",
            "appearance": [
                {
                    "@type": "ScholarlyArticle",
                    "name": s.reference.title or s.reference.study_id,
                    **({"sameAs": f"https://doi.org/{s.reference.doi}"} if s.reference.doi else {}),
                }
                for s in record.studies
            ],
        },
    }
    if base:
        data["url"] = f"{base}/claims/{record.record_id}.html"
    # "</" cannot close the script element from inside a JSON string
    return json.dumps(data, ensure_ascii=False, indent=1).replace("</", "<\\/")


def _sitemap(base: str, claims: list[Published], studies: list[str]) -> str:
    urls = [f"{base}/", f"{base}/about.html"]
    urls += [f"{base}/claims/{item.record.record_id}.html" for item in claims]
    urls += [f"{base}/studies/{study_slug(s)}.html" for s in studies]
    body = "".join(f"<url><loc>{_xml(u)}</loc></url>\n" for u in urls)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{body}</urlset>\n'


def _feed(base: str, title: str, claims: list[Published], built: str) -> str:
    updated = claims[0].approval.at if claims else built
    entries = "".join(
        "<entry>"
        f"<title>{_xml(item.record.claim.text)}</title>"
        f'<link href="{_xml(base)}/claims/{item.record.record_id}.html"/>'
        f"<id>{_xml(base)}/claims/{item.record.record_id}.html#v{len(item.history)}</id>"
        f"<updated>{_xml(item.approval.at)}</updated>"
        f"<summary>{_xml(verdict(item.record))}, {_xml(item.record.certainty.certainty.value.replace('_', ' '))} certainty</summary>"
        "</entry>\n"
        for item in claims
    )
    identity = hashlib.sha256(base.encode()).hexdigest()[:16]
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f'<title>{_xml(title)}</title><link href="{_xml(base)}/"/><updated>{_xml(updated)}</updated>'
        f"<id>urn:claims-site:{identity}</id>\n{entries}</feed>\n"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
