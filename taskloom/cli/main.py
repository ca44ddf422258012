"""The ``taskloom`` command: run, resume, send, status, events, cancel, list and secrets, each with ``--json``.

With ``--server URL`` (or ``TASKLOOM_SERVER_URL``) those commands go through a ``taskloom server``'s HTTP
API instead of the local store: ``run`` queues the execution for a worker and follows its live events.
``worker``, ``server`` and ``recover`` always run here.

Exit codes (:data:`EXIT_OK`, :data:`EXIT_FAILED`, :data:`EXIT_USAGE`, :data:`EXIT_INTERRUPTED`): 0 success
(also a pause), 1 the workflow failed (``recover``: an execution could not be run), 2 bad usage or input,
or a store that cannot be used (one clear line on stderr, never a traceback), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskloom import serde
from taskloom.cli.loading import CommandError, import_target, load_workflow, parse_input
from taskloom.cli.progress import EventPrinter, render_value
from taskloom.cli.prune import add_prune_command
from taskloom.cli.tokens import add_tokens_command
from taskloom.cli.tracebacks import user_traceback
from taskloom.client import TaskloomClient, event_from_json
from taskloom.context import WorkflowExecutionContext
from taskloom.errors import ExecutionStateError, StoreError, StoreInterrupted, TaskloomError
from taskloom.events import Event, EventType
from taskloom.executions import record_cancel
from taskloom.messages import send, waiting_topic
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord, ExecutionStatus
from taskloom.views import execution_view, timestamp
from taskloom.workflow import Workflow

if TYPE_CHECKING:
    from taskloom.backup import BackupResult

POLL_SECONDS = 0.1
#: how long the command waits for the event display to print the last events
SHOW_JOIN_SECONDS = 5.0
#: exit codes
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: what a shell reports for a process that SIGPIPE ended (128 + 13)
EXIT_BROKEN_PIPE = 141
_SERVER_HELP = "go through the taskloom server at URL (default: $TASKLOOM_SERVER_URL; unset: the local store)"


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- run / resume -------------------------------------------------------------------------------------
def _follow(wf: Workflow[Any], execution_id: str, args: argparse.Namespace, start: Any) -> int:
    """Drive the execution in this (the main) thread while a helper thread shows its events live.

    The run stays on the main thread so that Ctrl-C reaches it: asyncio cancels the workflow, whose driver
    puts the execution back in the queue (a worker takes it at once) before the command exits.
    """
    past = default_store().load_events(execution_id)  # replayed, not run: shown as such
    printer = EventPrinter(as_json=args.json, history_seq=past[-1].seq if past else 0)
    done = threading.Event()
    shown = threading.Thread(
        target=_show_events, args=(execution_id, printer, done), name="taskloom-cli-events", daemon=True
    )
    started = time.monotonic()
    if not args.json:
        print(f"execution {execution_id} of workflow {wf.name!r}")
    shown.start()
    try:
        try:
            ctx = start()
        finally:  # the last events are shown before any verdict
            _stop_showing(done, shown, printer)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; execution {execution_id} keeps every completed step and is queued again: a worker "
            f"takes it, or continue it with:\n  taskloom run {wf.target} --execution-id {execution_id}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except StoreInterrupted as interrupted:  # the store failed under the run: report the StoreError
        raise interrupted.error from None
    except StoreError:
        raise  # main() names its type: the store, not the command line, is at fault
    except TaskloomError as error:
        raise CommandError(str(error)) from None
    return _report(ctx, args, time.monotonic() - started)


def _show_events(execution_id: str, printer: EventPrinter, done: threading.Event) -> None:
    """Print the execution's new events until ``done``, then once more, so nothing is left out.

    A store that fails meanwhile is the run's to report: this thread only skips a look.
    """
    last = 0
    while True:
        finished = done.is_set()
        try:
            events = default_store().load_events(execution_id, after_seq=last)
        except TaskloomError:
            events = []
        if events:
            last = events[-1].seq
            printer.feed(events)
        if finished:
            return
        done.wait(POLL_SECONDS)


def _stop_showing(done: threading.Event, shown: threading.Thread, printer: EventPrinter) -> None:
    done.set()
    shown.join(SHOW_JOIN_SECONDS)
    printer.close()


def _report(ctx: WorkflowExecutionContext[Any], args: argparse.Namespace, seconds: float) -> int:
    if args.json:
        _print_json(
            {
                "type": "result",
                "execution_id": ctx.execution_id,
                "workflow": ctx.workflow_name,
                "status": ctx.status,
                "output": serde.json_view(ctx.output),
            }
        )
    elif ctx.has_succeeded:
        print(f"completed in {seconds:.2f}s; result:")
        print(render_value(ctx.output))
    elif ctx.is_paused:
        pause = next((e for e in reversed(ctx.events) if e.type is EventType.EXECUTION_PAUSED), None)
        name = pause.name if pause else "?"
        print(_paused_line(name, ctx.execution_id, "taskloom"))
    else:
        error = ctx.output
        trace = user_traceback(error) if isinstance(error, BaseException) else None
        if trace:
            print(trace, file=sys.stderr)
        print(f"{ctx.status}: {type(error).__name__}: {error}", file=sys.stderr)
    return 1 if ctx.has_failed else 0


def _paused_line(pause: str | None, execution_id: str, command: str) -> str:
    """What a paused execution waits for, and the command that continues it (a message for a receive)."""
    topic = waiting_topic(pause)
    if topic is not None:
        how = f"{command} send {execution_id} {topic} '<JSON value>'"
        return f"waiting for a message on {topic!r}; send one with: {how}"
    return f"paused at {pause!r}; resume with: {command} resume {execution_id} '<JSON input>'"


def cmd_run(args: argparse.Namespace) -> int:
    if args.server:
        return _remote_run(args)
    if args.queue is not None or args.priority:
        raise CommandError(
            "--queue and --priority queue the execution for workers: give --server URL (or use "
            "wf.start(queue=..., priority=...) in code); without them `taskloom run` runs it here"
        )
    wf = load_workflow(args.target)
    if args.execution_id is None:
        execution_id = wf.create(parse_input(args.input))
    else:  # your own id: created if new, else continued (or shown, when finished); it never starts twice
        execution_id = args.execution_id
        try:
            wf.create(parse_input(args.input), execution_id=execution_id)
        except ExecutionStateError:
            if args.input is not None and not args.json:
                print(f"execution {execution_id} exists: continuing it with its own input", file=sys.stderr)
    return _follow(wf, execution_id, args, lambda: wf.run(execution_id=execution_id))


def _record(execution_id: str) -> ExecutionRecord:
    record = default_store().get_execution(execution_id)
    if record is None:
        raise CommandError(f"no execution {execution_id!r} in {default_store().url}")
    return record


def _workflow_of(record: ExecutionRecord) -> Workflow[Any]:
    if not record.target:
        raise CommandError(f"execution {record.id} does not say where its workflow's code is")
    value = import_target(record.target)
    if not isinstance(value, Workflow):
        raise CommandError(f"{record.target!r} is no longer a @workflow")
    return value


def cmd_resume(args: argparse.Namespace) -> int:
    if args.server:
        return _remote_resume(args)
    record = _record(args.execution_id)
    if record.status != ExecutionStatus.PAUSED:
        raise CommandError(f"execution {record.id} is {record.status}, not paused")
    wf = _workflow_of(record)
    value = parse_input(args.input)
    return _follow(wf, record.id, args, lambda: wf.resume(record.id, value))


# -- looking ------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    if args.server:
        return _remote_status(args)
    record = _record(args.execution_id)
    view = execution_view(record)  # the HTTP API's shape, so --json is the same with or without --server
    if args.json:
        _print_json(view)
        return 0
    events = default_store().load_events(record.id)
    completed = {e.step_id for e in events if e.type is EventType.STEP_COMPLETED}
    _show_status(
        view,
        record.target,
        _when(record.created_at),
        _when(record.updated_at),
        len(completed),
        len(events),
        record.output is not None,
    )
    return 0


def _show_status(
    view: dict[str, Any],
    target: str | None,
    created: str,
    updated: str,
    completed_steps: int,
    event_count: int,
    has_output: bool,
) -> None:
    """The human ``status`` block, the same for the local store and a server."""
    print(f"execution  {view['execution_id']}")
    version = f"  version {view['version']}" if view.get("version") else ""
    print(f"workflow   {view['workflow']}  ({target}){version}")
    print(f"status     {view['status']}")
    print(f"created    {created}   updated {updated}")
    print(f"steps      {completed_steps} completed, {event_count} events")
    if has_output:
        print("output     " + render_value(view["output"]).replace("\n", "\n           "))


def cmd_events(args: argparse.Namespace) -> int:
    if args.server:
        return _remote_events(args)
    record = _record(args.execution_id)
    events = default_store().load_events(record.id)
    if args.json:
        _print_json([e.to_json() for e in events])
        return 0
    for event in events:
        print(_event_line(event, event.to_json()))
    return 0


def _event_line(event: Event, view: dict[str, Any]) -> str:
    detail = view.get("value", "") if event.type is not EventType.STEP_STARTED else ""
    if event.data:
        detail = f"{detail} {json.dumps(event.data, default=str)}".strip()
    step = event.step_id or "-"
    text = json.dumps(detail, default=str) if not isinstance(detail, str) else detail
    line = f"{event.seq:>6}  {event.timestamp:%H:%M:%S.%f}  {event.type.value:<20} {step:<6} {event.name or '':<16}"
    return f"{line} {text}"[:200]


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError(f"--limit must be at least 1, got {args.limit}")
    if args.status and args.status not in ExecutionStatus.ALL:
        raise CommandError(f"--status must be one of {', '.join(ExecutionStatus.ALL)}, got {args.status!r}")
    if args.server:
        return _remote_list(args)
    records = default_store().list_executions(workflow=args.workflow, status=args.status, limit=args.limit)
    if args.json:
        _print_json([execution_view(r, values=("output",)) for r in records])
        return 0
    if not records:
        print("no executions")
    for r in records:
        parent = f"  (child of {r.parent_id})" if r.parent_id else ""
        print(f"{r.id}  {r.status:<10} {_when(r.created_at)}  {r.workflow}{parent}")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    from taskloom.presence import live_workers
    from taskloom.store import describe_store
    from taskloom.store.instances import WORKER_SEEN_SECONDS

    workers = live_workers(default_store())
    if args.json:
        _print_json(
            [
                {
                    "worker_id": w.worker_id,
                    "last_seen": timestamp(w.last_seen),
                    "workflows": w.workflows,
                    "tasks": w.tasks,
                    "holds": w.holds,
                }
                for w in workers
            ]
        )
        return 0
    if not workers:
        where = describe_store(default_store().url)  # no password on screen
        print(
            f"no live workers seen in the last {WORKER_SEEN_SECONDS:g}s; {where}; "
            "start one with: taskloom worker MODULE..."
        )
    now = time.time()
    for w in workers:
        serves = ", ".join([*w.workflows, *w.tasks]) or "nothing"
        held = f"holds {len(w.holds)}: {', '.join(w.holds)}" if w.holds else "holds nothing"
        print(f"{w.worker_id}  seen {max(0.0, now - w.last_seen):.0f}s ago  serves {serves}  {held}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """One recovery pass, for deployments without workers: finish the executions left interrupted."""
    from taskloom.recovery import recover  # the engine's recovery; imported when the command runs

    report = recover(default_store(), list(args.modules))
    if args.json:
        _print_json(
            {
                "finished": [{"execution_id": i, "status": status} for i, status in report.finished],
                "failed_to_run": [{"execution_id": i, "reason": reason} for i, reason in report.failed_to_run],
            }
        )
    else:
        for execution_id, status in report.finished:
            print(f"{execution_id}  {status}")
        for execution_id, reason in report.failed_to_run:
            print(f"{execution_id}  not run: {reason}")
        print(
            f"recovered {len(report.finished)} execution(s); {len(report.failed_to_run)} could not be run"
            if report.finished or report.failed_to_run
            else "nothing to recover"
        )
    return EXIT_FAILED if report.failed_to_run else EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the whole store (SQLite's online backup, or pg_dump) while workers keep going."""
    from taskloom.backup import backup
    from taskloom.settings import Settings

    done = backup(Settings.from_env().database_url, args.path)
    return _print_backup(args, "backed up", done)


