"""Image inputs for vision models: data: URIs are checked; http(s) URLs only for allow-listed hosts."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from django.conf import settings

from gateway import errors

# Leading bytes of each accepted image type, so a declared type cannot hide another payload.
SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


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
    if not data.startswith(SIGNATURES[media_type]) or (media_type == "image/webp" and data[8:12] != b"WEBP"):
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
