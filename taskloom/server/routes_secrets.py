"""Routes about secrets: set, list names, remove. A value goes in and is never returned or logged.

Values are sealed by :class:`~taskloom.secret_store.SecretStore` (AES-GCM) before they reach the store,
so the database holds ciphertext only. Error messages name the secret, never its value. What makes a
good name is the secret store's rule (:meth:`SecretStore.set` raises ``ValueError``), answered as 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from taskloom.server.http import ApiError, ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import SecretNames, SecretValue, errors

router = APIRouter(route_class=StrictJSONRoute, tags=["secrets"])

Server = Annotated[ServerState, Depends(state)]
SecretName = Annotated[
    str,
    Path(description="the secret's name: no whitespace or control characters, at most 200 characters"),
]


@router.get(
    "/secrets",
    operation_id="listSecrets",
    summary="The names of the stored secrets (never their values)",
    response_model=SecretNames,
    response_description="the names, sorted",
    responses=errors(401),
)
async def list_secrets(server: Server) -> dict[str, list[str]]:
    secrets = await in_thread(server.secret_store)
    return {"names": await in_thread(secrets.list)}


@router.put(
    "/secrets/{name}",
    operation_id="setSecret",
    summary="Set a secret (stored encrypted; replaces any previous value)",
    status_code=204,
    response_class=Response,
    response_description="stored",
    responses=errors(401, 413, 415, 422),
)
async def put_secret(server: Server, name: SecretName, body: SecretValue) -> Response:
    secrets = await in_thread(server.secret_store)
    try:
        await in_thread(secrets.set, name, body.value)
    except UnicodeEncodeError:  # a lone surrogate: valid JSON, but no text
        raise ApiError(422, f"field 'value' of secret {name!r} is not valid Unicode text") from None
    except ValueError as error:  # the name: empty, too long, control characters
        raise ApiError(422, str(error)) from None
    return Response(status_code=204)


@router.delete(
    "/secrets/{name}",
    operation_id="removeSecret",
    summary="Remove a secret",
    status_code=204,
    response_class=Response,
    response_description="removed",
    responses=errors(401, 404, 422),
)
async def delete_secret(server: Server, name: SecretName) -> Response:
    secrets = await in_thread(server.secret_store)
    try:
        removed = await in_thread(secrets.remove, name)
    except ValueError:  # a name no secret can have
        removed = False
    if not removed:
        raise ApiError(404, f"no secret named {name!r}", kind="SecretNotFoundError")
    return Response(status_code=204)
