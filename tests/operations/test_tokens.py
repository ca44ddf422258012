"""Named API tokens with roles: the table on both stores, the CLI, and a real server walked route by route.

The role walk takes every operation of the server's own OpenAPI document, so a route added later is
checked without anyone listing it here: each is called with a ``read``, an ``operate`` and an ``admin``
token and the server's own token, and must refuse exactly the roles below the one it needs (403, before
the route runs) and let the others through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import free_port, stop, wait_for

from taskloom.store import open_store
from taskloom.tokens import ROLES, TokenError, TokenTable, digest, required_role, role_allows

pytestmark = pytest.mark.integration

SERVER_TOKEN = "the-server-token-for-the-role-walk"


# -- the table, on both stores ------------------------------------------------------------------------
def test_a_token_is_stored_as_its_digest_and_found_by_it(store_url: str) -> None:
    store = open_store(store_url)
    try:
        table = TokenTable(store)
        token = table.create("dashboard", "read")
        assert token.startswith("tlk_") and len(token) > 40
        assert table.role_of(token) == ("dashboard", "read")
        assert table.role_of(token + "x") is None
        (record,) = table.list()
        assert (record.name, record.role, record.revoked_at) == ("dashboard", "read", None)
        assert record.last_used_at is not None  # the lookup above noted its use
    finally:
        store.close()


def test_the_database_never_holds_a_token_itself(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    store = open_store(f"sqlite:///{path}")
    try:
        token = TokenTable(store).create("ci", "operate")
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("taskloom.db"))
    assert token.encode() not in raw
    assert digest(token).encode() in raw


def test_a_revoked_token_is_refused_and_listed_as_revoked(store_url: str) -> None:
    store = open_store(store_url)
    try:
        table = TokenTable(store)
        token = table.create("ops", "operate")
        table.revoke("ops")
        assert table.role_of(token) is None
        assert table.list()[0].revoked_at is not None
        with pytest.raises(TokenError, match="revoked already"):
            table.revoke("ops")
        with pytest.raises(TokenError, match="no token named 'ghost'"):
            table.revoke("ghost")
        with pytest.raises(TokenError, match="exists already"):
            table.create("ops", "read")  # a revoked name stays taken: the list keeps its history
    finally:
        store.close()


@pytest.mark.parametrize(("name", "role", "message"), [("bad name", "read", "token name"), ("ok", "root", "role")])
def test_a_bad_name_or_role_is_named(store_url: str, name: str, role: str, message: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(TokenError, match=message):
            TokenTable(store).create(name, role)
    finally:
        store.close()


def test_roles_include_the_weaker_ones() -> None:
    assert [role_allows("read", needed) for needed in ROLES] == [True, False, False]
    assert [role_allows("operate", needed) for needed in ROLES] == [True, True, False]
    assert [role_allows("admin", needed) for needed in ROLES] == [True, True, True]
    assert not role_allows("root", "read")
    assert required_role("GET", "/secrets") == "admin"
    assert required_role("GET", "/tokens/x") == "admin"
    assert required_role("GET", "/secretsauce") == "read"  # a prefix of a word is not the path
    assert required_role("POST", "/executions") == "operate"
    assert required_role("GET", "/executions") == "read"


# -- a real server -------------------------------------------------------------------------------------
def _env(tmp_path: Path, store_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "TASKLOOM_API_TOKEN": SERVER_TOKEN,
    }
    env.pop("TASKLOOM_SERVER_URL", None)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    env = _env(tmp_path, store_url)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "server", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool | None:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200 or None
        except httpx.TransportError:
            return None

    wait_for(up, timeout=60, what="the server")
    try:
        yield url, env
    finally:
        stop(process)


def make_tokens(env: dict[str, str]) -> dict[str, str]:
    tokens = {}
    for role in ROLES:
        made = cli(env, "tokens", "create", f"walk-{role}", "--role", role, "--json")
        assert made.returncode == 0, made.stderr
        tokens[role] = json.loads(made.stdout)["token"]
    return tokens


def operations(url: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    found = []
    for path, methods in document["paths"].items():
        for method in methods:
            if method in {"get", "post", "put", "delete", "patch"}:
                found.append((method.upper(), path))
    return found


def call(url: str, token: str, method: str, path: str) -> int:
    concrete = path
    while "{" in concrete:
        start, end = concrete.index("{"), concrete.index("}")
        concrete = concrete[:start] + "no-such-thing" + concrete[end + 1 :]
    headers = {"Authorization": f"Bearer {token}"}
    body = {} if method in {"POST", "PUT", "PATCH"} else None
    with (
        httpx.Client(base_url=url, timeout=20) as client,
        client.stream(method, concrete, headers=headers, json=body) as response,
    ):
        return response.status_code  # a live stream's headers are enough: it passed auth


def test_every_route_refuses_exactly_the_roles_below_the_one_it_needs(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    tokens = make_tokens(env) | {"server token": SERVER_TOKEN}
    walked = operations(url)
    assert len(walked) >= 20, walked  # the whole API, not an empty document
    assert ("GET", "/tokens") in walked and ("POST", "/executions") in walked and ("GET", "/secrets") in walked
    wrong: list[str] = []
    for method, path in walked:
        needed = required_role(method, path)
        for holder, token in tokens.items():
            role = "admin" if holder == "server token" else holder
            status = call(url, token, method, path)
            if role_allows(role, needed):
                if status in (401, 403):
                    wrong.append(f"{method} {path}: {holder} refused ({status}), needs only {needed}")
            elif status != 403:
                wrong.append(f"{method} {path}: {holder} got {status}, should be refused (needs {needed})")
    assert not wrong, "\n".join(wrong)


def test_a_refusal_names_the_token_its_role_and_the_role_needed(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    tokens = make_tokens(env)
    response = httpx.get(f"{url}/secrets", headers={"Authorization": f"Bearer {tokens['operate']}"}, timeout=10)
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "Forbidden"
    assert "'walk-operate'" in body["error"] and "'operate'" in body["error"] and "'admin'" in body["error"]
    who = httpx.get(f"{url}/whoami", headers={"Authorization": f"Bearer {tokens['read']}"}, timeout=10)
    assert who.json() == {"name": "walk-read", "role": "read"}


def test_a_read_token_cannot_change_anything(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    tokens = make_tokens(env)
    reader = {"Authorization": f"Bearer {tokens['read']}"}
    refused = httpx.post(f"{url}/tokens", json={"name": "sneaky", "role": "admin"}, headers=reader, timeout=10)
    assert refused.status_code == 403
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    names = [t["name"] for t in httpx.get(f"{url}/tokens", headers=admin, timeout=10).json()["tokens"]]
    assert "sneaky" not in names


def test_revoking_takes_effect_on_the_next_request(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    admin = {"Authorization": f"Bearer {SERVER_TOKEN}"}
    made = httpx.post(f"{url}/tokens", json={"name": "temp", "role": "read"}, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["role"] == "read"
    reader = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/executions", headers=reader, timeout=10).status_code == 200
    revoked = cli(env, "tokens", "revoke", "temp")
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{url}/executions", headers=reader, timeout=10).status_code == 401
    listed = cli(env, "tokens", "list", "--json")
    (entry,) = [t for t in json.loads(listed.stdout) if t["name"] == "temp"]
    assert entry["revoked_at"] is not None and token not in listed.stdout


def test_the_cli_names_a_duplicate_token_without_a_traceback(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'taskloom.db'}")
    assert cli(env, "tokens", "create", "one", "--role", "read").returncode == 0
    again = cli(env, "tokens", "create", "one", "--role", "admin")
    assert again.returncode != 0 and "exists already" in again.stderr and "Traceback" not in again.stderr
    listed = cli(env, "tokens", "list")
    assert "one  read" in listed.stdout and "active" in listed.stdout
