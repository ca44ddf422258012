"""The dashboard's graph, schedules, queues, messages and children, in a real browser and over the API on
loopback.

Same harness as test_dashboard.py (``conftest.py``): a real server and worker, headless Chromium. The
graph test holds a node on a gate file so that the page is seen drawing it running, then completed.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from harness import Server, Tab, expect_, start, wait_status

from taskloom import serde
from taskloom.store import open_store
from taskloom.store.base import QueueRecord

pytestmark = pytest.mark.integration


# -- a Graph ------------------------------------------------------------------------------------------------
def expect_nodes(tab: Tab, **states: str) -> None:
    """Each named node of the page's graph is drawn in its state, in the order given (each waits)."""
    for name, state in states.items():
        expect_(tab.page.locator(f'#graphs svg [data-node="{name}"]')).to_have_attribute("data-state", state)


def test_a_graphs_nodes_are_drawn_with_their_states_as_they_change(tab: Tab, api: httpx.Client, server: Server) -> None:
    gate = server.folder / f"gate-{secrets.token_hex(4)}"
    execution_id = start(api, "shipping", {"n": 3, "gate": str(gate)})
    tab.open(f"/executions/{execution_id}")
    graph = tab.page.locator("#graphs svg")

    expect_nodes(tab, standard="running", measure="completed", express="skipped", label="pending")
    expect_(graph.locator("path.edge")).to_have_count(4)
    expect_(graph.locator('path.edge.conditional[data-edge="measure->express"]')).to_have_count(1)
    expect_(graph.locator('path.edge:not(.conditional)[data-edge="standard->label"]')).to_have_count(1)
    expect_(graph.locator('[data-node="standard"]')).to_contain_text("step 2")
    tab.shoot("execution-graph")
    gate.touch()

    expect_nodes(tab, standard="completed", label="completed", express="skipped")
    expect_(tab.page.locator("#execution-status")).to_have_text("completed")
    assert api.get(f"/executions/{execution_id}").json()["output"] == "label: standard 3"


def test_a_graph_paused_in_a_node_shows_it_paused_and_after_the_resume_its_first_node_replayed(
    tab: Tab, api: httpx.Client
) -> None:
    execution_id = start(api, "review", "draft one")
    wait_status(api, execution_id, "paused")
    tab.open(f"/executions/{execution_id}")
    expect_nodes(tab, draft="completed", approve="paused", publish="pending")
    tab.page.fill("#resume-input", '"yes"')
    tab.page.click("#resume")

    expect_(tab.page.locator("#execution-status")).to_have_text("completed")
    expect_nodes(tab, draft="replayed", approve="completed", publish="completed")
    assert api.get(f"/executions/{execution_id}").json()["output"] == "label: yes"


def test_an_execution_without_a_graph_shows_no_graph_section(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "approval", {"item": "mug"})
    tab.open(f"/executions/{execution_id}")
    expect_(tab.page.locator("#execution-status")).to_have_text("paused")
    expect_(tab.page.locator('#timeline .row[data-step="1"]')).to_be_visible()
    expect_(tab.page.locator("#graphs")).to_be_hidden()


# -- schedules ----------------------------------------------------------------------------------------------
def test_a_schedule_is_listed_paused_and_resumed_from_the_schedules_page(tab: Tab, api: httpx.Client) -> None:
    tab.page.click('#nav a[data-page="schedules"]')
    row = tab.page.locator('#schedules tr[data-name="yearly"]')

    expect_(row).to_have_attribute("data-paused", "false")
    expect_(row.locator("td").nth(1)).to_have_text("yearly")
    expect_(row.locator("td").nth(2)).to_have_text("0 3 1 1 *")
    expect_(row.locator("td").nth(3)).to_have_text("UTC")
    next_new_year = f"{time.gmtime().tm_year + 1}-01-01T03:00:00+00:00"
    expect_(row.locator(".next-tick span")).to_have_attribute("title", next_new_year)
    tab.shoot("schedules", full_page=False)
    row.get_by_role("button", name="Pause").click()

    expect_(row).to_have_attribute("data-paused", "true")
    expect_(row.locator(".state")).to_have_text("paused")
    expect_(row.locator(".next-tick")).to_have_text("none")
    listed = {s["name"]: s for s in api.get("/schedules").json()["schedules"]}
    assert (listed["yearly"]["paused"], listed["yearly"]["next_tick"]) == (True, None)
    row.get_by_role("button", name="Resume").click()

    expect_(row).to_have_attribute("data-paused", "false")
    assert {s["name"]: s for s in api.get("/schedules").json()["schedules"]}["yearly"]["paused"] is False


