"""``GET /queues``: every queue's limits and depth, from the store the server uses."""

from __future__ import annotations

import queueapp
from fastapi.testclient import TestClient

from taskloom.server.app import create_app
from taskloom.store import Store
from taskloom.store.base import QueueRecord


def test_get_queues_lists_limits_depth_and_running(store: Store) -> None:
    store.upsert_queue(QueueRecord("emails", concurrency=2, worker_concurrency=1, rate_count=10, rate_seconds=1.0))
    for n in range(3):
        store.create_execution(f"e{n}", "wf", None, "queued", queue="emails")
    store.create_execution("nowhere-0", "wf", None, "queued", queue="nowhere")
    store.claim_next_execution("w", 30.0, ["wf"], queues=["emails"])
    with TestClient(create_app(token="t", store=store)) as client:
        response = client.get("/queues", headers={"Authorization": "Bearer t"})
        refused = client.get("/queues")
    assert response.status_code == 200
    assert response.json() == {
        "queues": [
            {
                "name": "emails",
                "concurrency": 2,
                "worker_concurrency": 1,
                "rate_limit": {"count": 10, "seconds": 1.0},
                "queued": 2,
                "running": 1,
            },
            {
                "name": "nowhere",
                "concurrency": None,
                "worker_concurrency": None,
                "rate_limit": None,
                "queued": 1,
                "running": 0,
            },
        ]
    }
    assert refused.status_code == 401


def test_post_executions_places_an_execution_on_a_queue_with_a_priority(store: Store) -> None:
    with TestClient(create_app(token="t", store=store, workflows={"job": queueapp.job})) as client:
        auth = {"Authorization": "Bearer t"}
        late = client.post("/executions", json={"workflow": "job", "queue": "q", "priority": 9}, headers=auth)
        soon = client.post(
            "/executions", json={"workflow": "job", "queue": "q", "priority": -1, "execution_id": "soon"}, headers=auth
        )
        plain = client.post("/executions", json={"workflow": "job"}, headers=auth)
        bad = client.post("/executions", json={"workflow": "job", "priority": 2**40}, headers=auth)
        blank = client.post("/executions", json={"workflow": "job", "queue": " "}, headers=auth)
    assert (late.status_code, soon.status_code, plain.status_code) == (201, 201, 201)
    assert bad.status_code == 422 and "priority" in bad.json()["error"]
    assert blank.status_code == 422 and "queue" in blank.json()["error"]
    claimed = [store.claim_next_execution("w", 30.0, ["job"], queues=["q"]) for _ in range(3)]
    assert [None if r is None else r.id for r in claimed] == ["soon", late.json()["execution_id"], None]
    other = store.claim_next_execution("w", 30.0, ["job"], queues=["default"])
    assert other is not None and other.id == plain.json()["execution_id"]
