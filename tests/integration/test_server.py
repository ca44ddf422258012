"""The HTTP server as a real process on loopback, with a real worker process running what it queues."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from processes import free_port, stop, wait_for

from taskloom.client import TaskloomClient
from taskloom.errors import ExecutionNotFoundError, TaskloomError, WorkflowError
from taskloom.secret_store import SecretStore, load_key
from taskloom.settings import Settings
from taskloom.store import open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
MODULE = "serverapp.flows"
T = TypeVar("T")


# -- processes ----------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


def make_env(folder: Path, *, token: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": f"sqlite:///{folder / 'taskloom.db'}",
        "TASKLOOM_HOME": str(folder / "home"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    for name in ("TASKLOOM_API_TOKEN", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY"):
        env.pop(name, None)
    if token is not None:
        env["TASKLOOM_API_TOKEN"] = token
    return env


def start_server(env: dict[str, str], folder: Path, *modules: str) -> Server:
    """``taskloom server`` on a free loopback port, returned once /health answers."""
    for attempt in range(3):
        port = free_port()
        stdout, stderr = folder / f"server-{port}.out", folder / f"server-{port}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskloom", "server", *modules, "--port", str(port)],
                env=env,
                stdout=out,
                stderr=err,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    token = env.get("TASKLOOM_API_TOKEN") or (Path(env["TASKLOOM_HOME"]) / "api.token").read_text()
                    return Server(url, token.strip(), process, stdout, stderr)
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        stop(process)
        if "address already in use" not in stderr.read_text().lower() or attempt == 2:
            raise AssertionError(f"the server did not start:\n{stdout.read_text()}{stderr.read_text()}")
    raise AssertionError("unreachable")


def start_worker(env: dict[str, str], folder: Path) -> subprocess.Popen[bytes]:
    with (folder / "worker.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", MODULE, "--poll", "0.05", "--lease", "5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def env(folder: Path) -> dict[str, str]:
    return make_env(folder, token=secrets.token_urlsafe(24))


@pytest.fixture(scope="module")
def server(env: dict[str, str], folder: Path) -> Iterator[Server]:
    running = start_server(env, folder, MODULE)
    yield running
    stop(running.process)


@pytest.fixture(scope="module")
def worker(env: dict[str, str], folder: Path, server: Server) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(env, folder)
    yield process
    stop(process)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30) as c:
        yield c


def start(api: httpx.Client, workflow: str, input: Any = None) -> str:
    response = api.post("/executions", json={"workflow": workflow, "input": input})
    assert response.status_code == 201, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


def wait_status(api: httpx.Client, execution_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        view: dict[str, Any] = api.get(f"/executions/{execution_id}").json()
        return view if view["status"] in statuses else None

    return wait_for(reached, timeout, what=f"execution {execution_id} to be {' or '.join(statuses)}")


def read_stream(api: httpx.Client, execution_id: str, **headers: str) -> list[tuple[str | None, str, Any]]:
    """The SSE messages of one stream as (id, event, data), until the server closes it."""
    messages: list[tuple[str | None, str, Any]] = []
    fields: dict[str, str] = {}
    with api.stream("GET", f"/executions/{execution_id}/stream", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                messages.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
                fields = {}
    return messages


def database_dump(env: dict[str, str]) -> list[str]:
    """The database as SQL, without the rows that running workers' heartbeats rewrite on their own."""
    path = env["TASKLOOM_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return [line for line in conn.iterdump() if not line.startswith('INSERT INTO "instance_workers"')]


def cli(env: dict[str, str], *args: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--server", server] if server else []
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *prefix, *args], env=env, capture_output=True, text=True, timeout=60
    )


# -- starting, resuming, cancelling -------------------------------------------------------------------
def test_health_answers_without_a_token(server: Server) -> None:
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_workflow_started_over_http_runs_on_a_worker_and_completes(api: httpx.Client, worker: Any) -> None:
    response = api.post("/executions", json={"workflow": "greet", "input": {"name": "ada"}})
    assert response.status_code == 201
    started = response.json()
    assert started["status"] == "queued" and started["workflow"] == "greet"
    assert response.headers["location"] == f"/executions/{started['execution_id']}"

    view = wait_status(api, started["execution_id"], "completed")
    assert view["output"] == "HELLO ADA"
    assert view["input"] == {"name": "ada"}
    assert view["target"] == f"{MODULE}:greet"