# -- messages -----------------------------------------------------------------------------------------------
def test_a_message_sent_from_an_executions_page_is_received_by_the_workflow(tab: Tab, api: httpx.Client) -> None:
    execution_id = start(api, "inbox")
    wait_status(api, execution_id, "paused")
    tab.open(f"/executions/{execution_id}")
    expect_(tab.page.locator("#messages")).to_contain_text("No messages.")

    tab.page.fill("#message-topic", "greeting")
    tab.page.fill("#message-value", "{not json")
    tab.page.click("#send-message button[type=submit]")
    expect_(tab.page.locator("#message-error")).to_contain_text("not JSON")
    assert api.get(f"/executions/{execution_id}/messages").json()["messages"] == []
    tab.page.fill("#message-value", '"hello from the page"')
    tab.page.click("#send-message button[type=submit]")

    expect_(tab.page.locator("#execution-status")).to_have_text("completed")
    expect_(tab.page.locator("#output")).to_have_text('"HELLO FROM THE PAGE"')
    row = tab.page.locator('#messages tr[data-topic="greeting"]')
    expect_(row).to_have_attribute("data-received", "true")
    expect_(row.locator(".received")).to_contain_text("by step 1")
    expect_(tab.page.locator("#send-message")).to_be_hidden()


# -- children -----------------------------------------------------------------------------------------------
def test_a_parents_page_links_to_its_child_and_the_childs_page_back_to_its_parent(tab: Tab, api: httpx.Client) -> None:
    parent_id = start(api, "ordering", "box")
    wait_status(api, parent_id, "completed")
    tab.open(f"/executions/{parent_id}")

    child = tab.page.locator("#children li").first
    expect_(child.locator("[data-status]")).to_have_text("completed")
    expect_(child).to_contain_text("packing")
    child.get_by_role("link").click()

    expect_(tab.page.locator("#execution-id")).not_to_have_text(parent_id)
    expect_(tab.page.locator("#parent-link")).to_have_text(parent_id)
    expect_(tab.page.locator("#output")).to_have_text('"BOX"')
    tab.page.click("#parent-link")
    expect_(tab.page.locator("#execution-id")).to_have_text(parent_id)


# -- the API routes the dashboard reads ---------------------------------------------------------------------
def test_schedules_are_listed_and_paused_and_resumed_over_the_api(api: httpx.Client, server: Server) -> None:
    created = time.time()
    store = open_store(server.env["TASKLOOM_DATABASE_URL"])
    try:  # as a worker would store it, for a workflow it runs (on January 1st: it never ticks in this test)
        blob = serde.dumps({"k": 1}, what="input")
        zone = "Europe/Copenhagen"
        store.upsert_schedule("api-nightly", "yearly", None, "30 2 1 1 *", zone, blob, "none", now=created)
    finally:
        store.close()
    listed = {s["name"]: s for s in api.get("/schedules").json()["schedules"]}
    assert listed["api-nightly"]["workflow"] == "yearly"
    assert (listed["api-nightly"]["timezone"], listed["api-nightly"]["catchup"]) == ("Europe/Copenhagen", "none")
    assert listed["api-nightly"]["input"] == {"k": 1}
    assert listed["api-nightly"]["next_tick"].endswith("-01-01T02:30:00+01:00")  # CET, the winter offset

    paused = api.post("/schedules/api-nightly/pause")
    assert paused.status_code == 200
    assert (paused.json()["paused"], paused.json()["next_tick"]) == (True, None)
    resumed = api.post("/schedules/api-nightly/resume").json()
    assert resumed["paused"] is False
    assert resumed["last_tick"] >= listed["api-nightly"]["last_tick"]  # from now: the missed ticks are skipped

    missing = api.post("/schedules/no-such-schedule/pause")
    assert missing.status_code == 404
    assert "no schedule named 'no-such-schedule'" in missing.json()["error"]
    assert "api-nightly" in missing.json()["error"]
    assert httpx.get(f"{server.url}/schedules").status_code == 401


