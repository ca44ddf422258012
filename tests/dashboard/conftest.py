"""Fixtures of the dashboard tests: one server and worker for the session, Chromium, a logged-in tab."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import CHROMIUM, CHROMIUM_ARGS, EXPECT_MS, HERE, MODULE, Server, Tab, start_server
from processes import stop, wait_for


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("dashboard")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{folder / 'taskloom.db'}",
        "TASKLOOM_HOME": str(folder / "home"),
        "TASKLOOM_API_TOKEN": secrets.token_urlsafe(24),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    running = start_server(env, folder)
    with (folder / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", MODULE, "--poll", "0.05", "--lease", "5"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with running.api() as api:
            wait_for(lambda: api.get("/workers").json()["workers"], 30, "the worker to register")
        yield running
    finally:
        stop(worker, running.process)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.api() as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright's sync API, per test module.

    Not per session: the sync API keeps its event loop marked as running in the main thread for as long
    as Playwright is open, and every ``wf.run()`` of a later test module would refuse to run "inside a
    running event loop".
    """
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: install Debian's chromium package (.ci/run does) to run these"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI must run the dashboard's browser tests: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Tab]:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    opened = Tab(page, server)
    page.on("request", lambda request: opened.requests.append(request))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    page.goto(server.url + "/")
    page.fill("#token", server.token)
    page.click("#login button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()
    try:
        yield opened
    finally:
        context.close()
    assert opened.errors == [], f"the page raised: {opened.errors}"
