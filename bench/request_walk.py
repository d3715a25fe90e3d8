"""Follow one streamed chat request through the project's own modules and count how often it returns to a module it
has already left (issue: "a request path that goes forward").

    .venv/bin/python -m bench.request_walk [--tokens 2]

The gateway is served in this process (httpx over ASGI) against the fake backend; every call into a project module
(gateway/, monitor/, dashboard/, jetsonsite/) from another module is noted by a profile hook (a function called, or
a generator resumed, by code of another module; calls inside a module are its own business), and the walk is printed
module by module with each return to a module it had left marked. Run it on two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bench.common import Bench, chat_body

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tuple(str(ROOT / name) + os.sep for name in ("gateway", "monitor", "dashboard", "jetsonsite"))


def walk(tokens: int) -> list[str]:
    with Bench() as bench:
        fake = bench.start_fake(tokens=tokens)
        bench.add_model(fake)
        key = bench.create_key()
        import django

        django.setup()
        import httpx

        from jetsonsite.asgi import application

        modules: list[str] = []

        def project_module(frame):  # type: ignore[no-untyped-def]
            filename = frame.f_code.co_filename
            if filename.startswith(PROJECT) and "/tests/" not in filename:
                return os.path.relpath(filename, ROOT)
            return None

        def hook(frame, event, arg):  # type: ignore[no-untyped-def]
            if event != "call" or (module := project_module(frame)) is None:
                return
            caller = frame.f_back
            while caller is not None and project_module(caller) is None:
                caller = caller.f_back  # through the frameworks (Django, asyncio) to the project code that called
            if caller is not None and project_module(caller) == module:
                return  # a call inside the module
            if not modules or modules[-1] != module:
                modules.append(module)

        async def request() -> None:
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                body = chat_body(tokens=tokens, stream=True)
                await client.post("/v1/chat/completions", content=body, headers=headers)  # warm: imports, caches
                sys.setprofile(hook)
                try:
                    await client.post("/v1/chat/completions", content=body, headers=headers)
                finally:
                    sys.setprofile(None)

        asyncio.run(request())
        return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2)
    args = parser.parse_args()
    modules = walk(args.tokens)
    seen: set[str] = set()
    returns = 0
    for module in modules:
        mark = ""
        if module in seen:
            returns += 1
            mark = f"  <- return {returns}"
        seen.add(module)
        print(f"{module}{mark}")
    print(f"\n{len(modules)} steps through {len(seen)} modules; returns to a module it had left: {returns}")


if __name__ == "__main__":
    main()
