"""Changing a running workflow: ``patched`` / ``deprecate_patch`` in its body, and its ``version`` option.

**Patches.** A workflow's steps are matched to its log by position (:mod:`taskloom.replay`), so code that
adds, removes or reorders steps cannot replay an execution that ran the old code past the change.
``if patched("fix-tax"): <new> else: <old>`` lets both run, as Temporal's ``workflow.patched`` does:

- the first time a run of an execution meets ``patched(id)`` *live*, it records a ``patched`` event
  (its name is the id) and answers True; the marker takes no step position, so the steps after it keep
  the ids they have in either branch's own numbering;
- replayed, it answers True when that marker is in the log, wherever it was recorded;
- without the marker it answers False when the log already holds a step at or after this point: the
  execution ran past here on code from before the patch, and keeps the old branch;
- the answer is decided once per run and change id: a second ``patched(id)`` later in the body (a
  branch around code after a ``pause``) answers the same, so an old execution resumed on the new code
  stays on the old branch everywhere, and a new one on the new branch.

"At or after this point" is in call order: the point is the id the next step of the calling scope
would get (``"4"``, or ``"3.2"`` inside step 3's body), and the log reaches it when its furthest
recorded step id, compared part by part as numbers, is not before it. That is exactly Temporal's rule
("the history already has a later command here"), with taskloom's positions for its commands.

``deprecate_patch(id)`` is the next deploy, once no execution that took the old branch is left: the
code keeps only the new branch. Executions that recorded the marker replay through it; a new one gets
the marker as well (as Temporal's ``deprecate_patch`` writes one), and nothing else changes for it: no
error, no branch, no step position. The marker is how the code still tells a new execution from one
that passed this point on the code from before the patch: that one cannot run the new branch, so it
stops with :class:`~taskloom.errors.NonDeterminismError` saying so, and is left as it was, rather than
replaying the new branch over the old one's steps. Once no execution from before the patch is left
either, the ``deprecate_patch`` line can go: markers hold no position, so the log still replays.

Outside a running workflow (a plain call of a task's body, a test) there is no log to stay compatible
with: ``patched`` answers True and ``deprecate_patch`` does nothing.

**Versions.** ``@workflow(version="2")`` is for changes too big for a patch: the version is stored with
each execution, a worker only claims executions of the version its code has, and a process whose code
has another version refuses to run (continue, resume, recover) one with a clear error rather than
replaying it with the wrong code. An execution's version is that of the first code that runs it: a new
execution created by ``wf.run`` gets its workflow's, one queued by ``wf.start``, a schedule, a parent
or the server is pinned by the first worker (or process) that takes it, as DBOS does with executions
enqueued without a version; so a queued execution nothing ran yet goes to any worker serving its
workflow. A workflow without the option has no version (stored as ``""``): its executions go to workers
whose workflow has no version either. Executions from before versions existed count as that.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskloom.context import current_scope
from taskloom.errors import NonDeterminismError, TaskDefinitionError, WorkflowError
from taskloom.events import Event, EventType, NewEvent
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from taskloom.replay import ExecutionRun

#: how an execution of a workflow without a ``version`` option is stored (None: not pinned yet)
NO_VERSION = ""
#: longest ``version`` and change id: a label, not a document
MAX_LABEL_LENGTH = 100


def check_version(value: Any, owner: str) -> str | None:
    """The ``version`` option as given, or :class:`TaskDefinitionError` naming it (decoration time)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL_LENGTH or "\x00" in value:
        raise TaskDefinitionError(
            f"{owner}: option 'version' must be a non-empty string of at most {MAX_LABEL_LENGTH} characters "
            f'(such as "2" or "2026-12-01"), or None for no version, got {value!r}'
        )
    return value


def check_change_id(change_id: Any, where: str) -> str:
    if not isinstance(change_id, str) or not change_id.strip() or len(change_id) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"{where}: change id must be a non-empty string of at most {MAX_LABEL_LENGTH} characters, got {change_id!r}"
        )
    return change_id


def shown(version: str | None) -> str | None:
    """A stored version as users see it: None for none (``""``) and for not pinned yet (None)."""
    return version or None


# -- patches ---------------------------------------------------------------------------------------
def _position(step_id: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in step_id.split("."))
    except ValueError:  # not a position (no step id taskloom writes today): never "after" anything
        return ()


