"""``taskloom tokens create|list|revoke``: named API tokens with a role each, in the local store.

The store is the one the server reads (``--database-url`` / ``TASKLOOM_DATABASE_URL``), so a token made
here is accepted by every server on that store from its next request, and a revoked one refused.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime

from taskloom.cli.loading import CommandError
from taskloom.store import default_store
from taskloom.tokens import ROLES, TokenError, TokenTable, token_view


def add_tokens_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register ``tokens`` with the CLI's parser (``command`` is the parser's sub-command factory)."""
    p = command("tokens", "manage named API tokens with a role each: read, operate or admin (local store)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("create", help="make a token NAME with --role; the token is printed this once only")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--role", required=True, choices=ROLES, help="read: look; operate: also act; admin: everything")
    actions.add_parser("list", help="list the tokens: name, role, created, last used, revoked (never the token)")
    s = actions.add_parser("revoke", help="revoke token NAME: refused from its next request on")
    s.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_tokens)


def cmd_tokens(args: argparse.Namespace) -> int:
    store = default_store()
    table = TokenTable(store)
    try:
        if args.action == "create":
            token = table.create(args.name, args.role)
            if args.json:
                print(json.dumps({"name": args.name, "role": args.role, "token": token}))
            else:
                print(f"token {args.name!r} ({args.role}) created; it is shown this once only:")
                print(f"    {token}")
        elif args.action == "list":
            records = table.list()
            if args.json:
                print(json.dumps([token_view(record) for record in records]))
            elif not records:
                print("no named tokens (the server's own token, TASKLOOM_API_TOKEN or api.token, is admin)")
            for record in [] if args.json else records:
                used = _when(record.last_used_at) if record.last_used_at else "never used"
                state = f"revoked {_when(record.revoked_at)}" if record.revoked_at else "active"
                print(f"{record.name}  {record.role}  created {_when(record.created_at)}  {used}  {state}")
        else:
            table.revoke(args.name)
            print(json.dumps({"revoked": args.name}) if args.json else f"token {args.name!r} revoked")
    except TokenError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    return 0


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
