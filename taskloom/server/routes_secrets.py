"""Routes about secrets: set, list names, remove. A value goes in and is never returned or logged.

Values are sealed by :class:`~taskloom.secret_store.SecretStore` (AES-GCM) before they reach the store,
so the database holds ciphertext only. Error messages name the secret, never its value.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from taskloom.server.http import ApiError, JSONResponse, in_thread, read_json_object, route, state
from taskloom.server.openapi import errors, json_content, ref


async def put_secret(request: Request) -> Response:
    server = state(request)
    name = request.path_params["name"]
    body = await read_json_object(request, fields=("value",), required=("value",))
    value = body["value"]
    if not isinstance(value, str):
        raise ApiError(422, f"field 'value' of secret {name!r} must be a string")
    secrets = await in_thread(server.secret_store)
    try:
        await in_thread(secrets.set, name, value)
    except UnicodeEncodeError:
        raise ApiError(422, f"field 'value' of secret {name!r} is not valid Unicode text") from None
    except ValueError as error:  # the name: empty, too long, control characters
        raise ApiError(422, str(error)) from None
    return Response(status_code=204)


async def list_secrets(request: Request) -> Response:
    server = state(request)
    secrets = await in_thread(server.secret_store)
    return JSONResponse({"names": await in_thread(secrets.list)})


async def delete_secret(request: Request) -> Response:
    server = state(request)
    name = request.path_params["name"]
    secrets = await in_thread(server.secret_store)
    try:
        removed = await in_thread(secrets.remove, name)
    except ValueError:  # a name no secret can have
        removed = False
    if not removed:
        raise ApiError(404, f"no secret named {name!r}", kind="SecretNotFoundError")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    route("/secrets", get=list_secrets),
    route("/secrets/{name}", put=put_secret, delete=delete_secret),
]

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the secret's name: no whitespace or control characters, at most 200 characters",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}

openapi_paths = {
    "/secrets": {
        "get": {
            "operationId": "listSecrets",
            "summary": "The names of the stored secrets (never their values)",
            "responses": {"200": json_content(ref("SecretNames"), "the names, sorted"), **errors(401)},
        }
    },
    "/secrets/{name}": {
        "put": {
            "operationId": "setSecret",
            "summary": "Set a secret (stored encrypted; replaces any previous value)",
            "parameters": [_NAME],
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("SecretValue")}}},
            "responses": {"204": {"description": "stored"}, **errors(401, 413, 415, 422)},
        },
        "delete": {
            "operationId": "removeSecret",
            "summary": "Remove a secret",
            "parameters": [_NAME],
            "responses": {"204": {"description": "removed"}, **errors(401, 404)},
        },
    },
}
