"""The API token must match exactly, and the scheme's case must not matter (issue 14).

``token_matches`` is checked on its own, then through the real app served by uvicorn on 127.0.0.1, with
a token cut short, one made longer, and a different one of the same length: a check that compared only
a prefix, or only as many bytes as were sent, would let each of them in.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from processes import free_port, wait_for

from taskloom.secret_store import generate_key
from taskloom.server.app import create_app
from taskloom.server.auth import BearerAuth, token_matches
from taskloom.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

TOKEN = "tok-" + secrets.token_urlsafe(24)


def _different_of_equal_length(token: str) -> str:
    """``token`` with its last character changed: same length, same prefix, not the token."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


#: Authorization headers that must be refused, with why
WRONG = {
    "truncated by one": f"Bearer {TOKEN[:-1]}",
    "half the token": f"Bearer {TOKEN[: len(TOKEN) // 2]}",
    "one character": f"Bearer {TOKEN[0]}",
    "longer": f"Bearer {TOKEN}x",
    "the token twice": f"Bearer {TOKEN}{TOKEN}",
    "different, equal length": f"Bearer {_different_of_equal_length(TOKEN)}",
    "empty token": "Bearer ",
    "scheme only": "Bearer",
    "another scheme": f"Basic {TOKEN}",
    "no scheme": TOKEN,
}

#: the same through HTTP; httpx itself refuses to send a header value that ends in a space
WRONG_OVER_HTTP = {why: header for why, header in WRONG.items() if not header.endswith(" ")}

#: the scheme is case-insensitive (RFC 7235 section 2.1)
RIGHT = {
    "canonical": f"Bearer {TOKEN}",
    "lowercase scheme": f"bearer {TOKEN}",
    "uppercase scheme": f"BEARER {TOKEN}",
    "mixed-case scheme": f"bEaReR {TOKEN}",
}


@pytest.mark.parametrize("header", list(WRONG.values()), ids=list(WRONG))
def test_token_matches_refuses_anything_but_the_exact_token(header: str) -> None:
    assert token_matches(header, TOKEN) is False
    assert token_matches(header.encode(), TOKEN) is False


@pytest.mark.parametrize("header", list(RIGHT.values()), ids=list(RIGHT))
def test_token_matches_accepts_the_token_under_any_case_of_the_scheme(header: str) -> None:
    assert token_matches(header, TOKEN) is True
    assert token_matches(header.encode(), TOKEN) is True


@pytest.mark.parametrize("header", [None, "", b""], ids=["absent", "empty str", "empty bytes"])
def test_token_matches_refuses_a_missing_header(header: str | bytes | None) -> None:
    assert token_matches(header, TOKEN) is False


def test_an_empty_token_is_refused_when_the_middleware_is_built() -> None:
    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError("unreachable")

    with pytest.raises(ValueError, match="token"):
        BearerAuth(app, "")


# -- the same through HTTP ------------------------------------------------------------------------------
@dataclass
class Served:
    url: str
    server: uvicorn.Server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real app (routes, middleware) with a SQLite store, served by uvicorn on 127.0.0.1."""
    folder: Path = tmp_path_factory.mktemp("auth")
    store = SQLiteStore(str(folder / "taskloom.db"))
    app = create_app(token=TOKEN, store=store, secret_key=generate_key())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
    yield Served(f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(timeout=30)
    store.close()


@pytest.mark.parametrize("header", list(WRONG_OVER_HTTP.values()), ids=list(WRONG_OVER_HTTP))
def test_http_refuses_anything_but_the_exact_token_with_401(served: Served, header: str) -> None:
    response = httpx.get(f"{served.url}/secrets", headers={"Authorization": header}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


@pytest.mark.parametrize("header", list(RIGHT.values()), ids=list(RIGHT))
def test_http_accepts_the_token_under_any_case_of_the_scheme(served: Served, header: str) -> None:
    response = httpx.get(f"{served.url}/secrets", headers={"Authorization": header}, timeout=30)
    assert response.status_code == 200, response.text


def test_http_refuses_a_request_without_a_token_and_says_how_to_send_one(served: Served) -> None:
    response = httpx.get(f"{served.url}/secrets", timeout=30)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]


def test_http_wrong_token_changes_nothing(served: Served) -> None:
    """A refused write must not reach the route: the secret is not stored."""
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}"}
    response = httpx.put(f"{served.url}/secrets/STRENGTH_PROBE", json={"value": "v"}, headers=wrong, timeout=30)
    assert response.status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    listed = httpx.get(f"{served.url}/secrets", headers=right, timeout=30)
    assert listed.status_code == 200
    assert "STRENGTH_PROBE" not in listed.text
