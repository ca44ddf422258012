"""``taskloom prune --older-than AGE``: remove finished executions older than AGE (see taskloom.retention)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from taskloom.cli.loading import CommandError
from taskloom.retention import FINISHED, RetentionError, output_dirs_of, prune
from taskloom.store import default_store


def add_prune_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register ``prune`` with the CLI's parser (``command`` is the parser's sub-command factory)."""
    p = command(
        "prune",
        "remove finished executions (their events, messages and output files) older than --older-than; "
        "never a running, paused or queued one, nor one whose parent or child is still live",
    )
    p.add_argument("modules", nargs="*", metavar="MODULE", help="import these to find their tasks' output folders")
    p.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 90m, 2w (since it finished)")
    p.add_argument(
        "--status",
        default=",".join(FINISHED),
        metavar="LIST",
        help=f"comma-separated, among {', '.join(FINISHED)} (default: all three)",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would go; remove nothing")
    p.add_argument(
        "--output-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a LocalFileOutputStorage folder whose files go with their executions (repeatable)",
    )
    p.set_defaults(func=cmd_prune)

    p = command(
        "partition-events",
        "PostgreSQL: partition the events table by month (copies it: run on a new store or in a maintenance "
        "window); prune then drops the months it emptied",
    )
    p.add_argument("--months-ahead", type=int, default=3, help="months of partitions created ahead (default 3)")
    p.set_defaults(func=cmd_partition_events)


def cmd_prune(args: argparse.Namespace) -> int:
    folders = list(args.output_dir)
    if args.modules:
        from taskloom.discovery import import_modules
        from taskloom.instance_worker import find_tasks

        tasks = find_tasks(import_modules(args.modules)).values()
        folders += output_dirs_of(task for copies in tasks for task in copies)
    store = default_store()
    try:
        report = prune(
            store, args.older_than, statuses=args.status.split(","), dry_run=args.dry_run, output_dirs=folders
        )
    except RetentionError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{verb} {report.executions} execution(s), {report.events} event(s), {report.messages} message(s), "
        f"{report.sessions} instance session(s) ({report.instances} instances, {report.instance_updates} updates), "
        f"{report.output_files} output file(s)"
    )
    if report.kept_for_relatives:
        print(f"kept {report.kept_for_relatives} old execution(s) whose parent or child is still live")
    if not report.dry_run and report.transactions:
        print(f"{report.transactions} transaction(s), the longest {report.longest_transaction_seconds * 1000:.1f} ms")
    for problem in report.errors:
        print(f"warning: {problem}")
    return 0


def cmd_partition_events(args: argparse.Namespace) -> int:
    from taskloom.errors import StoreError
    from taskloom.store.partitions import partition_events

    store = default_store()
    try:
        report = partition_events(store, months_ahead=args.months_ahead)
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({"converted": report.converted, "moved_rows": report.moved_rows, "created": report.created}))
    else:
        done = f"converted the events table ({report.moved_rows:,} rows moved); " if report.converted else ""
        print(f"{done}partitions created: {', '.join(report.created) or 'none needed'}")
    return 0
