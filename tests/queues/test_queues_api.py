"""``GET /queues``: every queue's limits and depth, from the store the server uses."""

from __future__ import annotations

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
