"""The API token must match exactly, and the scheme's case must not matter (issue 14).

``token_matches`` is checked on its own, then through the real app served by uvicorn on 127.0.0.1, with
a token cut short, one made longer, and a different one of the same length: a check that compared only
a prefix, or only as many bytes as were sent, would let each of them in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from processes import free_port, wait_for

from taskloom.errors import TaskloomError
from taskloom.secret_store import generate_key
from taskloom.server.app import create_app
from taskloom.server.auth import TOKEN_FILE_NAME, BearerAuth, load_api_token, token_matches
from taskloom.settings import Settings
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

    with pytest.raises(ValueError) as caught:
        BearerAuth(app, "")
    assert str(caught.value) == "the API token must not be empty"


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


# -- where the token comes from ---------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """No TASKLOOM_API_TOKEN, and a home of its own (that does not exist yet), whatever the environment says."""
    return Settings.from_env().replace(api_token=None, home_dir=str(tmp_path / "nested" / "home"))


def test_the_environments_token_wins_and_is_stripped(settings: Settings) -> None:
    token = load_api_token(settings.replace(api_token="  from-env \n"))
    assert (token.value, token.source, token.created) == ("from-env", "TASKLOOM_API_TOKEN", False)
    assert not settings.home.exists()  # no file is made when the environment has the token


def test_a_first_start_creates_a_private_token_file_under_missing_folders(settings: Settings) -> None:
    path = settings.home / TOKEN_FILE_NAME
    first = load_api_token(settings)  # create defaults to True: the server's call
    assert (first.source, first.created) == (str(path), True)
    assert len(first.value) == 43  # secrets.token_urlsafe(32): 256 bits
    assert path.read_bytes() == (first.value + "\n").encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_api_token(settings)
    assert (again.value, again.source, again.created) == (first.value, str(path), False)
    assert load_api_token(settings, create=False).value == first.value
    assert first.value not in repr(first)


def test_a_client_without_a_token_is_told_where_to_find_one(settings: Settings) -> None:
    path = settings.home / TOKEN_FILE_NAME
    with pytest.raises(TaskloomError) as caught:
        load_api_token(settings, create=False)
    assert str(caught.value) == (
        f"no API token: set TASKLOOM_API_TOKEN, or run where the server's token file {str(path)!r} is "
        "(the server creates it on its first start)"
    )
    assert not path.exists()


def test_an_empty_or_unreadable_token_file_is_refused_naming_it(settings: Settings) -> None:
    path = settings.home / TOKEN_FILE_NAME
    settings.home.mkdir(parents=True)
    path.write_text("  \n")
    with pytest.raises(TaskloomError) as empty:
        load_api_token(settings)
    assert str(empty.value) == f"the token file {str(path)!r} is empty; delete it or set TASKLOOM_API_TOKEN"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(TaskloomError) as undecodable:
        load_api_token(settings)
    assert str(undecodable.value).startswith(f"cannot read the token file {str(path)!r}: ")
    path.unlink()
    path.mkdir()
    with pytest.raises(TaskloomError) as folder:
        load_api_token(settings)
    assert str(folder.value).startswith(f"cannot read the token file {str(path)!r}: ")


def test_a_token_file_readable_by_others_is_used_with_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path = settings.home / TOKEN_FILE_NAME
    settings.home.mkdir(parents=True)
    path.write_text("shared-token\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="taskloom.server"):
        assert load_api_token(settings).value == "shared-token"
    assert caplog.messages == []
    path.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="taskloom.server"):
        assert load_api_token(settings).value == "shared-token"
    assert caplog.messages == [f"the token file {path} is readable by others; run: chmod 600 {path}"]


def test_a_token_file_that_appears_unreadable_while_creating_it_is_refused(settings: Settings) -> None:
    """The race branch: creating the file finds one there (here a dangling link), which reads as nothing."""
    settings.home.mkdir(parents=True)
    path = settings.home / TOKEN_FILE_NAME
    path.symlink_to(settings.home / "unmounted" / "api.token")
    with pytest.raises(TaskloomError) as caught:
        load_api_token(settings)
    assert str(caught.value) == f"the token file {str(path)!r} is empty; delete it or set TASKLOOM_API_TOKEN"


def test_the_scheme_may_be_followed_by_several_spaces() -> None:
    """RFC 7235: ``credentials = auth-scheme [ 1*SP ( token68 / ... ) ]``."""
    assert token_matches(f"Bearer  {TOKEN}", TOKEN) is True
    assert token_matches(f"Bearer {TOKEN} x", TOKEN) is False


# -- the middleware itself, called as ASGI in this thread -------------------------------------------------
class Inner:
    """The app behind the middleware: records exactly what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append((scope, receive, send))


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _asgi(scope: dict[str, Any]) -> tuple[Inner, list[dict[str, Any]], Any]:
    """Call BearerAuth once; the inner app's calls, what was sent, and the send function used."""
    inner, sent = Inner(), []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(BearerAuth(inner, TOKEN)(scope, _receive, send))
    return inner, sent, send