def test_a_workflow_can_be_named_by_module_and_qualname(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, f"{MODULE}:greet", {"name": "bo"})
    assert wait_status(api, execution_id, "completed")["output"] == "HELLO BO"


def test_a_paused_workflow_resumed_over_http_with_input_finishes(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "approval", {"item": "laptop"})
    wait_status(api, execution_id, "paused")

    response = api.post(f"/executions/{execution_id}/resume", json={"input": {"approved": True, "by": "cy"}})
    assert response.status_code == 202
    assert response.json() == {"execution_id": execution_id, "status": "queued"}

    view = wait_status(api, execution_id, "completed")
    assert view["output"] == {"item": "LAPTOP", "decision": {"approved": True, "by": "cy"}}
    again = api.post(f"/executions/{execution_id}/resume", json={"input": 1})
    assert again.status_code == 409
    assert "not paused" in again.json()["error"]


def test_a_failed_workflow_shows_its_error_as_json(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "broken")
    view = wait_status(api, execution_id, "failed")
    assert view["output"] == {"type": "ValueError", "message": "broken on purpose"}
    assert "Traceback" not in json.dumps(view)


def test_cancel_stops_a_running_execution_and_refuses_a_finished_one(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "slow", 20)
    wait_status(api, execution_id, "running")

    response = api.post(f"/executions/{execution_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"execution_id": execution_id, "status": "cancelled"}
    completed_at_cancel = sum(
        e["type"] == "step_completed" for e in api.get(f"/executions/{execution_id}/events").json()["events"]
    )
    time.sleep(1.5)  # three steps' time: long enough to see that no more steps run
    events = api.get(f"/executions/{execution_id}/events").json()
    assert events["status"] == "cancelled"
    assert sum(e["type"] == "step_completed" for e in events["events"]) <= completed_at_cancel + 1

    again = api.post(f"/executions/{execution_id}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]


def test_list_filters_by_workflow_and_status(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "greet", {"name": "list"})
    wait_status(api, execution_id, "completed")
    listed = api.get("/executions", params={"workflow": "greet", "status": "completed", "limit": 50}).json()
    assert execution_id in [e["execution_id"] for e in listed["executions"]]
    assert {(e["workflow"], e["status"]) for e in listed["executions"]} == {("greet", "completed")}
    assert len(api.get("/executions", params={"limit": 1}).json()["executions"]) == 1


# -- live events --------------------------------------------------------------------------------------
def test_the_event_stream_delivers_every_event_in_order_and_ends(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "progress", 3)
    messages = read_stream(api, execution_id)

    *events, end = messages
    assert end[1] == "end" and end[0] is None
    assert end[2] == {"execution_id": execution_id, "status": "completed", "last_seq": events[-1][2]["seq"]}
    seqs = [data["seq"] for _, _, data in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [int(i) for i, _, _ in events if i is not None] == seqs
    assert all(kind == data["type"] for _, kind, data in events)
    assert events[0][1] == "execution_started" and events[-1][1] == "execution_completed"
    assert sum(kind == "step_progress" for _, kind, _ in events) == 9
    assert [data for _, _, data in events] == api.get(f"/executions/{execution_id}/events").json()["events"]


def test_the_event_stream_continues_after_last_event_id(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "greet", {"name": "sse"})
    wait_status(api, execution_id, "completed")
    everything = [data["seq"] for _, kind, data in read_stream(api, execution_id) if kind != "end"]

    later = read_stream(api, execution_id, **{"Last-Event-ID": str(everything[1])})
    # seqs number stored rows: a step's start shares its outcome's, so both are at or before the cut
    assert [data["seq"] for _, kind, data in later if kind != "end"] == [s for s in everything if s > everything[1]]
    assert len(later) < len(everything)
    assert later[-1][1] == "end"


def test_the_event_stream_of_a_paused_execution_ends_with_paused(api: httpx.Client, worker: Any) -> None:
    execution_id = start(api, "approval", {"item": "pen"})
    *events, end = read_stream(api, execution_id)
    assert end[2]["status"] == "paused"
    assert events[-1][1] == "execution_paused"
    api.post(f"/executions/{execution_id}/cancel")


# -- auth ---------------------------------------------------------------------------------------------
def test_requests_without_or_with_a_wrong_token_get_401_and_change_nothing(
    server: Server, api: httpx.Client, env: dict[str, str], worker: Any
) -> None:
    paused = start(api, "approval", {"item": "mug"})
    wait_status(api, paused, "paused")
    assert api.put("/secrets/KEPT", json={"value": "original"}).status_code == 204
    wait_for(lambda: not api.get("/executions", params={"status": "running"}).json()["executions"], what="quiet")
    wait_for(lambda: not api.get("/executions", params={"status": "queued"}).json()["executions"], what="quiet")
    before = database_dump(env)

    bodies = {
        ("POST", "/executions"): {"workflow": "greet", "input": {"name": "intruder"}},
        ("POST", "/executions/{execution_id}/resume"): {"input": "approved by intruder"},
        ("PUT", "/secrets/{name}"): {"value": "overwritten"},
    }
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = [
        (method.upper(), path)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    ]
    assert len(operations) >= 15
    wrong_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {server.token}x"},
        {"Authorization": f"Basic {server.token}"},
        {"Authorization": server.token},
        {"Authorization": "Bearer"},
    ]
    for method, path in [*operations, ("GET", "/no/such/route")]:
        url = server.url + path.replace("{execution_id}", paused).replace("{name}", "KEPT")
        for headers in wrong_headers:
            response = httpx.request(method, url, headers=headers, json=bodies.get((method, path)), timeout=10)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "error" in response.json()

    assert database_dump(env) == before
    assert api.get(f"/executions/{paused}").json()["status"] == "paused"
    api.post(f"/executions/{paused}/cancel")


def test_a_first_start_creates_a_private_token_file_and_prints_the_token_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path, token=None)
    token_file = tmp_path / "home" / "api.token"

    first = start_server(env, tmp_path)
    try:
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(token) >= 32
        monkeypatch.delenv("TASKLOOM_API_TOKEN", raising=False)
        monkeypatch.setenv("TASKLOOM_HOME", env["TASKLOOM_HOME"])
        with TaskloomClient(first.url) as client:  # the token from the file
            assert client.list_executions() == []
    finally:
        stop(first.process)
    assert token in first.output()

    second = start_server(env, tmp_path)
    try:
        assert httpx.get(f"{second.url}/secrets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{second.url}/secrets", headers={"Authorization": "Bearer other"}).status_code == 401
    finally:
        stop(second.process)
    assert token not in second.output()
    assert token_file.read_text().strip() == token


# -- PostgreSQL ---------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_the_server_and_a_worker_share_a_postgresql_store(tmp_path: Path, pg_fresh_url: str) -> None:
    env = {**make_env(tmp_path, token="pg-token"), "TASKLOOM_DATABASE_URL": pg_fresh_url}
    running = start_server(env, tmp_path, MODULE)
    worker = start_worker(env, tmp_path)
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": "Bearer pg-token"}, timeout=30) as api:
            execution_id = start(api, "approval", {"item": "pg"})
            *_, end = read_stream(api, execution_id)
            assert end[2]["status"] == "paused"
            assert api.post(f"/executions/{execution_id}/resume", json={"input": "yes"}).status_code == 202
            assert wait_status(api, execution_id, "completed")["output"] == {"item": "PG", "decision": "yes"}
            assert api.put("/secrets/PG_KEY", json={"value": "v"}).status_code == 204
            assert api.get("/secrets").json() == {"names": ["PG_KEY"]}
            # PostgreSQL refuses NUL in text: the server answers before the store sees it.
            assert api.get("/executions", params={"workflow": "a\x00b"}).status_code == 422
            assert api.get("/executions/a%00b").status_code == 404
            assert httpx.post(f"{running.url}/executions", json={"workflow": "greet"}).status_code == 401
            assert len(api.get("/executions").json()["executions"]) == 1
    finally:
        stop(worker)
        stop(running.process)


# -- secrets ------------------------------------------------------------------------------------------
def test_secrets_are_stored_encrypted_and_their_values_never_returned(
    server: Server, api: httpx.Client, env: dict[str, str]
) -> None:
    value = f"s3cr3t-{secrets.token_hex(8)}"
    response = api.put("/secrets/PAYMENT_KEY", json={"value": value})
    assert response.status_code == 204 and response.content == b""

    listed = api.get("/secrets")
    assert "PAYMENT_KEY" in listed.json()["names"]
    assert value not in listed.text

    database = Path(env["TASKLOOM_DATABASE_URL"].removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"PAYMENT_KEY" in raw, "the secret reached the database"
    assert value.encode() not in raw
    settings = Settings.from_env().replace(home_dir=env["TASKLOOM_HOME"], secret_key=None)
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    try:
        assert SecretStore(store, load_key(settings)).get("PAYMENT_KEY") == value, "readable with the server's key"
    finally:
        store.close()

    assert api.delete("/secrets/PAYMENT_KEY").status_code == 204
    missing = api.delete("/secrets/PAYMENT_KEY")
    assert missing.status_code == 404 and "PAYMENT_KEY" in missing.json()["error"]
    assert value not in server.output()


def test_secret_names_and_values_are_checked(api: httpx.Client) -> None:
    assert api.put("/secrets/has%20space", json={"value": "x"}).status_code == 422
    bad_value = api.put("/secrets/OK", json={"value": 42})
    assert bad_value.status_code == 422 and "'value'" in bad_value.json()["error"]
    assert api.put("/secrets/OK", json={}).status_code == 422


# -- errors -------------------------------------------------------------------------------------------
def test_unknown_execution_ids_get_404_everywhere(api: httpx.Client) -> None:
    for method, action in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/stream"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
    ]:
        response = api.request(method, f"/executions/nope-123{action}", json={} if method == "POST" else None)
        assert response.status_code == 404, (method, action)
        assert response.json() == {"error": "no execution 'nope-123'", "type": "ExecutionNotFoundError"}


def test_an_unknown_workflow_gets_404_naming_it(api: httpx.Client) -> None:
    response = api.post("/executions", json={"workflow": "no_such_flow"})
    assert response.status_code == 404
    assert "'no_such_flow'" in response.json()["error"]
    assert "greet" in response.json()["error"], "the message lists the workflows the server knows"
    outside = api.post("/executions", json={"workflow": "os:system"})
    assert outside.status_code == 404, "a request never makes the server import a module"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "'workflow'"),
        ({"workflow": 3}, "'workflow'"),
        ({"workflow": ""}, "'workflow'"),
        ({"workflow": "greet", "inputs": 1}, "'inputs'"),
        ([1, 2], "JSON object"),
        ("not json", "not valid JSON"),
        ('{"workflow": "greet", "input": NaN}', "NaN"),
        ('{"workflow": "greet", "input": 1e999}', "too large"),
    ],
)
def test_a_bad_start_body_gets_422_naming_the_field(api: httpx.Client, body: Any, named: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = api.post("/executions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]


def test_bad_parameters_get_422_and_a_non_json_body_415(api: httpx.Client) -> None:
    cases: list[tuple[dict[str, str | int], str]] = [
        ({"limit": 0}, "'limit'"),
        ({"limit": "x"}, "'limit'"),
        ({"status": "done"}, "'status'"),
    ]
    for params, named in cases:
        response = api.get("/executions", params=params)
        assert response.status_code == 422 and named in response.json()["error"]
    wrong_type = api.post("/executions", content=b"workflow=greet", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_unknown_routes_and_methods_answer_json(api: httpx.Client) -> None:
    assert api.get("/nothing/here").json()["error"].startswith("no route")
    response = api.delete("/executions")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_an_unexpected_error_is_a_json_500_without_a_traceback() -> None:
    from taskloom.server.app import create_app

    class BrokenStore:
        url = "postgresql://user:password@db/taskloom"

        def get_execution(self, execution_id: str) -> None:
            raise RuntimeError("the disk is on fire")

    app = create_app(token="t", store=BrokenStore())  # type: ignore[arg-type]

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/executions/abc", headers={"Authorization": "Bearer t"})

    response = anyio.run(get)
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error; the server log has the details"}
    assert "fire" not in response.text and "password" not in response.text


def test_the_openapi_document_describes_every_route_the_app_serves(tmp_path: Path) -> None:
    from taskloom.server.app import create_app

    store = open_store(f"sqlite:///{tmp_path / 'db'}")
    app = create_app(token="t", store=store)
    served = {
        (method, route.path)
        for route in app.state.served
        if route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    document = app.openapi()
    described = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    assert served == described
    assert len(described) >= 16
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path == "/health":
                assert "security" not in op
                continue
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"], (method, path)
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/json"], (method, path, code)
    store.close()


def test_the_status_names_of_the_models_are_the_stores() -> None:
    from typing import get_args

    from taskloom.server.models import ExecutionStatusName, InstanceStatusName
    from taskloom.store.base import ExecutionStatus
    from taskloom.store.instances import InstanceStatus

    assert get_args(ExecutionStatusName) == ExecutionStatus.ALL
    assert get_args(InstanceStatusName) == InstanceStatus.ALL


def test_the_docs_page_is_interactive_needs_no_token_and_loads_nothing_from_elsewhere(server: Server) -> None:
    page = httpx.get(f"{server.url}/docs", timeout=30)
    assert page.status_code == 200
    assert "SwaggerUIBundle(" in page.text and "'/openapi.json'" in page.text
    assert "//" not in page.text, "every URL on the page is this server's: it works offline"
    script = httpx.get(f"{server.url}/docs/swagger-ui-bundle.js", timeout=30)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in script.text
    style = httpx.get(f"{server.url}/docs/swagger-ui.css", timeout=30)
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert httpx.get(f"{server.url}/docs/other.js", timeout=30).status_code == 401


# -- the client and the CLI ----------------------------------------------------------------------------
def test_the_client_mirrors_the_routes_and_raises_taskloom_errors(server: Server, worker: Any) -> None:
    with TaskloomClient(server.url, server.token) as client:
        assert client.health() == {"status": "ok"}
        started = client.start("approval", {"item": "cup"})
        kinds = [kind for kind, _ in client.stream(started["execution_id"])]
        assert kinds[0] == "execution_started" and kinds[-2:] == ["execution_paused", "end"]
        client.resume(started["execution_id"], "ok")
        assert [kind for kind, _ in client.stream(started["execution_id"])][-1] == "end"
        assert client.status(started["execution_id"])["output"] == {"item": "CUP", "decision": "ok"}
        assert client.events(started["execution_id"], after=1)[0]["seq"] > 1

        with pytest.raises(WorkflowError, match="not paused"):
            client.resume(started["execution_id"], "again")
        with pytest.raises(ExecutionNotFoundError, match="no execution 'missing'"):
            client.status("missing")
        client.set_secret("CLIENT_KEY", "v")
        assert "CLIENT_KEY" in client.list_secrets()
        assert client.remove_secret("CLIENT_KEY") is True
        assert client.remove_secret("CLIENT_KEY") is False
    with TaskloomClient(server.url, "wrong") as client, pytest.raises(TaskloomError, match="refused the API token"):
        client.list_executions()
    with TaskloomClient(f"http://127.0.0.1:{free_port()}", "t") as client, pytest.raises(TaskloomError, match="reach"):
        client.health()


def test_the_cli_runs_inspects_and_cancels_through_the_server(server: Server, env: dict[str, str], worker: Any) -> None:
    ran = cli(env, "run", f"{MODULE}:greet", '{"name": "cli"}', server=server.url)
    assert ran.returncode == 0, ran.stderr
    assert "HELLO CLI" in ran.stdout

    ran_json = cli(env, "run", "progress", "2", "--json", server=server.url)
    assert ran_json.returncode == 0, ran_json.stderr
    *event_lines, result_line = ran_json.stdout.strip().splitlines()
    result = json.loads(result_line)
    assert result["type"] == "result" and result["status"] == "completed" and result["output"] == 6
    assert [json.loads(line)["type"] for line in event_lines][-1] == "execution_completed"
    execution_id = result["execution_id"]

    status = cli(env, "status", execution_id, "--json", server=server.url)
    assert json.loads(status.stdout)["status"] == "completed"
    events = cli(env, "events", execution_id, "--json", server=server.url)
    assert json.loads(events.stdout)[0]["type"] == "execution_started"
    human = cli(env, "events", execution_id, server=server.url)
    assert "execution_completed" in human.stdout
    listed = cli(env, "list", "--workflow", "progress", "--json", server=server.url)
    assert execution_id in [e["execution_id"] for e in json.loads(listed.stdout)]

    with TaskloomClient(server.url, server.token) as client:
        slow = client.start("slow", 20)["execution_id"]
    by_env = {**env, "TASKLOOM_SERVER_URL": server.url}
    cancelled = cli(by_env, "cancel", slow)  # the server URL from the environment
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cli(by_env, "status", slow).stdout
    again = cli(env, "cancel", slow, "--server", server.url)  # --server after the command works too
    assert again.returncode == 2 and "already cancelled" in again.stderr

    failed = cli(env, "run", "broken", server=server.url)
    assert failed.returncode == 1 and "broken on purpose" in failed.stderr
    unknown = cli(env, "status", "nope", server=server.url)
    assert unknown.returncode == 2 and "no execution 'nope'" in unknown.stderr


def test_the_cli_resumes_through_the_server(server: Server, env: dict[str, str], worker: Any) -> None:
    paused = cli(env, "run", "approval", '{"item": "box"}', server=server.url)
    assert paused.returncode == 0 and "paused at 'approve'" in paused.stdout
    with TaskloomClient(server.url, server.token) as client:
        execution_id = client.list_executions(workflow="approval", status="paused")[0]["execution_id"]
    resumed = cli(env, "resume", execution_id, '"yes"', server=server.url)
    assert resumed.returncode == 0, resumed.stderr
    assert '"decision": "yes"' in resumed.stdout


def test_the_cli_cancels_locally_without_a_server(tmp_path: Path) -> None:
    env = make_env(tmp_path, token=None)
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    from taskloom.executions import queue_execution

    execution_id = queue_execution(store, "greet", f"{MODULE}:greet", {"name": "x"})
    cancelled = cli(env, "cancel", execution_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"execution_id": execution_id, "status": "cancelled"}
    assert store.get_execution(execution_id).status == "cancelled"  # type: ignore[union-attr]
    store.close()


# -- small fixes: headers, limits, targets no worker serves ---------------------------------------------
# HTTP headers are Latin-1 on the wire: b"\xb2" is "²", which str.isdigit() accepts and int() refuses.
@pytest.mark.parametrize("value", [b"\xb2", b"1\xb2", b"\xb9\xb3", b"12x", b"-1", b"1" * 19])
def test_a_last_event_id_that_is_not_ascii_digits_is_a_400_naming_the_header(
    api: httpx.Client, worker: Any, value: bytes
) -> None:
    execution_id = start(api, "greet", {"name": "ids"})
    for path in (f"/executions/{execution_id}/stream", "/sessions/no-such-session/updates"):
        response = api.get(path, headers={"Last-Event-ID": value})  # type: ignore[dict-item]
        assert response.status_code == 400, (path, response.text)
        assert "'Last-Event-ID'" in response.json()["error"]


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_a_list_limit_below_1_is_a_422_naming_limit(api: httpx.Client, limit: str) -> None:
    response = api.get("/executions", params={"limit": limit})
    assert response.status_code == 422
    assert "'limit'" in response.json()["error"]


def _instance_request(target: str) -> dict[str, Any]:
    instance_id = f"i-{secrets.token_hex(6)}"
    return {"instance_id": instance_id, "session_id": f"s-{instance_id}", "task": "t", "target": target, "args": []}


def test_queueing_an_instance_of_a_task_no_worker_serves_is_refused_naming_the_worker_command(
    api: httpx.Client, worker: Any
) -> None:
    served = _instance_request("serverapp.flows:shout")
    served["args"] = ["registered"]
    # The worker registers the tasks it imported before it claims anything; wait until it has started.
    wait_for(lambda: api.post("/instances", json={"instances": [served]}).status_code == 201, 30, what="a worker")
    ghost = _instance_request("serverapp.ghosts:haunt")
    response = api.post("/instances", json={"instances": [ghost, _instance_request("serverapp.flows:shout")]})
    assert response.status_code == 409, response.text
    body = response.json()
    assert "'serverapp.ghosts:haunt'" in body["error"]
    assert "taskloom worker serverapp.ghosts" in body["error"]
    assert body["type"] == "BackendError"
    assert api.get(f"/instances/{ghost['instance_id']}").status_code == 404, "nothing of the batch was queued"
