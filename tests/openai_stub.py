"""A scripted OpenAI-compatible chat server on 127.0.0.1, for fault tests of the API engine.

The last user message says what to do on each attempt: ``[fault:429,500,ok]`` answers the
first request with 429, the second with 500, every later one normally. The last step repeats.
Steps:
    ok         a normal answer (streamed when asked), usage 10 prompt / 5 output tokens
    hold       a normal answer after 0.3 s (to see concurrency)
    429        429 with Retry-After: 1
    500        500 Internal Server Error
    garbage    200 whose body is not JSON (in the stream, a data line that is not JSON)
    slow       sleeps 6 s before answering (past a short client timeout)
    drop       closes the connection without a response
    midstream  starts a streamed answer, then closes the connection
    length     an answer cut off at max_tokens (finish_reason length)
    prose      a verdict that is not JSON (judge requests without a schema)
Requests with a ``response_format`` JSON schema get a verdict that fits it; so do judge
requests without one (the prompt asks for JSON) unless the step is ``prose``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

STEPS = re.compile(r"\[fault:([a-z0-9,]+)\]")


class Stub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        """Authorization headers seen."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def step(self, body: dict[str, Any]) -> str:
        """This attempt's step, counted per distinct messages (a re-ask with a new seed or
        budget goes on with the script)."""
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        match = STEPS.search(user)
        steps = match.group(1).split(",") if match else ["ok"]
        key = json.dumps(body["messages"])
        with self.lock:
            self.requests.append(body)
            n = self.seen[key]
            self.seen[key] += 1
        return steps[min(n, len(steps) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # streams are chunked, as uvicorn's (vllm serve) are

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.keys.add(self.headers.get("Authorization", ""))
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    self.answer(body, stub.step(body))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a "slow" step past its timeout)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def answer(self, body: dict[str, Any], step: str) -> None:
                if step == "drop":
                    self.close_connection = True
                    return
                if step in ("429", "500"):
                    self.send_response(int(step))
                    if step == "429":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    payload = json.dumps({"error": {"message": f"scripted {step}", "type": "stub"}}).encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if step == "slow":
                    time.sleep(6)
                if step == "hold":
                    time.sleep(0.3)
                text = content(body, step)
                finish = "length" if step == "length" else "stop"
                if body.get("stream"):
                    self.stream(text, finish, garbage=step == "garbage", cut=step == "midstream")
                    return
                payload = b"{not json at all" if step == "garbage" else json.dumps({
                    "id": "stub", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def stream(self, text: str, finish: str, garbage: bool, cut: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = len(text) // 2
                chunks: list[Any] = [
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text[:half]},
                                  "finish_reason": None}]},
                    "{garbage" if garbage else None,
                    {"choices": [{"index": 0, "delta": {"content": text[half:]}, "finish_reason": finish}]},
                    {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}},
                ]
                for i, chunk in enumerate(c for c in chunks if c is not None):
                    if cut and i == 1:
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    data = chunk if isinstance(chunk, str) else json.dumps(
                        {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "stub", **chunk})
                    self.chunk(f"data: {data}\n\n".encode())
                self.chunk(b"data: [DONE]\n\n")
                self.chunk(b"")  # the end of the body

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler


def content(body: dict[str, Any], step: str) -> str:
    """An answer, or a verdict for judge requests (those that ask for JSON)."""
    schema = _schema(body)
    user = body["messages"][-1]["content"]
    if schema is None and "Reply with JSON only" not in user:
        return f"stub answer ({step})"
    if step == "prose" and schema is None:  # a schema constrains the server's output
        return "I would rate this answer quite highly overall."
    props = schema["properties"] if schema else {
        name: {"type": "integer", "minimum": 1}
        for name in ("correctness", "completeness", "clarity", "depth", "usefulness")}
    verdict = {name: spec["minimum"] + 6 for name, spec in props.items() if spec["type"] == "integer"}
    return json.dumps({**verdict, "justification": "A stub verdict."})


def _schema(body: dict[str, Any]) -> Optional[dict[str, Any]]:
    fmt = body.get("response_format") or {}
    return fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None
