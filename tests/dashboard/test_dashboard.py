"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright, against a real
``taskloom server`` and a real worker on loopback, on a throwaway store.

Each test logs in through the page's form and acts as a user would; what it checks is what the page
shows, and, where the page changed something, what the API says afterwards. Waits are Playwright's
``expect`` (which retries until its deadline) or ``wait_for`` with a deadline; a task that must be seen
in one state before the next waits for a gate file the test creates.

The server, the worker, the browser and the tab are ``conftest.py``'s fixtures (see ``harness.py``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from harness import ASSET_PATHS, MODULE, SCREENSHOTS, Server, Tab, expect_, start, wait_status

from taskloom.store import open_store

pytestmark = pytest.mark.integration


# -- logging in -----------------------------------------------------------------------------------------
def test_the_token_stays_in_session_storage_and_goes_out_only_as_a_bearer_header(tab: Tab, api: httpx.Client) -> None:
    start(api, "approval", {"item": "pen"})
    tab.open("/executions")
    expect_(tab.page.locator("#executions tr").first).to_be_visible()

    stored = tab.page.evaluate("() => [sessionStorage.getItem('taskloom.token'), localStorage.length, document.cookie]")
    assert stored == [tab.server.token, 0, ""]
    assert tab.page.context.cookies() == []
    assert tab.requests, "the page made no request"
    for request in tab.requests:
        assert request.url.startswith(tab.server.url), f"the page reached outside its server: {request.url}"
        assert tab.server.token not in request.url
        path = request.url.removeprefix(tab.server.url).split("?")[0].split("#")[0]
        if path not in ASSET_PATHS:
            assert request.headers.get("authorization") == f"Bearer {tab.server.token}", path


def test_a_wrong_token_is_refused_and_kept_nowhere(browser: Any, server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#token", "not-the-token")
    page.click("#login button[type=submit]")

    expect_(page.locator("#login-error")).to_have_text("That token is not this server's.")
    assert page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]") == [0, 0, ""]
    expect_(page.locator("#nav")).to_be_hidden()
    context.close()


def test_the_dashboards_files_are_public_but_its_data_needs_the_token(server: Server) -> None:
    for path in sorted(ASSET_PATHS):
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    for path in ("/executions", "/workers", "/sessions", "/secrets"):
        assert httpx.get(server.url + path).status_code == 401, path
    assert "http" not in re.sub(r"https?://(www\.)?w3\.org", "", httpx.get(server.url + "/").text)


# -- one execution --------------------------------------------------------------------------------------
def test_a_running_workflows_progress_moves_on_its_page(tab: Tab, api: httpx.Client, server: Server) -> None:
    gates = server.folder / f"gates-{secrets.token_hex(4)}"
    gates.mkdir()
    execution_id = start(api, "gated", {"order": "A-1", "gates": str(gates), "stages": 2})
    tab.open(f"/executions/{execution_id}")
    progress = tab.page.locator('#running-steps [data-step="2"]')

    expect_(progress.locator(".status-message")).to_have_text("stage 0 of 2")
    expect_(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "0")
    expect_(tab.page.locator('#timeline .row[data-step="2"]')).to_have_attribute("data-state", "running")
    tab.shoot("execution-running")
    (gates / "0").touch()

    expect_(progress.locator(".status-message")).to_have_text("stage 1 of 2")
    expect_(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "50")
    expect_(tab.page.locator("#logs")).to_contain_text("waiting at stage 1")
    (gates / "1").touch()

    expect_(tab.page.locator("#execution-status")).to_have_text("completed")
    expect_(tab.page.locator('#timeline .row[data-step="2"]')).to_have_attribute("data-state", "completed")
    expect_(tab.page.locator("#output")).to_have_text('"order A-1: done"')
    assert api.get(f"/executions/{execution_id}").json()["output"] == "order A-1: done"


def test_a_paused_workflow_is_resumed_with_json_input_from_its_page(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "approval", {"item": "laptop"})
    tab.open(f"/executions/{execution_id}")
    expect_(tab.page.locator("#execution-status")).to_have_text("paused")

    tab.page.fill("#resume-input", "{not json")
    tab.page.click("#resume")
    expect_(tab.page.locator(".resume .error")).to_contain_text("not JSON")
    assert api.get(f"/executions/{execution_id}").json()["status"] == "paused"

    tab.page.fill("#resume-input", '{"by": "ana", "ok": true}')
    tab.page.click("#resume")

    expect_(tab.page.locator("#execution-status")).to_have_text("completed")
    assert wait_status(api, execution_id, "completed")["output"] == {
        "item": "LAPTOP",
        "decision": {"by": "ana", "ok": True},
    }
    # shout settled in the first run; the run after the resume took its result from the store
    expect_(tab.page.locator('#timeline .row[data-step="1"]')).to_have_attribute("data-replayed", "true")
    expect_(tab.page.locator('#timeline .row[data-step="1"] .tag.replayed')).to_be_visible()
    expect_(tab.page.locator('#timeline .row[data-step="2"]')).to_have_attribute("data-replayed", "false")
    expect_(tab.page.locator("#resume")).to_have_count(0)
    tab.shoot("execution")
    # the stream is read while there is something to read: once when opened, once after the resume (and
    # at most a catch-up each), never again and again while the execution sits paused or finished
    streams = [r for r in tab.requests if f"/executions/{execution_id}/stream" in r.url]
    assert 2 <= len(streams) <= 4, [r.url for r in streams]


