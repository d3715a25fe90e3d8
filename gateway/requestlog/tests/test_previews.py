"""Prompt and completion previews: stored only when the record allows it, and cut to LOG_PREVIEW_CHARS."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from gateway import requestlog
from gateway.models import APIKey
from gateway.requestlog import record, rows


class PreviewTestCase(SimpleTestCase):
    def _record(self, store: bool) -> requestlog.RequestRecord:
        record = requestlog.RequestRecord(endpoint="/v1/chat/completions", store_previews=store)
        record.prompt_preview = "tell me a story " * 100
        record.completion_preview = "once upon a time"
        return record

    def test_it_stores_no_previews_by_default(self) -> None:
        row = rows.to_row(self._record(store=False))
        self.assertEqual((row.prompt_preview, row.completion_preview), ("", ""))

    @override_settings(LOG_PREVIEW_CHARS=20)
    def test_it_truncates_previews_when_allowed(self) -> None:
        row = rows.to_row(self._record(store=True))
        self.assertEqual(len(row.prompt_preview), 20)
        self.assertTrue(row.prompt_preview.startswith("tell me a story"))
        self.assertTrue(row.prompt_preview.endswith("…"))
        self.assertEqual(row.completion_preview, "once upon a time")

    @override_settings(LOG_PREVIEW_CHARS=5)
    def test_it_keeps_short_text_whole(self) -> None:
        self.assertEqual(rows.preview("hello"), "hello")
        self.assertEqual(rows.preview(None), "")

    def test_a_key_overrides_the_global_setting(self) -> None:
        with override_settings(LOG_PREVIEWS=False):
            self.assertFalse(record.previews_allowed(None))
            self.assertFalse(record.previews_allowed(APIKey(store_previews=None)))
            self.assertTrue(record.previews_allowed(APIKey(store_previews=True)))
        with override_settings(LOG_PREVIEWS=True):
            self.assertTrue(record.previews_allowed(APIKey(store_previews=None)))
            self.assertFalse(record.previews_allowed(APIKey(store_previews=False)))
