"""What an attached file is, decided from its bytes, and what of it may be stored.

A file is untrusted input, as model output is. Its type comes from its bytes (magic numbers),
never from its name or the type a client declared; a name or declared type that claims an image
or a PDF the bytes are not is refused as a lie (an HTML page called `x.png`). Images are opened
and decoded with Pillow, turned upright and re-encoded, which drops their metadata (EXIF: GPS
position, camera, dates) and anything hidden after the image data. PDFs are read with pypdf
(encrypted or unreadable ones are refused: Claude could not read them either). Text is UTF-8
without NUL bytes. Names are cleaned for showing, and never used as paths.

Pure functions of the bytes: no database, no storage (chat/files/store.py keeps what passes).
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
import uuid
import warnings
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext, gettext_lazy
from PIL import Image, ImageOps, UnidentifiedImageError

Kind = Literal["image", "document", "text"]

#: Image types Claude reads, by Pillow's format name.
IMAGE_TYPES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
PDF_TYPE = "application/pdf"
#: Text files are stored and served as plain text; a few keep a more telling type for the API.
TEXT_TYPES_BY_EXTENSION = {"md": "text/markdown", "markdown": "text/markdown", "csv": "text/csv"}
TEXT_TYPE = "text/plain"

#: What a name's extension claims the file is (only claims the bytes can belie).
_CLAIMS_BY_EXTENSION: dict[str, Kind] = {
    "png": "image",
    "jpg": "image",
    "jpeg": "image",
    "jpe": "image",
    "gif": "image",
    "webp": "image",
    "pdf": "document",
}

#: Anthropic's limits on an image: 8000 px on a side, 5 MB (base64) per image.
MAX_IMAGE_SIDE = 8000
MAX_IMAGE_BYTES = 5 * 1024 * 1024 * 3 // 4
#: Images larger than this many pixels are not decoded at all (a decompression bomb).
MAX_IMAGE_PIXELS = 64_000_000
#: The most bytes of files one request may carry: Anthropic takes requests of up to 32 MB, and
#: base64 makes 20 MB of files 26.7 MB, which leaves room for the conversation's text. A
#: message's files together are held to it, and older turns' files are left out of a request
#: past it (chat/replies/context.py).
MAX_REQUEST_FILE_BYTES = 20 * 1024 * 1024
#: Anthropic reads PDFs of up to 100 pages.
MAX_PDF_PAGES = 100
THUMBNAIL_SIDE = 320
NAME_CHARS = 120

#: About what a file costs in input tokens: an image is scaled to about 1.15 megapixels by
#: the API (1,600 tokens at most; width x height / 750 below that); a PDF page is read as text
#: and as an image; text as any text (about three characters a token, chat/replies/context.py).
IMAGE_MAX_TOKENS = 1600
PDF_TOKENS_PER_PAGE = 1500

SUPPORTED = gettext_lazy("images (PNG, JPEG, GIF, WebP), PDFs and UTF-8 text files")


class AttachmentRefused(ValueError):
    """A file (or a set of files) that is not accepted; nothing was stored. The message says
    why, for every door to show as it is; `status` is the HTTP status an API answers with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    @property
    def error_type(self) -> str:
        """The JSON error's `type` (Anthropic's names for the same refusals)."""
        return {413: "request_too_large", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error"
        )


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """A file that passed: what is stored, and what is known of it."""

    name: str
    kind: Kind
    media_type: str
    data: bytes
    """The bytes to store: an image's re-encoded, anything else's as given."""
    extension: str
    """For the stored file's name (from the type, never from the user's name)."""
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    thumbnail: bytes = b""
    """A small WebP of an image, for the bubbles."""
    tokens: int = 0


