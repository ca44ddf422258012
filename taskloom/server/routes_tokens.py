"""Routes about named API tokens (``admin`` only, as :func:`taskloom.tokens.required_role` says), and
``GET /whoami``, which any token may call to learn its own name and role.

A token's value is returned once, by ``POST /tokens``; the store keeps only its digest.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from taskloom.server.http import ApiError, ServerState, StrictJSONRoute, in_thread, state
from taskloom.server.models import Identity, NewToken, TokenList, TokenRequest, errors
from taskloom.tokens import TokenError, TokenTable, token_view

router = APIRouter(route_class=StrictJSONRoute, tags=["tokens"])

Server = Annotated[ServerState, Depends(state)]
TokenName = Annotated[str, Path(description="the token's name")]


@router.get(
    "/whoami",
    operation_id="whoami",
    summary="The name and role of the token this request sent",
    response_model=Identity,
    responses=errors(401),
)
async def whoami(request: Request) -> dict[str, str]:
    return {"name": request.state.token_name, "role": request.state.token_role}


@router.get(
    "/tokens",
    operation_id="listTokens",
    summary="The named API tokens, revoked ones included (never their values)",
    response_model=TokenList,
    responses=errors(401, 403),
)
async def list_tokens(server: Server) -> dict[str, Any]:
    records = await in_thread(TokenTable(server.store).list)
    return {"tokens": [token_view(record) for record in records]}


@router.post(
    "/tokens",
    operation_id="createToken",
    summary="Make a named token with a role; its value is in this answer only",
    status_code=201,
    response_model=NewToken,
    responses=errors(401, 403, 409, 415, 422),
)
async def create_token(server: Server, body: TokenRequest) -> dict[str, Any]:
    table = TokenTable(server.store)
    try:
        token = await in_thread(table.create, body.name, body.role)
    except TokenError as error:
        raise ApiError(409 if "exists already" in str(error) else 422, str(error), kind="TokenError") from None
    record = next(r for r in await in_thread(table.list) if r.name == body.name)
    return {**token_view(record), "token": token}


@router.delete(
    "/tokens/{name}",
    operation_id="revokeToken",
    summary="Revoke a named token: refused from its next request on",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404, 409),
)
async def revoke_token(server: Server, name: TokenName) -> Response:
    try:
        await in_thread(TokenTable(server.store).revoke, name)
    except TokenError as error:
        raise ApiError(404 if "no token named" in str(error) else 409, str(error), kind="TokenError") from None
    return Response(status_code=204)