def _http(path: str, authorization: str | None = None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {"type": "http", "path": path, "headers": headers}


@pytest.mark.parametrize(
    "scope",
    [
        _http("/health"),
        _http("/openapi.json"),
        _http("/docs"),
        _http("/docs/swagger-ui-bundle.js"),
        _http("/docs/swagger-ui.css"),
        _http("/secrets", f"bearer {TOKEN}"),
        {"type": "lifespan"},
    ],
    ids=["health", "openapi", "docs", "docs script", "docs style", "right token", "lifespan"],
)
def test_the_middleware_passes_the_very_same_scope_receive_and_send_on(scope: dict[str, Any]) -> None:
    inner, sent, send = _asgi(scope)
    assert len(inner.calls) == 1
    passed_scope, passed_receive, passed_send = inner.calls[0]
    assert passed_scope is scope and passed_receive is _receive and passed_send is send
    assert sent == []


def test_a_request_without_a_token_gets_a_401_saying_how_to_send_one() -> None:
    inner, sent, _ = _asgi(_http("/secrets"))
    assert inner.calls == []
    body = json.dumps(
        {
            "error": "this route needs an API token: send the header 'Authorization: Bearer <token>' "
            "(the token is TASKLOOM_API_TOKEN or the server's api.token file)",
            "type": "Unauthorized",
        }
    ).encode()
    assert sent == [
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="taskloom"'),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


def test_a_request_with_a_wrong_token_gets_a_401_naming_the_error() -> None:
    inner, sent, _ = _asgi(_http("/secrets", f"Bearer {TOKEN[:-1]}"))
    assert inner.calls == []
    body = json.dumps({"error": "the API token is wrong", "type": "Unauthorized"}).encode()
    assert sent[0]["status"] == 401
    assert sent[0]["headers"] == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="taskloom", error="invalid_token"'),
    ]
    assert sent[1] == {"type": "http.response.body", "body": body}


#: paths next to the public ones that are not public
NEAR_MISSES = ["/docs/", "/docs/other.js", "/docs/swagger-ui.css/x", "/DOCS", "/health/", "/index.html", "/dashboard/x"]


@pytest.mark.parametrize("path", NEAR_MISSES)
def test_only_the_exact_public_paths_are_public(path: str) -> None:
    inner, sent, _ = _asgi(_http(path))
    assert inner.calls == [] and sent[0]["status"] == 401


def test_only_the_authorization_header_counts() -> None:
    scope = _http("/secrets")
    scope["headers"].append((b"x-authorization", f"Bearer {TOKEN}".encode()))
    inner, sent, _ = _asgi(scope)
    assert inner.calls == [] and sent[0]["status"] == 401


def test_a_first_start_in_an_existing_home_creates_the_token_file(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / "taskloom.db").write_bytes(b"")  # the home already holds other things
    token = load_api_token(settings)
    assert token.created
    assert (settings.home / TOKEN_FILE_NAME).read_text() == token.value + "\n"
