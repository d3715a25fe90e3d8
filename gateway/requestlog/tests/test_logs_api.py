"""GET /api/logs: newest first, filters, cursor pagination, staff or logs-scope keys only, OpenAI-shaped errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from gateway.models import APIKey
from gateway.requestlog.tests.helpers import LogsTestCase, make_row

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class LogsAPITestCase(LogsTestCase):
    def setUp(self) -> None:
        super().setUp()
        make_row(T0, request_id="a", model_used="qwen", status=200, api_key=self.client_key)
        make_row(T0 + timedelta(minutes=1), request_id="b", model_requested="nope", status=404)
        make_row(T0 + timedelta(minutes=2), request_id="c", model_used="gemma", status=503, endpoint="/v1/completions")
        make_row(T0 + timedelta(minutes=3), request_id="d", model_used="qwen", status=429, api_key=self.reader)

    def get(self, query: str = "", **headers: str) -> tuple[int, dict]:
        response = self.client.get(f"/api/logs{query}", **(headers or self.bearer(self.reader_plaintext)))
        return response.status_code, response.json()

    def ids(self, query: str = "") -> list[str]:
        status, body = self.get(query)
        self.assertEqual(status, 200, body)
        return [row["request_id"] for row in body["results"]]

    def test_it_lists_newest_first(self) -> None:
        self.assertEqual(self.ids(), ["d", "c", "b", "a"])

    def test_it_filters(self) -> None:
        self.assertEqual(self.ids("?model=qwen"), ["d", "a"])
        self.assertEqual(self.ids("?model=nope"), ["b"])
        self.assertEqual(self.ids("?status=5xx"), ["c"])
        self.assertEqual(self.ids("?status=404"), ["b"])
        self.assertEqual(self.ids("?endpoint=/v1/completions"), ["c"])
        self.assertEqual(self.ids(f"?key={self.client_key.id}"), ["a"])
        self.assertEqual(self.ids(f"?key={self.reader.prefix}"), ["d"])
        # A prefix made of digits only is still a prefix.
        APIKey.objects.filter(pk=self.client_key.pk).update(prefix="12345678")
        self.assertEqual(self.ids("?key=12345678"), ["a"])
        self.assertEqual(self.ids("?key=nosuchkey"), [])
        self.assertEqual(self.ids("?since=2026-11-01T12:01:00Z&until=2026-11-01T12:03:00Z"), ["c", "b"])
        # An unencoded "+00:00" arrives as " 00:00".
        self.assertEqual(self.ids("?since=2026-11-01T12:02:00 00:00"), ["d", "c"])
        self.assertEqual(self.ids(f"?since={int((T0 + timedelta(minutes=3)).timestamp())}"), ["d"])
        self.assertEqual(self.ids("?until=2026-11-01"), [])
        # Times beyond what the database holds select what they say: everything, or nothing.
        self.assertEqual(self.ids("?since=0001-01-01T00:00%2B23:59&status=4xx"), ["d", "b"])
        self.assertEqual(self.ids("?since=9999-12-31T23:59-23:59"), [])
        # Digits other than 0-9 are no key id.
        self.assertEqual(self.ids("?key=%C2%B2"), [])
        self.assertEqual(self.ids("?status=&model="), ["d", "c", "b", "a"])  # empty is the same as absent

    def test_it_paginates_with_a_cursor(self) -> None:
        _, page = self.get("?limit=3")
        self.assertEqual([row["request_id"] for row in page["results"]], ["d", "c", "b"])
        self.assertIsNotNone(page["next"])
        response = self.client.get(page["next"], **self.bearer(self.reader_plaintext))
        self.assertEqual([row["request_id"] for row in response.json()["results"]], ["a"])
        self.assertIsNone(response.json()["next"])

    def test_it_rejects_bad_filters_naming_the_param(self) -> None:
        forged = base64.b64encode(b"p=yesterday").decode()  # a well-formed cursor whose position is no time
        early = base64.b64encode(b"p=0001-01-01T00:00%2B23:59").decode()  # a time before any UTC time
        self.assertEqual(self.get(f"?cursor={early}")[0], 200)
        for query, param in [("?since=yesterday", "since"), ("?status=abc", "status"), ("?cursor=zzz", "cursor"),
                             ("?status=%C2%B200", "status"), ("?limit=0", "limit"), ("?limit=501", "limit"),
                             ("?limit=ten", "limit"), (f"?cursor={forged}", "cursor"), ("?model=a%00b", "model")]:  # fmt: skip
            status, body = self.get(query)
            self.assertEqual(status, 400, query)
            self.assertEqual(body["error"]["param"], param)
            self.assertEqual(body["error"]["type"], "invalid_request_error")

    def test_it_requires_authentication(self) -> None:
        response = self.client.get("/api/logs")
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"]["type"], "authentication_error")
        self.assertEqual(response["WWW-Authenticate"], "Bearer")

    def test_it_rejects_a_bad_key(self) -> None:
        status, body = self.get(HTTP_AUTHORIZATION=f"Bearer {self.reader_plaintext}x")
        self.assertEqual(status, 401)
        self.assertNotIn(self.reader_plaintext, str(body))

    def test_it_refuses_keys_without_the_logs_scope(self) -> None:
        status, body = self.get(**self.bearer(self.client_plaintext))
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["type"], "permission_error")

    def test_it_allows_staff_sessions_only(self) -> None:
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get("/api/logs").status_code, 403)
        self.client.force_login(self.alice)
        response = self.client.get("/api/logs?limit=1")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["results"][0]["request_id"], "d")