def cmd_restore(args: argparse.Namespace) -> int:
    """Replace the store with a backup; paused executions then wait for input, running ones are taken over."""
    from taskloom.backup import restore
    from taskloom.settings import Settings

    done = restore(Settings.from_env().database_url, args.path, force=args.force)
    return _print_backup(args, "restored", done)


def _print_backup(args: argparse.Namespace, verb: str, done: BackupResult) -> int:
    count = "?" if done.executions is None else done.executions
    if args.json:
        _print_json({"path": str(done.path), "size_bytes": done.size_bytes, "executions": done.executions})
    else:
        print(f"{verb} {count} execution(s): {done.path} ({done.size_bytes:,} bytes)")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    if args.server:
        with _client(args) as client:
            result = client.cancel(args.execution_id)
    else:
        record_cancel(default_store(), args.execution_id)
        result = {"execution_id": args.execution_id, "status": ExecutionStatus.CANCELLED}
    if args.json:
        _print_json(result)
    else:
        print(f"execution {args.execution_id} cancelled")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    value = parse_input(args.value, "VALUE")
    if args.server:
        with _client(args) as client:
            result = client.send(args.execution_id, args.topic, value, idempotency_key=args.idempotency_key)
    else:
        try:
            seq = send(args.execution_id, args.topic, value, idempotency_key=args.idempotency_key)
        except ValueError as error:  # a topic send() refuses, named in the message
            raise CommandError(str(error)) from None
        result = {"execution_id": args.execution_id, "topic": args.topic, "seq": seq}
    if args.json:
        _print_json(result)
    else:
        print(f"message {result['seq']} on topic {args.topic!r} sent to execution {args.execution_id}")
    return 0


