"""Why the upstream client is aiohttp: a minimal Django async proxy view with one shared httpx.AsyncClient vs one
shared aiohttp.ClientSession, side by side in one daphne process, against the instant fake llama-server.

    .venv/bin/python -m bench.upstream_client [--rounds 2] [--seconds 5]

Load comes from wrk (`make setup-bench` installs Debian's): req/s at 32 connections and p50 at 1, for each proxy view, for a
view that returns a constant without any upstream call (the ceiling of Django + daphne here), and for the fake
backend directly. Targets alternate round by round so machine noise hits them alike. Nothing of the gateway is
involved: no keys, no registry, no request log; only the client library differs between the two proxy views.

Run by daphne, this module is the ASGI application (`bench.upstream_client:application`), with the fake's URL in
BENCH_UPSTREAM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BODY = '{"model": "m", "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 16}'
PATHS = {"constant view": "/livez", "httpx proxy": "/httpx", "aiohttp proxy": "/aiohttp"}


# --- the application daphne serves ---------------------------------------------------------------------------------


def _build_application() -> Any:
    import aiohttp
    import django
    import httpx
    from django.conf import settings
    from django.core.asgi import get_asgi_application
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    upstream = os.environ["BENCH_UPSTREAM"] + "/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    clients: dict[str, Any] = {}  # created on first use, on daphne's event loop

    async def constant(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"status": "ok"})

    async def via_httpx(request: HttpRequest) -> HttpResponse:
        if "httpx" not in clients:
            clients["httpx"] = httpx.AsyncClient(timeout=30)
        response = await clients["httpx"].post(upstream, content=request.body, headers=headers)
        return HttpResponse(response.content, status=response.status_code, content_type="application/json")

    async def via_aiohttp(request: HttpRequest) -> HttpResponse:
        if "aiohttp" not in clients:  # as gateway.upstream opens its session: no connection limit, no User-Agent
            connector = aiohttp.TCPConnector(limit=0)
            clients["aiohttp"] = aiohttp.ClientSession(connector=connector, skip_auto_headers=["User-Agent"])
        async with clients["aiohttp"].post(upstream, data=request.body, headers=headers) as response:
            return HttpResponse(await response.read(), status=response.status, content_type="application/json")

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-" + "x" * 50,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
    )
    django.setup()
    global urlpatterns
    urlpatterns = [path("livez", constant), path("httpx", via_httpx), path("aiohttp", via_aiohttp)]
    return get_asgi_application()


def __getattr__(name: str) -> Any:
    # Built only when daphne asks for it: the benchmark driver below imports nothing of Django.
    if name == "application":
        globals()["application"] = _build_application()
        return globals()["application"]
    raise AttributeError(name)


# --- the driver ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration at 32 connections (at 1: 3/5 of it)")
    args = parser.parse_args()
    from bench.common import Bench, require_wrk, wrk

    require_wrk()
    from tests.live import start_daphne

    bench = Bench()  # only for its fake backend and the clean-up of what it starts
    try:
        fake = bench.start_fake(tokens=16)
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p"]
        process, gateway = start_daphne(
            {"BENCH_UPSTREAM": fake, "DJANGO_SETTINGS_MODULE": ""},  # settings.configure() below, not jetsonsite's
            command=lambda port: [*daphne, str(port), "bench.upstream_client:application"],
        )
        bench.processes.append(process)
        script = Path(tempfile.mkdtemp(dir=bench.tmp)) / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {BODY!r}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        targets = {name: gateway + path for name, path in PATHS.items()}
        targets["fake backend direct"] = fake + "/v1/chat/completions"
        for url in targets.values():  # warm-up: imports, pools, connections
            wrk(url, 8, 1, script)
        figures: dict[str, dict[str, list[float]]] = {name: {"rps": [], "p50": []} for name in targets}
        for n in range(args.rounds):
            order = list(targets) if n % 2 == 0 else list(reversed(targets))
            for name in order:
                figures[name]["rps"].append(wrk(targets[name], 32, args.seconds, script).rps)
                figures[name]["p50"].append(wrk(targets[name], 1, max(1, round(args.seconds * 0.6)), script).p50)
    finally:
        bench.close()

    print(f"\nNon-streamed chat (16 tokens) through a minimal Django async view under daphne; {args.rounds} rounds")
    print(f"{'target':<22} {'req/s @32':>10} {'p50 ms @1':>10}")
    for name, values in figures.items():
        print(f"{name:<22} {statistics.mean(values['rps']):>10,.0f} {statistics.median(values['p50']):>10.2f}")
    ratio = statistics.mean(figures["aiohttp proxy"]["rps"]) / statistics.mean(figures["httpx proxy"]["rps"])
    print(f"\naiohttp / httpx req/s at 32 connections: {ratio:.1f}x")


if __name__ == "__main__":
    main()
