"""This node's name: what its samples, its supervisor and its managed backends are recorded under."""

from __future__ import annotations

import socket

from django.conf import settings


def node_name() -> str:
    return settings.MONITOR_NODE_NAME or socket.gethostname()
