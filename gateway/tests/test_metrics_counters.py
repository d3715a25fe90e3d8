"""The request counters rise with real requests through a live gateway, and do not fall when prunelogs deletes rows."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from gateway.models import RequestLog
from gateway.tests.conftest import post
from gateway.tests.test_request_logging import row_for
from tests.scrape import Samples, scrape, value

CHAT = "/v1/chat/completions"


def gateway_samples(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0].startswith("jetson_gateway_")}


def test_it_counts_real_requests_and_keeps_counting_after_their_rows_are_pruned(
    live_gateway: str, api_key: str, chat_model: str
) -> None:
    labels = {"model": chat_model, "endpoint": CHAT}
    before = scrape(live_gateway)
    body = {"model": chat_model, "messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 4}
    responses = [post(live_gateway, api_key, CHAT, {**body, "stream": n == 2}) for n in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    rows = [row_for(r) for r in responses]  # each record is submitted before its row can be written
    after = scrape(live_gateway)

    def rise(name: str, **more: str) -> float:
        return value(after, name, **labels, **more) - value(before, name, **labels, **more)

    assert rise("jetson_gateway_requests_total", status="200") == 3
    assert rise("jetson_gateway_tokens_total", kind="prompt") == sum(row.prompt_tokens for row in rows)
    assert rise("jetson_gateway_tokens_total", kind="completion") == sum(row.completion_tokens for row in rows) == 12
    assert rise("jetson_gateway_request_duration_seconds_count") == 3
    assert rise("jetson_gateway_time_to_first_token_seconds_count") == 3
    assert rise("jetson_gateway_tokens_per_second_count") == sum(1 for row in rows if row.tokens_per_second) == 3
    assert rise("jetson_gateway_request_duration_seconds_sum") > 0

    # The rows grow old and are pruned: the counters are not counts of rows, so nothing falls.
    RequestLog.objects.filter(pk__in=[row.pk for row in rows]).update(created=timezone.now() - timedelta(days=60))
    call_command("prunelogs", older_than="30d", stdout=StringIO())
    assert not RequestLog.objects.filter(pk__in=[row.pk for row in rows]).exists()
    pruned = scrape(live_gateway)
    assert gateway_samples(pruned) == gateway_samples(after)
