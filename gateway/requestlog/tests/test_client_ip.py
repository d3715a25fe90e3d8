"""The client IP: X-Forwarded-For is believed only from TRUSTED_PROXIES, and only as far as they go."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from gateway.clientip import client_ip
from gateway.requestlog import RequestRecord


@override_settings(TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8"])
class ClientIPTestCase(SimpleTestCase):
    def test_it_uses_remote_addr_without_a_proxy(self) -> None:
        self.assertEqual(client_ip({"REMOTE_ADDR": "192.0.2.7"}), "192.0.2.7")

    def test_it_ignores_forwarded_for_from_untrusted_peers(self) -> None:
        meta = {"REMOTE_ADDR": "192.0.2.7", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
        self.assertEqual(client_ip(meta), "192.0.2.7")

    def test_it_believes_forwarded_for_from_a_trusted_proxy(self) -> None:
        meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
        self.assertEqual(client_ip(meta), "203.0.113.9")

    def test_it_stops_at_the_first_untrusted_hop(self) -> None:
        # The client wrote "1.1.1.1" itself; 203.0.113.9 is what our proxies saw.
        meta = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.9, 10.0.0.5"}
        self.assertEqual(client_ip(meta), "203.0.113.9")

    def test_it_handles_garbage(self) -> None:
        self.assertIsNone(client_ip({}))
        self.assertIsNone(client_ip({"REMOTE_ADDR": "nonsense"}))
        meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "not-an-ip"}
        self.assertEqual(client_ip(meta), "127.0.0.1")

    def test_it_fills_a_record(self) -> None:
        record = RequestRecord.start(
            "/v1/models", "GET", {"REMOTE_ADDR": "::1", "HTTP_USER_AGENT": "openai-python/1.0"}
        )
        self.assertEqual((record.client_ip, record.user_agent), ("::1", "openai-python/1.0"))