# -- secrets ------------------------------------------------------------------------------------------
class _SecretsOverHttp:
    """The server's secret routes with the local SecretStore's method names, so one command serves both."""

    def __init__(self, client: TaskloomClient) -> None:
        self.client = client

    def set(self, name: str, value: str) -> None:
        self.client.set_secret(name, value)

    def list(self) -> list[str]:
        return list(self.client.list_secrets())

    def remove(self, name: str) -> bool:
        return bool(self.client.remove_secret(name))


def cmd_secrets(args: argparse.Namespace) -> int:
    from taskloom.secret_store import default_secret_store

    if args.server:
        with _client(args) as client:
            return _secrets_command(args, _SecretsOverHttp(client))
    return _secrets_command(args, default_secret_store())


def _secrets_command(args: argparse.Namespace, secrets: Any) -> int:
    try:
        if args.action == "set":
            value = args.value
            if value is None:
                value = getpass.getpass(f"value for {args.name}: ") if sys.stdin.isatty() else sys.stdin.read()
                value = value.rstrip("\n")
            secrets.set(args.name, value)
            result: Any = {"set": args.name}
            message = f"secret {args.name!r} set"
        elif args.action == "list":
            result = secrets.list()
            message = "\n".join(result) if result else "no secrets"
        else:
            if not secrets.remove(args.name):
                raise CommandError(f"no secret named {args.name!r}")
            result, message = {"removed": args.name}, f"secret {args.name!r} removed"
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    if args.json:
        _print_json(result)
    else:
        print(message)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    """The queues (taskloom.queues): each one's depth (queued), running count and limits."""
    from taskloom.queues import queue_line, queue_view

    if args.server:
        with _client(args) as client:
            views = client.queues()
    else:
        views = [queue_view(queue) for queue in default_store().list_queues()]
    if args.json:
        _print_json(views)
        return 0
    if not views:
        print("no queues: nothing is queued and no worker declared one")
    for view in views:
        print(queue_line(view))
    return 0