class PatchLog:
    """What ``patched`` needs of one run's log, read only when the workflow first calls it.

    ``history`` is the log as the run found it (the list it replays from; never appended to), so the
    steps this run records itself never count as "already passed".
    """

    __slots__ = ("_furthest", "_history", "_markers", "answers")

    def __init__(self, history: Sequence[Event]) -> None:
        self._history = history
        self._markers: frozenset[str] | None = None
        self._furthest: tuple[int, ...] | None = None
        #: each change id's answer in this run
        self.answers: dict[str, bool] = {}

    def recorded(self, change_id: str) -> bool:
        if self._markers is None:
            patch = EventType.PATCHED
            self._markers = frozenset(e.name for e in self._history if e.type is patch and e.name is not None)
        return change_id in self._markers

    def passed(self, point: str) -> bool:
        """Whether the log holds a step at or after ``point`` (in call order). Read only for a change id
        with no marker, so a replay of an execution that recorded its patches never parses step ids."""
        if self._furthest is None:
            ids = {e.step_id for e in self._history if e.step_id is not None}
            self._furthest = max(map(_position, ids), default=())
        return self._furthest >= _position(point)


def _point(run_scope: Any) -> str:
    """The id the calling scope's next step will get: where a patch stands, without taking it."""
    return f"{run_scope.prefix}{run_scope.counter + 1}"


def patched(change_id: str) -> bool:
    """True where the workflow should take the new code of change ``change_id``, False for an execution
    that ran past this point on the code from before it; decided once, recorded, and the same on replay.

    Use it as ``if patched("fix-tax"): <new code> else: <old code>``; the rules are in
    :mod:`taskloom.versioning`. Deploy ``deprecate_patch("fix-tax")`` in its place once no execution
    that took the old branch is left.
    """
    check_change_id(change_id, "patched()")
    scope = current_scope.get()
    return True if scope is None else _decide(scope, change_id)


def _decide(scope: Any, change_id: str) -> bool:
    """The answer of ``patched(change_id)`` in the run of ``scope``: once per run, recorded when live."""
    run: ExecutionRun = scope.run
    log = run.patches
    answer = log.answers.get(change_id)
    if answer is not None:
        return answer
    point = _point(scope)
    if log.recorded(change_id):
        answer = True
    elif log.passed(point):
        answer = False
    else:
        run.check_cancelled()
        run.append(NewEvent(EventType.PATCHED, None, change_id, data={"at": point}))
        answer = True
    log.answers[change_id] = answer
    return answer


def deprecate_patch(change_id: str) -> None:
    """Mark where ``patched(change_id)`` stood, once only its new branch is left in the code.

    Executions that recorded the patch's marker replay through it, and new ones run on (recording the
    marker too, so that a replay tells them apart from old ones). An execution that ran past this point
    on the code from before the patch needs the old branch: it stops with :class:`NonDeterminismError`
    and is left as it was, for code that still has ``patched(change_id)``.
    """
    check_change_id(change_id, "deprecate_patch()")
    scope = current_scope.get()
    if scope is None:
        return
    if _decide(scope, change_id):
        return
    run: ExecutionRun = scope.run
    error = NonDeterminismError(
        f"execution {run.execution_id} ran past deprecate_patch({change_id!r}) (step {_point(scope)}) on code from "
        f"before the patch, so it needs the old branch, which this code no longer has. Run it with code that "
        f"still has `if patched({change_id!r}): ... else: ...` until it finished; it was left as it was."
    )
    run.nondeterminism = run.nondeterminism or error
    raise error


# -- versions --------------------------------------------------------------------------------------
def claim_version(store: Store, record: ExecutionRecord, version: str | None) -> ExecutionRecord:
    """Make sure this code may run ``record``: pin an execution no code has run yet to ``version`` (a
    workflow's option, None for none), or refuse one of another version with :class:`WorkflowError`
    naming both. A finished execution is returned as it is: showing it runs no code.

    The pin is one atomic write, so of two processes with different versions taking a fresh execution at
    once, one pins it and the other is refused.
    """
    mine = version or NO_VERSION
    if record.version == mine or record.status in ExecutionStatus.FINISHED:
        return record
    stored = record.version
    if stored is None:
        stored = store.pin_version(record.id, mine)
        if stored == mine:
            return record
    raise version_mismatch(record, stored, mine)


def version_mismatch(record: ExecutionRecord, stored: str, mine: str) -> WorkflowError:
    def name(version: str) -> str:
        return f"version {version!r}" if version else "no version"

    return WorkflowError(
        f"execution {record.id} of workflow {record.workflow!r} was started with {name(stored)}, but this "
        f"code has {name(mine)}; it was left as it was. Run it where the workflow has {name(stored)} (a worker "
        f"with that code claims it by itself), or start a new execution"
    )
