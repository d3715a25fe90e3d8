"""Plaintext keys and Authorization headers never reach a stored row, whatever a view puts in the record."""

from __future__ import annotations

from django.test import TestCase

from gateway import requestlog
from gateway.models import APIKey
from gateway.requestlog import rows


class RedactionTestCase(TestCase):
    def setUp(self) -> None:
        self.key, self.plaintext = APIKey.objects.create_key(name="alice")

    def test_it_redacts_our_keys(self) -> None:
        text = rows.redact(f"upstream said: invalid key {self.plaintext} (retry)")
        self.assertNotIn(self.plaintext, text)
        self.assertNotIn(self.plaintext.split(".", 1)[1], text)
        self.assertIn("sk-[redacted]", text)
        self.assertTrue(text.endswith("(retry)"))

    def test_it_redacts_bearer_and_authorization_values(self) -> None:
        text = rows.redact('headers: {"Authorization": "Bearer abc.def-123"}, api_key=s3cr3t, BEARER zzz')
        for secret in ("abc.def-123", "s3cr3t", "zzz"):
            self.assertNotIn(secret, text)

    def test_it_leaves_ordinary_text_alone(self) -> None:
        text = "Model 'qwen' is not loaded; the task-specific prompt was too long."
        self.assertEqual(rows.redact(text), text)

    def test_it_never_stores_a_key_in_a_row(self) -> None:
        record = requestlog.RequestRecord(endpoint="/v1/chat/completions", store_previews=True)
        record.error_message = f"Authorization: Bearer {self.plaintext}"
        record.user_agent = f"script with {self.plaintext}"
        record.prompt_preview = f"my key is {self.plaintext}"
        record.completion_preview = f"sk-{'a' * 40}"
        record.finish(401)
        row = rows.to_row(record)
        row.save()
        row.refresh_from_db()
        stored = " ".join(str(v) for v in row.__dict__.values())
        self.assertNotIn(self.plaintext, stored)
        self.assertNotIn(self.plaintext.split(".", 1)[1], stored)
        self.assertNotIn("a" * 40, stored)
