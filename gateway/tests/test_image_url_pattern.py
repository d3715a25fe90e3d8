"""The image URL pattern the OpenAPI document shows admits exactly the URLs gateway.images accepts."""

from __future__ import annotations

import base64
import re
from typing import Any

from gateway import errors, images


def accepted(url: str) -> bool:
    try:
        images._check_url(url, "image_url")
    except errors.APIError:
        return False
    return True


def cases() -> list[str]:
    urls = [
        "https://images.example.org/cat.png",
        "http://images.example.org:8080/?size=2#top",
        "https://elsewhere.example.org/cat.png",
        "ftp://images.example.org/cat.png",
        "data:image/png,iVBORw0KGgo=",
        "data:image/bmp;base64,Qk0=",
        "data:image/png;base64,iVBORw0KGgo",  # unpadded
        "data:image/png;base64,iVBO Rw0KGgo=",
    ]
    for media_type, signatures in images.SIGNATURES.items():
        for signature in signatures:
            start = bytes(0x5A if byte is None else byte for byte in signature)
            for extra in range(5):  # every way the base64 text can end after the signature
                data = start + bytes(range(1, extra + 1))
                urls.append(f"data:{media_type};base64,{base64.b64encode(data).decode()}")
                wrong = bytes([data[0] ^ 0x01]) + data[1:]
                urls.append(f"data:{media_type};base64,{base64.b64encode(wrong).decode()}")
            urls.append(f"data:{media_type};base64,{base64.b64encode(start[:-1]).decode()}")  # cut short
    return urls


def test_it_admits_exactly_the_urls_it_accepts(settings: Any) -> None:
    settings.IMAGE_URL_ALLOWED_HOSTS = ["images.example.org"]
    pattern = re.compile(images.url_pattern())
    verdicts = {url: (accepted(url), bool(pattern.fullmatch(url))) for url in cases()}
    assert {url: v for url, v in verdicts.items() if v[0] != v[1]} == {}
    assert sum(ok for ok, _ in verdicts.values()) >= 25  # both sides of the line are tried


def test_it_bounds_data_uris_by_the_image_size(settings: Any) -> None:
    settings.MAX_IMAGE_BYTES = 30
    png = bytes(images.SIGNATURES["image/png"][0])
    largest = f"data:image/png;base64,{base64.b64encode(png + bytes(22)).decode()}"
    assert accepted(largest) and len(largest) <= images.url_max_length()
    too_large = f"data:image/png;base64,{base64.b64encode(png + bytes(25)).decode()}"
    assert not accepted(too_large) and len(too_large) > images.url_max_length()