def test_a_running_workflow_is_cancelled_from_its_page(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "endless")
    wait_status(api, execution_id, "running")
    tab.open(f"/executions/{execution_id}")
    expect_(tab.page.locator("#execution-status")).to_have_text("running")

    tab.page.click("#cancel")

    expect_(tab.page.locator("#execution-status")).to_have_text("cancelled")
    assert api.get(f"/executions/{execution_id}").json()["status"] == "cancelled"
    expect_(tab.page.locator("#cancel")).to_have_count(0)


def test_a_failed_workflow_shows_its_retries_its_error_and_the_users_frames(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "broken", "widget")
    wait_status(api, execution_id, "failed")
    tab.open(f"/executions/{execution_id}")

    row = tab.page.locator('#timeline .row[data-step="2"]')
    expect_(row).to_have_attribute("data-state", "failed")
    expect_(row.locator(".tag.retried")).to_have_text("2 retries")
    expect_(row.locator(".retry-mark")).to_have_count(2)
    expect_(tab.page.locator("#error-message")).to_have_text("LookupError: no stock left for 'widget'")
    traceback = tab.page.locator("#traceback")
    expect_(traceback).to_contain_text("reserve_stock")
    expect_(traceback).to_contain_text("frames of taskloom and Python hidden")
    expect_(traceback).not_to_contain_text("policy.py")
    tab.shoot("execution-failed")
    tab.page.get_by_role("button", name="show every frame").click()
    expect_(traceback).to_contain_text("policy.py")


# -- the list of executions -----------------------------------------------------------------------------
def test_the_executions_list_filters_searches_pages_and_updates_live(
    tab: Tab, api: httpx.Client, server: Server
) -> None:
    if SCREENSHOTS:  # the executions the tests before this one started, before the bulk below hides them
        tab.open("/executions")
        expect_(tab.page.locator("#executions tr").first).to_have_attribute("data-id", re.compile(r"."))
        tab.shoot("executions", full_page=False)
    store = open_store(server.env["TASKLOOM_DATABASE_URL"])
    try:
        for n in range(60):  # more than a page (50), straight into the store: no worker runs "bulk"
            store.create_execution(f"bulk-{n:03d}", "bulk", None, "completed" if n % 2 else "failed")
    finally:
        store.close()
    tab.open("/executions?workflow=bulk")
    rows = tab.page.locator("#executions tr")
    expect_(rows).to_have_count(50)
    expect_(rows.first).to_have_attribute("data-id", "bulk-059")

    tab.page.click("#older")
    expect_(rows).to_have_count(10)
    expect_(rows.last).to_have_attribute("data-id", "bulk-000")
    expect_(tab.page.locator("#older")).to_be_disabled()
    tab.page.click("#newer")
    expect_(rows.first).to_have_attribute("data-id", "bulk-059")

    tab.page.select_option("#filter-status", "failed")
    expect_(rows).to_have_count(30)
    expect_(tab.page.locator("#executions [data-status]").filter(has_text="completed")).to_have_count(0)

    tab.page.select_option("#filter-status", "")
    tab.page.fill("#search-id", "bulk-04")
    expect_(rows).to_have_count(10)
    tab.page.fill("#search-id", "")
    tab.page.fill("#filter-workflow", "greet-nobody")
    expect_(tab.page.locator("#executions")).to_contain_text("No executions match.")

    tab.page.fill("#filter-workflow", "")
    expect_(rows).to_have_count(50)
    execution_id = start(api, "approval", {"item": "live"})  # appears without a reload
    expect_(tab.page.locator(f'#executions tr[data-id="{execution_id}"]')).to_be_visible()


