"""Image inputs for vision models: data: URIs are checked; http(s) URLs only for allow-listed hosts."""

from __future__ import annotations

import base64
import binascii
import re
import string
from urllib.parse import urlsplit

from django.conf import settings

from gateway import errors

# Leading bytes of each accepted image type (None: any byte), so a declared type cannot hide another payload.
SIGNATURES: dict[str, tuple[tuple[int | None, ...], ...]] = {
    "image/png": (tuple(b"\x89PNG\r\n\x1a\n"),),
    "image/jpeg": (tuple(b"\xff\xd8\xff"),),
    "image/gif": (tuple(b"GIF87a"), tuple(b"GIF89a")),
    "image/webp": ((*b"RIFF", None, None, None, None, *b"WEBP"),),  # RIFF, the file's size, WEBP
}
_BASE64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
_ANY_GROUPS = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"


def _starts_with(data: bytes, signature: tuple[int | None, ...]) -> bool:
    return len(data) >= len(signature) and all(byte is None or data[i] == byte for i, byte in enumerate(signature))


def _check_data_uri(url: str, param: str) -> None:
    header, comma, payload = url.partition(",")
    media_type = header[5:].split(";")[0].lower()
    if not comma or ";base64" not in header:
        raise errors.invalid("Image data URIs must be base64: data:image/png;base64,…", param=param)
    if media_type not in SIGNATURES:
        raise errors.invalid(f"Unsupported image type '{media_type}': use one of {', '.join(SIGNATURES)}", param=param)
    if len(payload) * 3 // 4 > settings.MAX_IMAGE_BYTES:
        raise errors.invalid(
            f"Image is larger than {settings.MAX_IMAGE_BYTES} bytes", param=param, code="image_too_large"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid("Image data is not valid base64", param=param) from None
    if not any(_starts_with(data, signature) for signature in SIGNATURES[media_type]):
        raise errors.invalid(f"Image data is not a valid {media_type} file", param=param)


def _check_url(url: str, param: str) -> None:
    if url.startswith("data:"):
        _check_data_uri(url, param)
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise errors.invalid("Image URLs must be data: URIs or http(s) URLs", param=param)
    # The backend would fetch the URL itself: never let a client point it at arbitrary addresses.
    if (parts.hostname or "").lower() not in {h.lower() for h in settings.IMAGE_URL_ALLOWED_HOSTS}:
        raise errors.invalid(
            f"Image URLs from '{parts.hostname}' are not allowed: send the image as a data: URI",
            param=param,
            code="image_url_not_allowed",
        )


def check_messages(messages: list[dict], vision: bool) -> None:
    """Refuse images for non-vision models, and any image that is not safe to pass on."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part_index, part in enumerate(content):
            if part.get("type") != "image_url":
                continue
            param = f"messages[{index}].content[{part_index}].image_url"
            if not vision:
                raise errors.invalid("This model does not accept images: choose a vision model", param=param)
            image = part["image_url"]
            _check_url(image["url"] if isinstance(image, dict) else image, param)


# --- The same rules as a pattern, for the OpenAPI document ---------------------------------------------------------


def _characters(bits: list[int | None]) -> str:
    """A class of the base64 characters whose 6 bits agree with `bits` (None: either)."""
    chosen = [c for i, c in enumerate(_BASE64) if all(b is None or (i >> (5 - k)) & 1 == b for k, b in enumerate(bits))]
    if len(chosen) == 1:
        return re.escape(chosen[0])
    return "[A-Za-z0-9+/]" if len(chosen) == len(_BASE64) else f"[{''.join(chosen)}]"


def _group(bits: list[int | None], count: int) -> str:
    return "".join(_characters(bits[6 * i : 6 * i + 6]) for i in range(count))


def _base64_starting_with(signature: tuple[int | None, ...]) -> str:
    """A pattern of the strict base64 texts whose bytes start with `signature`."""
    bits = [None if byte is None else (byte >> (7 - k)) & 1 for byte in signature for k in range(8)]
    whole, tail = divmod(len(signature), 3)
    head = _group(bits, 4 * whole)
    if not tail:
        return head + _ANY_GROUPS
    last = bits[24 * whole :] + [None] * 24
    # The text goes on past the last group the signature touches, or it ends in that group, padded.
    endings = [_group(last, 4) + _ANY_GROUPS]
    endings += [_group(last, size + 1) + "=" * (3 - size) for size in range(tail, 3)]
    return f"{head}(?:{'|'.join(endings)})"


def url_pattern() -> str:
    """Every image URL _check_url accepts, as one pattern (the OpenAPI document's); the checks above give the
    reasons. Narrower only where it spells things one way: lower case, `;base64` alone, hosts without user."""
    data = [
        f"data:{re.escape(media_type)};base64,(?:{'|'.join(_base64_starting_with(s) for s in signatures)})"
        for media_type, signatures in SIGNATURES.items()
    ]
    hosts = sorted({re.escape(host.lower()) for host in settings.IMAGE_URL_ALLOWED_HOSTS})
    urls = [f"https?://(?:{'|'.join(hosts)})(?::[0-9]+)?(?:[/?#][^\\x00]*)?"] if hosts else []
    return f"^(?:{'|'.join(data + urls)})$"


def url_max_length() -> int:
    """The longest data: URI under MAX_IMAGE_BYTES, by its shortest header (see the size check above)."""
    shortest = min(len(f"data:{media_type};base64,") for media_type in SIGNATURES)
    return shortest + (4 * (settings.MAX_IMAGE_BYTES + 1) - 1) // 3