def clean_name(name: object) -> str:
    """A name fit for showing: its last path part, no control or format characters, no
    leading dots, at most NAME_CHARS characters (the extension kept); "file" if nothing is left.
    Never a path: it is shown and sent as a download's name, never used to store the file."""
    text = unicodedata.normalize("NFC", name if isinstance(name, str) else "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(
        " " if unicodedata.category(c) in ("Zs", "Zl", "Zp") else c
        for c in text
        if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    text = " ".join(text.split()).lstrip(".").strip()
    if len(text) > NAME_CHARS:
        stem, dot, extension = text.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            text = stem[: NAME_CHARS - len(extension) - 1].rstrip() + "." + extension
        else:
            text = text[:NAME_CHARS].rstrip()
    return text or "file"


def check_count(count: int) -> None:
    """Refuse more files than a message may carry."""
    limit = settings.CHAT_MAX_ATTACHMENTS
    if count > limit:
        raise AttachmentRefused(
            gettext(
                "A message can carry at most %(limit)s files; this one has %(count)s. Remove some."
            )
            % {"limit": limit, "count": count},
            status=400,
        )


def clean_ids(values: object) -> list[uuid.UUID]:
    """The attachment ids a door was sent (a list, or one id as htmx sends a single value), in
    order, each once; AttachmentRefused for anything that is not an id, or too many."""
    if values is None or values == "" or values == []:
        return []
    items = values if isinstance(values, list) else [values]
    ids: list[uuid.UUID] = []
    for item in items:
        try:
            value = uuid.UUID(item) if isinstance(item, str) else None
        except ValueError:
            value = None
        if value is None:
            raise AttachmentRefused(
                gettext("An attachment was not recognised: attach the file again.")
            )
        if value not in ids:
            ids.append(value)
    check_count(len(ids))
    return ids


def check_total(sizes: list[int]) -> None:
    """Refuse files that together would not fit in one request to Claude (413)."""
    total = sum(sizes)
    if total > MAX_REQUEST_FILE_BYTES:
        raise AttachmentRefused(
            gettext(
                "These files come to %(total)s together; one message's files can be at most "
                "%(limit)s together (Anthropic's request limit). Send some with the next message."
            )
            % {"total": size_text(total), "limit": size_text(MAX_REQUEST_FILE_BYTES)},
            status=413,
        )


def size_text(size: int) -> str:
    """`2.0 KB`, `10.0 MB` (Django's filesizeformat, with a plain space for the terminal)."""
    return str(filesizeformat(size)).replace("\xa0", " ")


def check_size(name: str, size: int) -> None:
    """Refuse an empty file, or one over CHAT_MAX_ATTACHMENT_BYTES (before reading it all)."""
    limit = settings.CHAT_MAX_ATTACHMENT_BYTES
    if size == 0:
        raise AttachmentRefused(
            gettext("%(name)s is empty: there is nothing to attach.") % {"name": name}
        )
    if size > limit:
        raise AttachmentRefused(
            gettext("%(name)s is %(size)s; files can be at most %(limit)s.")
            % {"name": name, "size": size_text(size), "limit": size_text(limit)},
            status=413,
        )


def check_file(name: object, data: bytes, declared_type: object = "") -> CheckedFile:
    """The file as it will be stored, or AttachmentRefused saying why not."""
    shown = clean_name(name)
    check_size(shown, len(data))
    claim = _claimed_kind(shown, declared_type)
    detected = _detect(data)
    if detected in IMAGE_TYPES.values():
        checked = _check_image(shown, data)
    elif detected == PDF_TYPE:
        checked = _check_pdf(shown, data)
    elif detected == TEXT_TYPE:
        checked = _check_text(shown, data)
    else:
        checked = None
    if claim is not None and (checked is None or checked.kind != claim):
        if claim == "image":
            text = gettext(
                "%(name)s says it is an image, but its content is not: refused. "
                "Attach %(supported)s."
            )
        else:
            text = gettext(
                "%(name)s says it is a PDF, but its content is not: refused. Attach %(supported)s."
            )
        raise AttachmentRefused(text % {"name": shown, "supported": SUPPORTED})
    if checked is None:
        raise AttachmentRefused(
            gettext("%(name)s: this type of file is not supported. Attach %(supported)s.")
            % {"name": shown, "supported": SUPPORTED}
        )
    return checked


def _claimed_kind(name: str, declared_type: object) -> Kind | None:
    """The kind a name or a declared media type claims, where the bytes could belie it."""
    declared = declared_type.split(";")[0].strip().lower() if isinstance(declared_type, str) else ""
    if declared.startswith("image/"):
        return "image"
    if declared == PDF_TYPE:
        return "document"
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return _CLAIMS_BY_EXTENSION.get(extension)


def _detect(data: bytes) -> str | None:
    """The media type the first bytes say, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return PDF_TYPE
    if _is_text(data):
        return TEXT_TYPE
    return None


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_image(name: str, data: bytes) -> CheckedFile:
    unreadable = AttachmentRefused(
        gettext("%(name)s could not be read as an image (it may be damaged).") % {"name": name}
    )
    with warnings.catch_warnings():
        # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that: both are refusals.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                format_ = probe.format or ""
                if format_ not in IMAGE_TYPES:
                    raise unreadable
                if probe.width * probe.height > MAX_IMAGE_PIXELS:
                    raise _too_many_pixels(name, probe.width, probe.height)
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise _too_many_pixels(name, 0, 0) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise unreadable from None
    with image:
        encoded, width, height = _reencode(image, format_)
        thumbnail = _thumbnail(image)
    tokens = min(IMAGE_MAX_TOKENS, math.ceil(width * height / 750))
    return CheckedFile(
        name=name,
        kind="image",
        media_type=IMAGE_TYPES[format_],
        data=encoded,
        extension=format_.lower().replace("jpeg", "jpg"),
        width=width,
        height=height,
        thumbnail=thumbnail,
        tokens=max(1, tokens),
    )


def _too_many_pixels(name: str, width: int, height: int) -> AttachmentRefused:
    size = f" ({width} x {height})" if width else ""
    return AttachmentRefused(
        gettext("%(name)s has too many pixels%(size)s: at most %(limit)s megapixels.")
        % {"name": name, "size": size, "limit": MAX_IMAGE_PIXELS // 1_000_000}
    )


def _reencode(image: Image.Image, format_: str) -> tuple[bytes, int, int]:
    """The image upright, at most MAX_IMAGE_SIDE on a side and MAX_IMAGE_BYTES, re-encoded in
    its own format with no metadata (Pillow writes only what it is given: no EXIF, no ICC
    profile, no text chunks). An animated GIF or WebP keeps its frames."""
    animated = getattr(image, "n_frames", 1) > 1 and format_ in ("GIF", "WEBP")
    upright = image if animated else ImageOps.exif_transpose(image)
    scale = min(1.0, MAX_IMAGE_SIDE / max(upright.width, upright.height))
    for _ in range(6):
        frame = upright
        if scale < 1.0:
            size = (max(1, int(upright.width * scale)), max(1, int(upright.height * scale)))
            frame = upright.resize(size, Image.Resampling.LANCZOS)
            animated = False  # a scaled animation keeps its first frame
        encoded = _encode(frame, format_, animated=animated)
        if len(encoded) <= MAX_IMAGE_BYTES:
            return encoded, frame.width, frame.height
        scale *= max(0.3, math.sqrt(MAX_IMAGE_BYTES / len(encoded)) * 0.9)
    raise AttachmentRefused(
        gettext("The image is too large to send, even scaled down."), status=413
    )


def _encode(image: Image.Image, format_: str, *, animated: bool) -> bytes:
    out = io.BytesIO()
    if format_ == "JPEG":
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        rgb.save(out, "JPEG", quality=90)
    elif format_ == "PNG":
        fit = image if image.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16") else None
        (fit or image.convert("RGBA")).save(out, "PNG")
    elif format_ == "GIF":
        image.save(out, "GIF", save_all=animated)
    else:
        fit = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
        fit.save(out, "WEBP", quality=90, save_all=animated)
    return out.getvalue()


def _thumbnail(image: Image.Image) -> bytes:
    small = ImageOps.exif_transpose(image)  # (a copy: of the first frame of an animation)
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    small.convert("RGBA" if "A" in small.getbands() or small.mode == "P" else "RGB").save(
        out, "WEBP", quality=80
    )
    return out.getvalue()


def _check_pdf(name: str, data: bytes) -> CheckedFile:
    from pypdf import PdfReader  # (its import takes a moment: only when a PDF comes)
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise AttachmentRefused(
                gettext("%(name)s is encrypted: Claude cannot read it. Attach it unlocked.")
                % {"name": name}
            )
        pages = len(reader.pages)
    except AttachmentRefused:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError):
        raise AttachmentRefused(
            gettext("%(name)s could not be read as a PDF (it may be damaged).") % {"name": name}
        ) from None
    if pages == 0:
        raise AttachmentRefused(gettext("%(name)s has no pages.") % {"name": name})
    if pages > MAX_PDF_PAGES:
        raise AttachmentRefused(
            gettext("%(name)s has %(pages)s pages; Claude reads PDFs of at most %(limit)s pages.")
            % {"name": name, "pages": pages, "limit": MAX_PDF_PAGES}
        )
    return CheckedFile(
        name=name,
        kind="document",
        media_type=PDF_TYPE,
        data=data,
        extension="pdf",
        pages=pages,
        tokens=pages * PDF_TOKENS_PER_PAGE,
    )


def _check_text(name: str, data: bytes) -> CheckedFile:
    text = data.decode("utf-8-sig")
    if not text.strip():
        raise AttachmentRefused(
            gettext("%(name)s holds only blank space: there is nothing to attach.") % {"name": name}
        )
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return CheckedFile(
        name=name,
        kind="text",
        media_type=TEXT_TYPES_BY_EXTENSION.get(extension, TEXT_TYPE),
        data=text.encode(),  # without a byte order mark
        extension="txt",
        tokens=(len(text) + 2) // 3,
    )
