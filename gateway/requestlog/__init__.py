"""The request log: one record per API request, from its arrival to its row, and everything that reads the rows.

- `record`: RequestRecord, the life of one request's record (start, identify, close: from the outcomes, once)
- `writer`: the bounded buffer and the thread that writes rows in batches
- `models`: RequestLog, the row (never updated), and how readers join its request's energy facts
- `rows`: a record as a row, a row as JSON
- `usage`, `retention`: aggregates per hour or day, and pruning
- `views`, `urls`, `admin`: /api/logs, /api/usage, /api/activity-logs, and the Django admin
"""

from __future__ import annotations

from gateway.requestlog.record import RequestRecord, in_progress_count
from gateway.requestlog.writer import GROUP, dropped_count, flush, pending_count, stop, submit

__all__ = [
    "GROUP",
    "RequestRecord",
    "dropped_count",
    "flush",
    "in_progress_count",
    "pending_count",
    "stop",
    "submit",
]
