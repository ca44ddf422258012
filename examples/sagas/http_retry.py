"""A retrying HTTP call: the service answers 503 twice, then 200, and the task retries through it.

A tiny ``http.server`` on 127.0.0.1 (a free port) plays the flaky service. The task uses ``urllib``
with ``retry_max_attempts=3`` and a short ``retry_delay``; each attempt has a ``timeout``. The
workflow records one step whose retries show in the event log, and the server thread stops by itself
once it has served its successful answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

from taskloom import WorkflowExecutionContext, task, workflow


class FlakyService(HTTPServer):
    """Fails the first ``fail_first`` requests with 503 Service Unavailable, then answers 200."""

    def __init__(self, fail_first: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail_first = fail_first
        self.hits = 0
        self.served_ok = False

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/rates/EUR-USD"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyService

    def do_GET(self) -> None:
        self.server.hits += 1
        if self.server.hits <= self.server.fail_first:
            status, body = 503, {"error": "busy, try again"}
        else:
            status, body = 200, {"pair": self.path.rsplit("/", 1)[-1], "rate": 1.0842}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.server.served_ok = status == 200

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the example's output to its own lines


@contextlib.contextmanager
def flaky_service(fail_first: int = 2) -> Iterator[FlakyService]:
    """Serve in a thread until one successful answer was sent (or the block ends)."""
    server = FlakyService(fail_first)
    server.timeout = 0.05  # how often the loop checks whether to stop
    stop = threading.Event()

    def serve() -> None:
        with server:
            while not server.served_ok and not stop.is_set():
                server.handle_request()

    thread = threading.Thread(target=serve, name="flaky-service", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)


@task.with_options(retry_max_attempts=3, retry_delay=0.05, retry_backoff=2, timeout=5)
def fetch_rate(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as response:  # a 503 raises HTTPError: retried
        return json.load(response)


@task
def convert(amount: float, quote: dict) -> float:
    return round(amount * quote["rate"], 2)


@workflow
async def convert_invoice(ctx: WorkflowExecutionContext[dict]) -> dict:
    quote = await fetch_rate(ctx.input["url"])
    usd = await convert(ctx.input["amount"], quote)
    return {"eur": ctx.input["amount"], "usd": usd, "rate": quote["rate"]}


if __name__ == "__main__":
    with flaky_service(fail_first=2) as service:
        ctx = convert_invoice.run({"url": service.url, "amount": 250.0})
    assert ctx.has_succeeded, ctx
    assert ctx.output == {"eur": 250.0, "usd": 271.05, "rate": 1.0842}, ctx.output
    assert service.hits == 3, service.hits
    retries = [e.data["error"] for e in ctx.events if e.type == "step_retrying"]
    assert len(retries) == 2 and all("503" in r for r in retries), retries
    print("retried after:", retries)
    print("requests served:", service.hits)
    print("result:", ctx.output)