# -- worker -------------------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from taskloom.cli.worker import run_worker
    from taskloom.settings import WorkerSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings(args.concurrency, args.lease, args.poll, args.grace)
    except ValueError as error:
        raise CommandError(str(error)) from None
    run_worker(args.modules, settings, queues=args.queue)
    return 0


# -- server -------------------------------------------------------------------------------------------
def cmd_server(args: argparse.Namespace) -> int:
    from taskloom.server.run import serve

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")
    serve(
        args.modules,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return 0


# -- through a server (--server URL) ------------------------------------------------------------------
def _client(args: argparse.Namespace) -> TaskloomClient:
    return TaskloomClient(args.server)


def _remote_run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        started = client.start(
            args.target,
            parse_input(args.input),
            execution_id=args.execution_id,
            queue=args.queue,
            priority=args.priority,
        )
        if not args.json:
            how = "queued" if started.get("created", True) else f"exists ({started['status']})"
            print(f"execution {started['execution_id']} of workflow {started['workflow']!r} {how} on {client.url}")
        _say_if_no_worker_runs(client, started["workflow"], started.get("target") or args.target)
        return _remote_follow(client, started["execution_id"], args)


def _say_if_no_worker_runs(client: TaskloomClient, workflow: str, target: str) -> None:
    """Name the missing worker at once, instead of waiting in silence for one that is not there."""
    try:
        workers = client.workers()
    except TaskloomError:  # an older server without GET /workers: just wait
        return
    if any(workflow in worker.get("workflows", ()) for worker in workers):
        return
    module = target.split(":", 1)[0]
    print(
        f"no live worker runs workflow {workflow!r} ({len(workers)} worker(s) alive, none importing {module}); "
        f"it waits in the queue until one starts: taskloom worker {module}",
        file=sys.stderr,
    )


def _remote_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.resume(args.execution_id, parse_input(args.input))
        if not args.json:
            print(f"execution {args.execution_id} resumed on {client.url}")
        return _remote_follow(client, args.execution_id, args)


def _remote_follow(client: TaskloomClient, execution_id: str, args: argparse.Namespace) -> int:
    """Show the execution's live events from the server's stream until it finishes or pauses."""
    started = time.monotonic()
    printer = EventPrinter(as_json=args.json)
    paused_at = "?"
    try:
        for kind, view in client.stream(execution_id):
            if kind == "end":
                break
            if kind == EventType.EXECUTION_PAUSED:
                paused_at = view.get("name") or "?"
            if args.json:
                _print_json(view)
            else:
                printer.feed([event_from_json(view, execution_id)])
    except KeyboardInterrupt:
        printer.close()
        where = f"taskloom --server {client.url} status {execution_id}"
        print(f"\ndetached; the execution goes on: {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    printer.close()
    view = client.status(execution_id)
    status, output = view["status"], view.get("output")
    if args.json:
        result = {"type": "result", "execution_id": execution_id, "workflow": view["workflow"], "status": status}
        _print_json({**result, "output": output})
    elif status == ExecutionStatus.COMPLETED:
        print(f"completed in {time.monotonic() - started:.2f}s; result:")
        print(render_value(output))
    elif status == ExecutionStatus.PAUSED:
        print(_paused_line(paused_at, execution_id, f"taskloom --server {client.url}"))
    elif isinstance(output, dict) and "message" in output:
        print(f"{status}: {output.get('type', 'Error')}: {output['message']}", file=sys.stderr)
    else:
        print(status, file=sys.stderr)
    return 1 if status == ExecutionStatus.FAILED else 0


def _remote_when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _remote_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        view = client.status(args.execution_id)
        if args.json:
            _print_json(view)
            return 0
        events = client.events(args.execution_id)
    completed = {e["step_id"] for e in events if e["type"] == EventType.STEP_COMPLETED}
    created, updated = _remote_when(view["created_at"]), _remote_when(view["updated_at"])
    target = view.get("target")
    _show_status(view, target, created, updated, len(completed), len(events), view.get("output") is not None)
    return 0


def _remote_events(args: argparse.Namespace) -> int:
    with _client(args) as client:
        views = client.events(args.execution_id)
    if args.json:
        _print_json(views)
        return 0
    for view in views:
        print(_event_line(event_from_json(view, args.execution_id), view))
    return 0


def _remote_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        views = client.list_executions(workflow=args.workflow, status=args.status, limit=args.limit)
    if args.json:
        _print_json(views)
        return 0
    if not views:
        print("no executions")
    for v in views:
        parent = f"  (child of {v['parent_id']})" if v.get("parent_id") else ""
        print(f"{v['execution_id']}  {v['status']:<10} {_remote_when(v['created_at'])}  {v['workflow']}{parent}")
    return 0


# -- schedules ----------------------------------------------------------------------------------------
def cmd_schedules(args: argparse.Namespace) -> int:
    """``schedules list|pause|resume|remove``: the schedules in the store (``--database-url``), which every
    worker ticks; a change is seen by the workers within their poll (taskloom.schedules.POLL_SECONDS)."""
    from taskloom import schedules  # the command's own module, imported when it runs

    store = default_store()
    if args.action == "list":
        found = schedules.list_schedules(store)
        if args.json:
            _print_json([s.to_json() for s in found])
            return EXIT_OK
        if not found:
            print("no schedules")
        for s in found:
            state = "paused" if s.paused else f"next {s.next_tick.isoformat() if s.next_tick else 'never'}"
            print(f"{s.name}  {s.workflow}  {s.cron!r} {s.timezone}  catchup={s.catchup}  {state}")
        return EXIT_OK
    if args.action == "remove":
        schedules.remove_schedule(store, args.name)
        result: Any = {"removed": args.name}
        message = f"schedule {args.name!r} removed"
    else:
        change = schedules.pause_schedule if args.action == "pause" else schedules.resume_schedule
        changed = change(store, args.name)
        result = changed.to_json()
        message = f"schedule {args.name!r} {'paused' if changed.paused else 'resumed'}"
    if args.json:
        _print_json(result)
    else:
        print(message)
    return EXIT_OK


# -- cache --------------------------------------------------------------------------------------------
def cmd_cache(args: argparse.Namespace) -> int:
    """``cache clear [TASK] [--expired]``: forget results cached by ``cache=True`` tasks, in the local store
    (``--database-url``), where every process that shares the database reads them."""
    from taskloom import cache  # the command's own module, imported when it runs

    cleared = cache.clear(args.task, expired_only=args.expired)
    if args.json:
        _print_json({"cleared": cleared, "task": args.task, "expired_only": args.expired})
    else:
        whose = f"task {args.task!r}" if args.task else "every task"
        print(f"cleared {cleared} {'expired ' if args.expired else ''}cached result(s) of {whose}")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskloom", description="Run and inspect durable workflows.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--json", action="store_true", help="machine-readable output (anywhere on the line)")
    parser.add_argument("--database-url", help="store URL (default: $TASKLOOM_DATABASE_URL or .taskloom/taskloom.db)")
    parser.add_argument("--server", metavar="URL", help=_SERVER_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, remote: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if remote:  # also after the command; SUPPRESS keeps a --server given before it
            p.add_argument("--server", metavar="URL", default=argparse.SUPPRESS, help=_SERVER_HELP)
        return p

    p = command("run", "run a workflow (live progress) and print its result", remote=True)
    p.add_argument("target", metavar="MODULE:WORKFLOW")
    p.add_argument("input", nargs="?", metavar="INPUT", help="workflow input as JSON")
    p.add_argument(
        "--execution-id",
        help="your own id for the execution: started under it if new, else continued (or shown, when finished)",
    )
    p.add_argument("--queue", metavar="NAME", help="with --server: the queue it waits on (default: 'default')")
    p.add_argument("--priority", type=int, default=0, help="with --server: lower runs first in its queue (default 0)")
    p.set_defaults(func=cmd_run)

    p = command("resume", "resume a paused execution with INPUT (JSON)", remote=True)
    p.add_argument("execution_id", metavar="ID")
    p.add_argument("input", nargs="?", metavar="INPUT")
    p.set_defaults(func=cmd_resume)

    p = command("status", "show an execution's status and output", remote=True)
    p.add_argument("execution_id", metavar="ID")
    p.set_defaults(func=cmd_status)

    p = command("events", "list an execution's events in order", remote=True)
    p.add_argument("execution_id", metavar="ID")
    p.set_defaults(func=cmd_events)

    p = command("cancel", "cancel an execution that has not finished", remote=True)
    p.add_argument("execution_id", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = command("send", "send a message (VALUE, JSON) to an execution, for its `receive(TOPIC)`", remote=True)
    p.add_argument("execution_id", metavar="ID")
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("value", nargs="?", metavar="VALUE", help="the message as JSON (default null)")
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="sending again with the same KEY stores nothing and answers the first message's seq",
    )
    p.set_defaults(func=cmd_send)

    p = command("list", "list executions, newest first", remote=True)
    p.add_argument("--workflow")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=50, help="at most this many executions, 1 or more (default 50)")
    p.set_defaults(func=cmd_list)

    p = command(
        "recover",
        "finish, once, the executions left running by a process that died (for deployments without workers); "
        "MODULE... are imported first so that their workflows are known",
    )
    p.add_argument("modules", nargs="*", metavar="MODULE")
    p.set_defaults(func=cmd_recover)

    p = command("backup", "write a consistent copy of the whole store to PATH while it runs (PostgreSQL: pg_dump)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_backup)

    p = command("restore", "replace the store with the backup at PATH (stop the workers first)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--force", action="store_true", help="restore even while workers were seen on the store")
    p.set_defaults(func=cmd_restore)

    p = command("worker", "claim and run queued executions of the workflows in MODULE...")
    p.add_argument("modules", nargs="+", metavar="MODULE")
    p.add_argument("--concurrency", type=int, default=4, help="executions run at once (default 4)")
    p.add_argument("--lease", type=float, default=10.0, help="lease seconds; a dead worker's work moves after it")
    p.add_argument(
        "--poll",
        type=float,
        default=0.5,
        help="seconds between looks at an empty queue (PostgreSQL wakes workers at once when work is queued)",
    )
    p.add_argument("--grace", type=float, default=30.0, help="seconds to finish running work on SIGTERM")
    p.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="claim only from queue NAME (repeatable); default: 'default' and every Queue the modules declare",
    )
    p.set_defaults(func=cmd_worker)

    p = command("queues", "list the queues: depth (queued), running, limits", remote=True)
    p.set_defaults(func=cmd_queues)

    p = command("server", "serve the HTTP API; MODULE... name the workflows it may start")
    p.add_argument("modules", nargs="*", metavar="MODULE")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain) file")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.set_defaults(func=cmd_server)

    p = command("workers", "list the live workers: what each serves, what it holds, when it was last seen")
    p.set_defaults(func=cmd_workers)

    p = command("secrets", "manage encrypted secrets (values are never printed)", remote=True)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("set", help="set NAME to VALUE (or read the value from stdin)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("value", nargs="?", metavar="VALUE")
    s = actions.add_parser("list", help="list secret names")
    s = actions.add_parser("remove", help="remove a secret")
    s.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_secrets)

    add_tokens_command(command)
    add_prune_command(command)

    p = command("cache", "manage the results of tasks declared with cache=True (in the local store)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("clear", help="forget cached results: TASK's, or every task's")
    s.add_argument("task", nargs="?", metavar="TASK", help="the task's name (its name option, else the function's)")
    s.add_argument("--expired", action="store_true", help="only results whose cache_ttl has passed")
    p.set_defaults(func=cmd_cache)

    p = command("schedules", "list, pause, resume or remove schedules (in the local store)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the schedules: cron, time zone, catch-up, next tick or paused")
    for action, help in (
        ("pause", "start no more executions for schedule NAME until it is resumed"),
        ("resume", "start NAME's ticks again, from now on (those that fell while paused are skipped)"),
        ("remove", "delete schedule NAME (the executions it started stay)"),
    ):
        s = actions.add_parser(action, help=help)
        s.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_schedules)
    return parser


def _one_line(message: str) -> str:
    """A message on one line: drivers' errors (psycopg's, say) carry newlines and tab-indented hints."""
    return " ".join(message.split())


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _reader_left() -> int:
    """`taskloom events ID | head`: the reader went away, so end quietly, as Unix tools do.

    Not by restoring SIGPIPE's default action: that would also kill ``taskloom server`` and ``worker``
    the moment a client hangs up on one of their sockets. Later writes (the interpreter flushes stdout
    at exit) go to /dev/null instead of raising again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _take_json_flag(words: list[str]) -> tuple[bool, list[str]]:
    """``--json`` anywhere on the line (before a ``--``): `taskloom --json list`, `secrets --json list`."""
    end = words.index("--") if "--" in words else len(words)
    kept = [word for word in words[:end] if word != "--json"] + words[end:]
    return len(kept) != len(words), kept


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"taskloom {version('taskloom')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "taskloom (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    wants_json, words = _take_json_flag(words)
    parser = build_parser()
    args = parser.parse_args(words)
    args.json = wants_json
    if args.database_url:
        os.environ["TASKLOOM_DATABASE_URL"] = args.database_url
    args.server = args.server or os.environ.get("TASKLOOM_SERVER_URL") or None
    # Like `python -m`: the working directory's modules are importable, so stored values of the user's
    # own classes decode and `run`/`resume` find the workflow's module.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return int(args.func(args))
    except BrokenPipeError:
        if not _stdout_is_a_pipe():
            raise  # a socket's, not the reader of our output leaving: a real error
        return _reader_left()
    except CommandError as error:
        print(f"taskloom {args.command}: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except TaskloomError as error:  # StoreError and StoreUnavailableError among them
        print(f"taskloom {args.command}: {type(error).__name__}: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\ninterrupted; the execution keeps its progress: continue it with `taskloom run TARGET --execution-id ID`",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