# -- sessions, workers, secrets -------------------------------------------------------------------------
def test_a_task_instance_shows_its_progress_and_is_stopped_from_its_session(tab: Tab, api: httpx.Client) -> None:
    session_id = f"session-{secrets.token_hex(4)}"
    instance_id = f"{session_id}-ticker"
    request = {
        "instance_id": instance_id,
        "session_id": session_id,
        "session_name": "nightly report",
        "task": "ticker",
        "target": f"{MODULE}:ticker",
        "kwargs": {"ticks": 1000},
    }
    assert api.post("/instances", json={"instances": [request]}).status_code == 201
    tab.open("/sessions")
    tab.page.locator(f'#sessions tr[data-id="{session_id}"] a').click()

    card = tab.page.locator(f'.instance[data-instance="{instance_id}"]')
    expect_(card).to_have_attribute("data-status", "running")
    expect_(card.locator(".status-message")).to_have_text(re.compile(r"tick [1-9]\d*"))
    expect_(card.locator(".logs")).to_contain_text("tick 0")
    tab.shoot("session")
    card.get_by_role("button", name="Stop").click()

    expect_(card).to_have_attribute("data-status", "completed")
    expect_(card.locator("pre")).to_contain_text("stopped at tick")
    expect_(card.get_by_role("button", name="Stop")).to_have_count(0)
    assert api.get(f"/instances/{instance_id}").json()["result"].startswith("stopped at tick")
    expect_(tab.page.locator("#session-state")).to_have_text("Every instance of this session has finished.")


def test_the_workers_page_shows_the_live_worker_and_what_it_holds(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "endless")
    wait_status(api, execution_id, "running")
    try:
        tab.open("/workers")
        row = tab.page.locator("#workers tr").first
        served = "approval, broken, endless, gated, inbox, ordering, packing, review, shipping, yearly"
        expect_(row).to_contain_text(served)
        expect_(row).to_contain_text(f"{MODULE}:ticker")
        expect_(row.get_by_role("link", name=execution_id)).to_be_visible()
        expect_(row.locator("td").nth(1)).to_have_text(re.compile(r"just now|\d+ s ago"))
        tab.shoot("workers")
    finally:
        api.post(f"/executions/{execution_id}/cancel")
    expect_(row.get_by_role("link", name=execution_id)).to_have_count(0)


def test_secrets_are_set_listed_by_name_and_removed_from_the_page(tab: Tab, api: httpx.Client) -> None:
    tab.open("/secrets")
    tab.page.fill("#secret-name", "STRIPE_KEY")
    tab.page.fill("#secret-value", "sk-live-do-not-show")
    tab.page.click("#set-secret button[type=submit]")

    expect_(tab.page.locator('#secrets li[data-name="STRIPE_KEY"]')).to_be_visible()
    assert "STRIPE_KEY" in api.get("/secrets").json()["names"]
    assert "sk-live-do-not-show" not in tab.page.content()
    tab.shoot("secrets")
    tab.page.locator('#secrets button[data-name="STRIPE_KEY"]').click()

    expect_(tab.page.locator('#secrets li[data-name="STRIPE_KEY"]')).to_have_count(0)
    assert "STRIPE_KEY" not in api.get("/secrets").json()["names"]


def test_logging_out_forgets_the_token(tab: Tab) -> None:
    tab.page.click("#logout")

    expect_(tab.page.locator("#login")).to_be_visible()
    assert tab.page.evaluate("() => sessionStorage.getItem('taskloom.token')") is None
    tab.page.reload()
    expect_(tab.page.locator("#login")).to_be_visible()


# -- the API routes the dashboard added ----------------------------------------------------------------
def test_the_executions_list_pages_with_a_cursor_and_refuses_a_forged_one(api: httpx.Client, server: Server) -> None:
    store = open_store(server.env["TASKLOOM_DATABASE_URL"])
    try:
        for n in range(5):
            store.create_execution(f"paged-{n}", "paged", None, "completed")
    finally:
        store.close()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"workflow": "paged", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/executions", params=params).json()
        seen += [e["execution_id"] for e in page["executions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"paged-{n}" for n in (4, 3, 2, 1, 0)]
    found = api.get("/executions", params={"id_prefix": "paged-3"}).json()["executions"]
    assert [e["execution_id"] for e in found] == ["paged-3"]
    forged = api.get("/executions", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert forged.status_code == 422
    assert "cursor" in forged.json()["error"]


def test_the_error_route_answers_only_for_a_failed_execution(api: httpx.Client) -> None:
    failed = start(api, "broken", "gadget")
    wait_status(api, failed, "failed")
    error = api.get(f"/executions/{failed}/error").json()
    assert (error["type"], error["message"]) == ("LookupError", "no stock left for 'gadget'")
    assert "reserve_stock" in error["traceback"]

    paused = start(api, "approval", {"item": "x"})
    wait_status(api, paused, "paused")
    refused = api.get(f"/executions/{paused}/error")
    assert refused.status_code == 409
    assert "has not failed" in refused.json()["error"]
