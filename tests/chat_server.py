"""A local server that speaks the OpenAI chat-completions protocol (JSON and SSE), for tests.

Its replies echo the last message unless a test sets `reply` to a fixed text or `reply_for`
to a function of the request; delays
make streaming observable.
"""

import contextlib
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-test-key"
MODEL = "echo-model"


class ChatServer(ThreadingHTTPServer):
    """What the handler below does is steered by these attributes, set per test."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests: list[dict] = []
        self.chunk_delay = 0.0  # seconds between streamed chunks
        self.response_delay = 0.0  # seconds before any answer
        self.rejects_stream_options = False  # like servers that predate it
        self.reports_stream_usage = True  # False: accepts stream_options but ignores it
        self.reply: str | None = None  # a fixed answer instead of the echo
        # Answers per request: given the request body, the reply text (None falls back to the above).
        self.reply_for: Callable[[dict], str | None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass

    def handle(self) -> None:
        # The client may give up first (a timeout test, a stream closed early).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.server.requests.append(
            {"path": self.path, "headers": {name.lower(): value for name, value in self.headers.items()}, "body": body}
        )
        time.sleep(self.server.response_delay)
        if self.path != "/v1/chat/completions":
            return self._send(404, b"Not Found", "text/plain")
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send_error(401, "Incorrect API key provided.", "invalid_api_key")
        if body.get("model") != MODEL:
            return self._send_error(404, f"The model '{body.get('model')}' does not exist.", "model_not_found")
        if "stream_options" in body and self.server.rejects_stream_options:
            return self._send_error(400, "Unrecognized request argument supplied: stream_options", None)

        reply = (self.server.reply_for and self.server.reply_for(body)) or self.server.reply
        reply = reply or "Echo: " + body["messages"][-1]["content"]
        prompt_tokens = sum(len(message["content"].split()) for message in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reply.split()),
            "total_tokens": prompt_tokens + len(reply.split()),
        }
        if body.get("stream"):
            wants_usage = (body.get("stream_options") or {}).get("include_usage") and self.server.reports_stream_usage
            return self._stream(reply, usage if wants_usage else None)
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage,
        }
        self._send(200, json.dumps(completion).encode(), "application/json")

    def _stream(self, reply: str, usage: dict | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes

        def chunk(delta: dict, finish_reason: str | None = None, choices: bool = True, **extra) -> None:
            data = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else [],
                **extra,
            }
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        words = reply.split(" ")
        for position, word in enumerate(words):
            delta = {"content": word if position == 0 else " " + word}
            if position == 0:
                delta["role"] = "assistant"
            chunk(delta)
            if position < len(words) - 1:
                time.sleep(self.server.chunk_delay)
        chunk({}, finish_reason="stop")
        if usage:
            chunk({}, choices=False, usage=usage)
        self.wfile.write(b"data: [DONE]\n\n")

    def _send_error(self, status: int, message: str, code: str | None) -> None:
        error = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        self._send(status, json.dumps(error).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
