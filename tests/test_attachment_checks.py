"""What a file is, decided from its bytes (chat/files/checks.py): every type Claude reads is
taken, with its metadata stripped; every lie, oversize, corrupt or hostile file is refused with
a reason a person can act on."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image
from pypdf import PdfWriter

from chat.files.checks import AttachmentRefused, check_file, clean_ids, clean_name
from chat.testing.files import (
    HTML_PAGE,
    SVG_IMAGE,
    bomb_png,
    image_bytes,
    pdf_bytes,
    truncated_png,
)


@pytest.mark.parametrize(
    ("format_", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_each_image_type_is_known_by_its_bytes_and_re_encoded_in_it(
    format_: str, media_type: str
) -> None:
    # The name and the declared type say nothing true: the bytes decide.
    checked = check_file("picture", image_bytes(40, 30, format_=format_), "application/x-foo")
    assert (checked.kind, checked.media_type) == ("image", media_type)
    assert (checked.width, checked.height) == (40, 30)
    assert Image.open(io.BytesIO(checked.data)).format == format_
    assert Image.open(io.BytesIO(checked.thumbnail)).format == "WEBP"
    assert checked.tokens == 2  # 40 x 30 / 750, rounded up


def test_a_jpeg_named_png_is_taken_as_the_jpeg_it_is() -> None:
    checked = check_file("photo.png", image_bytes(format_="JPEG"), "image/png")
    assert checked.media_type == "image/jpeg"
    assert checked.extension == "jpg"


def test_an_image_loses_its_metadata_and_is_stored_upright() -> None:
    photo = image_bytes(60, 20, format_="JPEG", exif_comment="Taken at 12 Home Street")
    assert b"Home Street" in photo
    checked = check_file("photo.jpg", photo)
    assert b"Home Street" not in checked.data
    assert b"Secret Camera" not in checked.data
    assert not Image.open(io.BytesIO(checked.data)).getexif()
    # An EXIF orientation (rotated 90°) is applied, then dropped.
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 20)).save(rotated, "JPEG", exif=exif.tobytes())
    upright = check_file("r.jpg", rotated.getvalue())
    assert (upright.width, upright.height) == (20, 60)


def test_a_png_with_text_chunks_after_its_image_data_is_stored_without_them() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(1)</script>")
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    smuggled = out.getvalue() + b"<html>trailing payload</html>"
    checked = check_file("x.png", smuggled)
    assert b"script" not in checked.data
    assert b"trailing payload" not in checked.data


def test_a_pdf_is_a_document_with_its_pages_counted_and_its_bytes_kept() -> None:
    pdf = pdf_bytes(3)
    checked = check_file("spec.pdf", pdf, "application/pdf")
    assert (checked.kind, checked.media_type, checked.pages) == ("document", "application/pdf", 3)
    assert checked.data == pdf
    assert checked.tokens == 3 * 1500


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("notes.md", "text/markdown"),
        ("table.csv", "text/csv"),
        ("main.py", "text/plain"),
        ("Makefile", "text/plain"),
        ("page.html", "text/plain"),  # a page's source is text; it is never served as HTML
        ("drawing.svg", "text/plain"),
    ],
)
def test_utf8_text_is_a_text_file(name: str, media_type: str) -> None:
    data = SVG_IMAGE if name.endswith(".svg") else "päivää, 世界\nline 2\n".encode()
    checked = check_file(name, data)
    assert (checked.kind, checked.media_type) == ("text", media_type)
    assert checked.data == data


def test_a_byte_order_mark_is_dropped_from_text() -> None:
    assert check_file("bom.txt", b"\xef\xbb\xbfhello").data == b"hello"


@pytest.mark.parametrize(
    ("name", "data", "declared", "says"),
    [
        ("x.png", HTML_PAGE, "", "says it is an image, but its content is not"),
        ("x", HTML_PAGE, "image/png", "says it is an image, but its content is not"),
        ("report.pdf", image_bytes(), "", "says it is a PDF, but its content is not"),
        ("x.gif", pdf_bytes(), "", "says it is an image, but its content is not"),
        ("archive.zip", b"PK\x03\x04" + bytes(range(256)), "", "not supported"),
        ("a.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff", "", "not supported"),
        ("latin1.txt", "café".encode("latin-1"), "", "not supported"),
        ("nul.txt", b"text\x00with a NUL", "", "not supported"),
        ("empty.txt", b"", "", "is empty"),
        ("blank.txt", b"  \n\t ", "", "only blank space"),
        ("cut.png", truncated_png(), "", "could not be read as an image"),
        ("bomb.png", bomb_png(), "", "too many pixels"),
        ("bad.pdf", b"%PDF-1.7\nthis is not really a PDF", "", "could not be read as a PDF"),
    ],
)
def test_a_bad_file_is_refused_saying_why(name: str, data: bytes, declared: str, says: str) -> None:
    with pytest.raises(AttachmentRefused, match=says) as refused:
        check_file(name, data, declared)
    assert refused.value.status == 400


def test_an_encrypted_pdf_is_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=100, height=100)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(AttachmentRefused, match="encrypted"):
        check_file("locked.pdf", out.getvalue())


def test_a_pdf_of_more_pages_than_claude_reads_is_refused() -> None:
    with pytest.raises(AttachmentRefused, match="101 pages"):
        check_file("long.pdf", pdf_bytes(101))


def test_too_large_is_413_and_said_in_megabytes(settings: object) -> None:
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1024  # type: ignore[attr-defined]
    with pytest.raises(
        AttachmentRefused, match=r"big\.txt is 2\.0 KB; files can be at most 1\.0 KB"
    ) as refused:
        check_file("big.txt", b"a" * 2048)
    assert refused.value.status == 413
    assert refused.value.error_type == "request_too_large"


def test_a_zip_that_is_also_named_docx_is_still_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    with pytest.raises(AttachmentRefused, match="not supported"):
        check_file("letter.docx", out.getvalue())


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/photo.png", "photo.png"),
        ("..", "file"),
        (".htaccess", "htaccess"),
        ("a\x00b\x1b[31mred\u202egnp.exe", "ab[31mredgnp.exe"),
        ("  spaced \t  out .txt ", "spaced out .txt"),
        ("", "file"),
        (None, "file"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_names_are_cleaned_for_showing_and_never_a_path(given: object, shown: str) -> None:
    assert clean_name(given) == shown


def test_ids_from_a_frame_are_ids_in_order_once_and_at_most_the_limit(settings: object) -> None:
    a, b = "9b0d3f3e-5a43-4d55-9d0a-0a1b2c3d4e5f", "1c9a8e7d-0000-4000-8000-000000000001"
    assert [str(i) for i in clean_ids([a, b, a])] == [a, b]
    assert [str(i) for i in clean_ids(a)] == [a]  # htmx sends one hidden input as a string
    assert clean_ids(None) == clean_ids("") == clean_ids([]) == []
    for bad in (["../x"], [1], [{"id": a}], "not-an-id"):
        with pytest.raises(AttachmentRefused, match="not recognised"):
            clean_ids(bad)
    settings.CHAT_MAX_ATTACHMENTS = 1  # type: ignore[attr-defined]
    with pytest.raises(AttachmentRefused, match="at most 1 files; this one has 2"):
        clean_ids([a, b])
