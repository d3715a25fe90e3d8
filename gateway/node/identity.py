"""This node's name (what its samples, its supervisor and its managed backends are recorded under), and which node a
backend runs on."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def node_name() -> str:
    return settings.MONITOR_NODE_NAME or socket.gethostname()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def backend_node(node: str, base_url: str) -> str:
    """The node a backend runs on: the one set on it; else this node when its URL is a loopback one; else none known."""
    return node or (node_name() if base_url and is_loopback(base_url) else "")
