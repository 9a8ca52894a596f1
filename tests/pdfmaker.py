"""Write small, valid PDFs with given text per page, for edge cases no real file covers here
(text that is glyph names, a page that cannot be parsed). Real papers come from fixtures/."""

from __future__ import annotations

import zlib


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str], metadata: dict[str, str] | None = None) -> bytes:
    objects: list[bytes] = []
    kids = []
    font_id = 3 + 2 * len(pages)
    for index, text in enumerate(pages):
        page_id, content_id = 3 + 2 * index, 4 + 2 * index
        kids.append(f"{page_id} 0 R")
        lines = text.splitlines() or [""]
        stream = "BT /F1 10 Tf 50 780 Td 12 TL " + " ".join(f"({_escape(line)}) '" for line in lines) + " ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {content_id} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode())
    catalog = b"<< /Type /Catalog /Pages 2 0 R >>"
    tree = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    all_objects = [catalog, tree, *objects, font]
    info = ""
    if metadata:
        entries = " ".join(f"/{key} ({_escape(value)})" for key, value in metadata.items())
        all_objects.append(f"<< {entries} >>".encode("latin-1", "replace"))
        info = f" /Info {len(all_objects)} 0 R"
    return _write(all_objects, info)


def make_bomb_pdf(decompressed_bytes: int) -> bytes:
    """One page whose drawing instructions are `decompressed_bytes` long but compress to a few
    hundred KB (a decompression bomb): what a hostile or broken file can do to a PDF reader."""
    line = b"BT /F1 10 Tf 72 700 Td (Results of the trial were as follows) Tj ET\n"
    stream = zlib.compress(line * (decompressed_bytes // len(line)), 6)
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
    return _write(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            page,
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ],
        "",
    )


def _write(all_objects: list[bytes], info: str) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(all_objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(all_objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(all_objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
