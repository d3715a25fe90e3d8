"""A fake llama-server for fault injection, request recording and benchmarks that isolate the gateway's own cost.

It answers at once with llama-server's response shapes. It never replaces the real server in the suite: tests
use it only where a real one cannot misbehave on demand (errors, silence, mid-stream failure) or cannot be had
(a vision model). Run alone for benchmarks: `python -m tests.fake_llama --port 8090 [--tokens 16] [--token-delay 0.02]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from gateway.prompts import prompt_count

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}  # llama-server's, to all
NO_ROUTE = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}  # llama-server's, unknown
GGUF = "/models/fake-model-Q4_K_M.gguf"  # the model name llama-server puts in answers: its GGUF's path


FAKE_GGUF = "/models/fake-model.gguf"  # the model's name as llama-server gives it: its file
# The arguments of a tool call, as a model writes them: in parts.
TOOL_ARGUMENT_PARTS = ['{"city": ', '"Paris"}']
TOOL_ARGUMENTS = "".join(TOOL_ARGUMENT_PARTS)


def tasks(body: dict, prompts: int) -> int:
    """The choices llama-server streams for a request: `n` for each prompt."""
    n = body.get("n")
    return prompts * (n if isinstance(n, int) and n > 0 else 1)


@dataclass
class FakeLlama:
    port: int
    tokens: int = 16
    # "ok", "error_400", "error_500", "silent" (never answers), "loading" (503 everywhere, as while llama-server loads
    # its model), "no_route" (404 to every POST, as a build older than the route answers), "slow_stream" (a second of silence before each of its chunks), and failures after two chunks of a
    # stream: "midstream_error" (an error event: the backend failed), "midstream_error_400" (an error event: the
    # request is bad), "midstream_close" (the connection drops), "midstream_end" (the stream ends cleanly, without
    # its finish reason)
    behaviour: str = "ok"
    received: list[dict] = field(default_factory=list)
    record: bool = True
    token_delay: float = 0.0  # seconds between streamed tokens (0: all at once)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- handlers ---

    async def _remember(self, request: web.Request) -> dict:
        body = await request.json() if request.can_read_body else {}
        if self.record:
            self.received.append({"path": request.path, "headers": dict(request.headers), "json": body})
        return body

    async def _failure(self) -> web.Response | None:
        if self.behaviour == "loading":
            return web.json_response(LOADING, status=503)
        if self.behaviour == "no_route":
            return web.json_response(NO_ROUTE, status=404)
        if self.behaviour == "error_400":
            error = {
                "code": 400,
                "message": "the request exceeds the available context size",
                "type": "exceed_context_size_error",
            }
            return web.json_response({"error": error}, status=400)
        if self.behaviour == "error_500":
            return web.json_response({"error": {"code": 500, "message": "boom", "type": "server_error"}}, status=500)
        if self.behaviour == "silent":
            await asyncio.sleep(3600)
        return None

    async def _failed_midstream(self, request: web.Request, response: web.StreamResponse, index: int) -> bool:
        """Fail as the behaviour says once two chunks are out; True when the stream is over."""
        if index != 2 or not self.behaviour.startswith("midstream_"):
            return False
        if self.behaviour == "midstream_close":
            assert request.transport is not None
            request.transport.abort()  # as a killed process's connection: no end of the chunked body
            return True
        if self.behaviour == "midstream_end":
            return True
        error = {"code": 500, "message": "backend crashed", "type": "server_error"}
        if self.behaviour == "midstream_error_400":
            error = {"code": 400, "message": "the request exceeds the available context size",
                     "type": "exceed_context_size_error"}  # fmt: skip
        await response.write(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")
        return True

    async def health(self, request: web.Request) -> web.Response:
        if self.behaviour == "loading":
            return web.json_response(LOADING, status=503)
        return web.json_response({"status": "ok"})

    async def slots(self, request: web.Request) -> web.Response:
        if self.behaviour == "loading":
            return web.json_response(LOADING, status=503)
        return web.json_response([{"id": 0, "is_processing": False}, {"id": 1, "is_processing": False}])

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._remember(request)
        failure = await self._failure()
        if failure:
            return failure
        created = int(time.time())
        usage = {"prompt_tokens": 5, "completion_tokens": self.tokens, "total_tokens": 5 + self.tokens}
        if not body.get("stream"):
            message = {"role": "assistant", "content": " tok" * self.tokens}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": "fake",
                    "choices": [choice],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(choice: int, delta: dict, finish: str | None = None) -> None:
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": "fake",
                     "choices": [{"index": choice, "delta": delta, "finish_reason": finish}]}  # fmt: skip
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        # As llama-server: one task per choice (`n`), each ending with its finish reason and then its own usage.
        for choice in range(tasks(body, prompts=1)):
            await send(choice, {"role": "assistant", "content": None})
            for index in range(self.tokens if self.behaviour != "slow_stream" else 2):
                if self.behaviour == "slow_stream":
                    await asyncio.sleep(1)
                if await self._failed_midstream(request, response, index):
                    return response
                if self.token_delay and index:
                    await asyncio.sleep(self.token_delay)
                await send(choice, {"content": " tok"})
            await send(choice, {}, "length")
            if (body.get("stream_options") or {}).get("include_usage"):
                final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                         "model": "fake", "choices": [], "usage": usage}  # fmt: skip
                await response.write(b"data: " + json.dumps(final).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """Legacy completions, streamed only (the gateway always asks for a stream)."""
        body = await self._remember(request)
        failure = await self._failure()
        if failure:
            return failure
        prompts = prompt_count(body.get("prompt"))
        if not prompts:
            error = {"code": 400, "message": '"prompt" must not be empty', "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)  # llama-server's
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        created = int(time.time())
        # As llama-server: one task per prompt and choice, each with its usage on its last chunk.
        for task in range(tasks(body, prompts)):
            for index in range(self.tokens):
                if await self._failed_midstream(request, response, index):
                    return response
                last = index == self.tokens - 1
                choice = {"index": task, "text": " tok", "logprobs": None, "finish_reason": "length" if last else None}
                chunk = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": "fake",
                         "choices": [choice]}  # fmt: skip
                if last and (body.get("stream_options") or {}).get("include_usage"):
                    chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": self.tokens,
                                      "total_tokens": 5 + self.tokens}  # fmt: skip
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _named_stream(self, request: web.Request, events: list[dict]) -> web.StreamResponse:
        """A stream of named events, as llama-server's Responses and Messages routes send them."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.behaviour == "midstream_end":
            events = events[:3]  # ends cleanly before its end event
        for event in events:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        return response

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API, streamed only (the gateway always asks for a stream): a function call when the
        request has tools, else text; the model's GGUF path as llama-server gives it."""
        body = await self._remember(request)
        created, usage = (
            int(time.time()),
            {"input_tokens": 5, "output_tokens": self.tokens, "total_tokens": 5 + self.tokens},
        )
        start = {"id": "resp_fake", "object": "response", "status": "in_progress"}
        if body.get("tools"):
            name = body["tools"][0]["name"]
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name, "arguments": "",
                    "status": "in_progress"}  # fmt: skip
            done = {**item, "arguments": TOOL_ARGUMENTS, "status": "completed"}
            middle = [{"type": "response.output_item.added", "output_index": 0, "item": item}] + [
                {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": part}
                for part in TOOL_ARGUMENT_PARTS
            ] + [
                {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0,
                 "arguments": TOOL_ARGUMENTS},
                {"type": "response.output_item.done", "output_index": 0, "item": done},
            ]  # fmt: skip
        else:
            text = " tok" * self.tokens
            done = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
            middle = [
                {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
                 "delta": " tok"}
                for _ in range(self.tokens)
            ] + [{"type": "response.output_item.done", "output_index": 0, "item": done}]  # fmt: skip
        completed = {**start, "created_at": created, "status": "completed", "model": FAKE_GGUF, "output": [done],
                     "usage": usage}  # fmt: skip
        events = [{"type": "response.created", "response": start}, *middle,
                  {"type": "response.completed", "response": completed}]  # fmt: skip
        return await self._named_stream(request, events)

    async def input_tokens(self, request: web.Request) -> web.Response:
        """count_tokens (Messages) and input_tokens (Responses): one token per 4 characters of the request."""
        body = await self._remember(request)
        counted = max(1, len(json.dumps(body.get("messages") or body.get("input") or "")) // 4)
        return web.json_response({"input_tokens": counted})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """The Messages API, streamed only: a tool_use block when the request has tools, else text."""
        body = await self._remember(request)
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": FAKE_GGUF,
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 0}}  # fmt: skip
        if body.get("tools"):
            block = {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in TOOL_ARGUMENT_PARTS]
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": " tok"} for _ in range(self.tokens)]
            stop = "max_tokens"
        events = [
            {"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": block},
            *({"type": "content_block_delta", "index": 0, "delta": delta} for delta in deltas),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
             "usage": {"output_tokens": self.tokens}},
            {"type": "message_stop"},
        ]  # fmt: skip
        return await self._named_stream(request, events)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._remember(request)
        failure = await self._failure()
        if failure:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.25, -0.5, 1.0]} for i in range(len(inputs))]
        return web.json_response(
            {"object": "list", "data": data, "model": "fake", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
        )

    async def rerank(self, request: web.Request) -> web.Response:
        """llama-server's answer: the documents by relevance, most relevant first, `top_n` of them; the relevance
        here is the share of the query's words a document has."""
        body = await self._remember(request)
        failure = await self._failure()
        if failure:
            return failure
        words = set(re.findall(r"\w+", body["query"].lower()))
        scores = [len(words & set(re.findall(r"\w+", doc.lower()))) / max(len(words), 1) for doc in body["documents"]]
        results = sorted(({"index": i, "relevance_score": score} for i, score in enumerate(scores)),
                         key=lambda result: -result["relevance_score"])  # fmt: skip
        tokens = len(body["query"].split()) + sum(len(doc.split()) for doc in body["documents"])
        return web.json_response({"model": GGUF, "object": "list", "usage": {"prompt_tokens": tokens,
                                  "total_tokens": tokens}, "results": results[: body.get("top_n", len(results))]})  # fmt: skip

    async def transcriptions(self, request: web.Request) -> web.Response:
        """llama-server's answer to a multipart upload: the text (here, how many bytes of what it heard) and a
        transcription's usage; it names no model."""
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        files = {name: (value.filename, value.content_type, value.file.read())
                 for name, value in form.items() if isinstance(value, web.FileField)}  # fmt: skip
        if self.record:
            self.received.append({"path": request.path, "headers": dict(request.headers), "form": fields,
                                  "files": files})  # fmt: skip
        failure = await self._failure()
        if failure:
            return failure
        if "file" not in files:
            error = {"code": 400, "message": "No input file found for transcription", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        usage = {"type": "tokens", "input_tokens": 20, "output_tokens": self.tokens,
                 "total_tokens": 20 + self.tokens, "input_tokens_details": {"cached_tokens": 0}}  # fmt: skip
        text = f"heard {len(files['file'][2])} bytes"
        return web.json_response({"type": "transcript.text.done", "text": text, "usage": usage})

    # --- running ---

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/slots", self.slots)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.input_tokens)
        app.router.add_post("/v1/responses/input_tokens", self.input_tokens)
        app.router.add_post("/v1/rerank", self.rerank)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        return app

    async def serve(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start_in_thread(self) -> FakeLlama:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name=f"fake-llama-{self.port}").start()
        ready.wait(10)
        return self

    async def _shutdown(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        # Handlers left hanging ("silent") are cancelled, so the loop stops clean.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed tokens")
    args = parser.parse_args()
    fake = FakeLlama(args.port, tokens=args.tokens, record=False, token_delay=args.token_delay)

    async def forever() -> None:
        await fake.serve()
        await asyncio.Event().wait()

    asyncio.run(forever())


if __name__ == "__main__":
    main()
