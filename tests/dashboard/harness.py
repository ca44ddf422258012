"""The dashboard tests' harness: a real ``taskloom server`` and worker on loopback, and logged-in tabs of
headless Chromium (Debian's) driven by Playwright. The fixtures are in ``conftest.py``: one server and one
worker serve every dashboard test module (each test makes executions of its own, so none sees another's).

Screenshots of the main pages are written to ``docs/`` when ``TASKLOOM_DASHBOARD_SCREENSHOTS=1`` (for the
README), never otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, wait_for

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
MODULE = "dashapp.flows"
CHROMIUM = Path("/usr/bin/chromium")
#: this machine's network is closed: these flags keep Chromium from reaching out (and hanging on it)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("TASKLOOM_DASHBOARD_SCREENSHOTS") == "1"
#: how long an expectation on the page may take (a worker claims within its poll, the page polls every 2 s)
EXPECT_MS = 15_000
#: the page's own files: public, fetched without the token
ASSET_PATHS = {"/", "/dashboard/app.js", "/dashboard/graph.js", "/dashboard/related.js", "/dashboard/app.css"}


# -- processes ----------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    token: str
    folder: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


def start_server(env: dict[str, str], folder: Path) -> Server:
    """``taskloom server`` on a free loopback port, returned once /health answers."""
    for _attempt in range(3):
        port = free_port()
        log = folder / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "server", MODULE, "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"

        def healthy(url: str = url, process: subprocess.Popen[bytes] = process) -> bool:
            if process.poll() is not None:
                return True  # exited: stop waiting, and find out why below
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 30, "the server to answer /health")
        if process.poll() is None:
            return Server(url, env["TASKLOOM_API_TOKEN"], folder, process, env)
        if "address already in use" not in log.read_text().lower():
            raise AssertionError(f"the server did not start:\n{log.read_text()}")
    raise AssertionError("no free port for the server after 3 tries")


def start(api: httpx.Client, workflow: str, input: Any = None) -> str:
    response = api.post("/executions", json={"workflow": workflow, "input": input})
    assert response.status_code == 201, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


def wait_status(api: httpx.Client, execution_id: str, *statuses: str) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        view: dict[str, Any] = api.get(f"/executions/{execution_id}").json()
        return view if view["status"] in statuses else None

    return wait_for(current, 30, f"execution {execution_id} to be {' or '.join(statuses)}")


# -- the browser ----------------------------------------------------------------------------------------
@dataclass
class Tab:
    """A logged-in page, with every request it made and every script error it met."""

    page: Any
    server: Server
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, fragment: str) -> None:
        self.page.goto(f"{self.server.url}/#{fragment}")

    def shoot(self, name: str, *, full_page: bool = True) -> None:
        """Save a screenshot as docs/dashboard-NAME.png, when screenshots were asked for."""
        if SCREENSHOTS:
            DOCS.mkdir(exist_ok=True)
            self.page.screenshot(path=str(DOCS / f"dashboard-{name}.png"), full_page=full_page)


def expect_(locator: Any) -> Any:
    from playwright.sync_api import expect

    return expect(locator)
