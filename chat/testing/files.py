"""Files to attach, made on the spot: images (with metadata to strip), PDFs, text, and the
hostile kinds (an HTML page called `x.png`, a truncated PNG, a decompression bomb). Used by the
tests, the browser tests and the benchmark."""

from __future__ import annotations

import io
import os

from PIL import Image


def image_bytes(
    width: int = 64,
    height: int = 48,
    *,
    format_: str = "PNG",
    color: tuple[int, int, int] = (200, 80, 40),
    exif_comment: str = "",
    noise: bool = False,
) -> bytes:
    """An image; with `exif_comment`, EXIF metadata that says it (and a GPS-like tag), which
    a re-encoded copy must not keep; with `noise`, random pixels (a file that hardly
    compresses: large for its size)."""
    image = (
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        if noise
        else Image.new("RGB", (width, height), color)
    )
    out = io.BytesIO()
    if exif_comment:
        exif = Image.Exif()
        exif[0x010E] = exif_comment  # ImageDescription
        exif[0x0131] = "Secret Camera 3000"  # Software
        image.save(out, format_, exif=exif.tobytes())
    else:
        image.save(out, format_)
    return out.getvalue()


def pdf_bytes(pages: int = 1, *, text: str = "") -> bytes:
    """A PDF of blank pages (pypdf writes it), with `text` in its metadata if given."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if text:
        writer.add_metadata({"/Title": text})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


HTML_PAGE = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG_IMAGE = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def truncated_png() -> bytes:
    """A PNG cut off half-way: its header is right, its data is not all there."""
    whole = image_bytes(200, 200, noise=True)
    return whole[: len(whole) // 2]


def bomb_png(side: int = 20_000) -> bytes:
    """A small PNG that decodes to `side` x `side` pixels (400 megapixels by default)."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()