def test_an_executions_messages_are_listed_received_or_pending(api: httpx.Client) -> None:
    execution_id = start(api, "inbox")
    wait_status(api, execution_id, "paused")
    for topic, value in (("other", [1, 2]), ("greeting", "hi")):
        sent = api.post(f"/executions/{execution_id}/messages", json={"topic": topic, "value": value})
        assert sent.status_code == 202
    wait_status(api, execution_id, "completed")

    messages = api.get(f"/executions/{execution_id}/messages").json()
    assert messages["execution_id"] == execution_id
    other, greeting = messages["messages"]
    assert (other["topic"], other["value"]) == ("other", [1, 2])
    assert (other["received_step"], other["received_at"]) == (None, None)
    assert (greeting["topic"], greeting["value"], greeting["received_step"]) == ("greeting", "hi", "1")
    assert greeting["sent_at"] <= greeting["received_at"]
    assert other["seq"] < greeting["seq"]
    assert api.get("/executions/no-such-execution/messages").status_code == 404


def test_an_executions_children_are_listed_with_their_status(api: httpx.Client) -> None:
    parent_id = start(api, "ordering", "crate")
    wait_status(api, parent_id, "completed")

    children = api.get(f"/executions/{parent_id}/children").json()
    assert children["execution_id"] == parent_id
    (child,) = children["children"]
    assert (child["workflow"], child["status"], child["parent_id"], child["output"]) == (
        "packing",
        "completed",
        parent_id,
        "CRATE",
    )
    assert api.get(f"/executions/{child['execution_id']}/children").json()["children"] == []
    assert api.get("/executions/no-such-execution/children").status_code == 404


# -- queues -------------------------------------------------------------------------------------------------
def test_the_queues_page_shows_each_queues_limits_depth_and_running(tab: Tab, server: Server) -> None:
    store = open_store(server.env["TASKLOOM_DATABASE_URL"])
    try:  # a queue no worker here serves: its executions stay queued, and its depth is theirs
        store.upsert_queue(QueueRecord("mail", concurrency=2, worker_concurrency=1, rate_count=10, rate_seconds=60))
        store.upsert_queue(QueueRecord("digest"))
        for n in range(3):
            store.create_execution(f"mail-{secrets.token_hex(4)}-{n}", "send_mail", None, "queued", queue="mail")
    finally:
        store.close()
    tab.page.click('#nav a[data-page="queues"]')
    row = tab.page.locator('#queues tr[data-name="mail"]')

    expect_(row.locator(".concurrency")).to_have_text("2")
    expect_(row.locator(".worker-concurrency")).to_have_text("1")
    expect_(row.locator(".rate-limit")).to_have_text("10 per 60 s")
    expect_(row.locator(".queued")).to_have_text("3")
    expect_(row.locator(".running")).to_have_text("0")
    unlimited = tab.page.locator('#queues tr[data-name="digest"]')
    expect_(unlimited.locator(".concurrency")).to_have_text("none")
    expect_(unlimited.locator(".rate-limit")).to_have_text("none")
    expect_(unlimited.locator(".queued")).to_have_text("0")
    tab.shoot("queues", full_page=False)
