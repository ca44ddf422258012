"""Group commit: the outcomes of steps that finish together are written in one transaction.

Why: a durable step costs one commit, and on SQLite (and, one round trip away, PostgreSQL) the commit
is most of a quick step's price. Steps of a ``map``, a ``parallel`` or a graph wave finish close
together, each in its own asyncio task; writing each outcome on its own serialises them behind one
commit apiece (a ``map`` of 1,000 quick items paid 1,000 commits). Here they share commits.

How: a step finishing off the run's main task hands its events to :meth:`GroupCommit.write`. The first
outcome of a pass of the event loop is written at once, as it always was (a step finishing alone waits
for nothing), and opens a batch for the rest of that pass: steps resumed in the same pass (the siblings
that finished with it) join the batch and await it; it is flushed by a ``loop.call_soon`` callback, so
right after the callbacks the loop already has ready, in one ``append_events`` call (one transaction,
fenced by the run's lease like every write), and only then are its waiters released.

What holds:
- Durability: no waiter moves on before the transaction holding its events committed.
- Atomicity per step: a step's events (its deferred start and its outcome) go in one batch, whole, so a
  crash between flushes leaves each step recorded or not, never half.
- Replay: each step keeps its own events in order; steps that finish together were already recorded in
  the order they happened to finish, and replay finds outcomes by step id, not by position.
- Failure: a refused or failed flush (a cancel, a lost lease, the store down) raises the same error in
  every waiter of the batch, as each would have met it writing alone.

Writers on the run's main task (a sequential workflow) write at once, without a batch: nothing else of
the run can be finishing while the main task itself is writing, so there is nobody to wait for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskloom.errors import WorkflowSignal
from taskloom.events import NewEvent

if TYPE_CHECKING:
    import asyncio


class GroupCommit:
    """One execution run's batch of step outcomes waiting for their shared commit (loop thread only)."""

    __slots__ = ("_events", "_open", "_waiters", "_write")

    def __init__(self, write: Callable[[Sequence[NewEvent]], None]) -> None:
        #: writes events in one transaction, or raises (``ExecutionRun.append``)
        self._write = write
        self._events: list[NewEvent] = []
        self._waiters: list[asyncio.Future[None]] = []
        #: an outcome was written in this pass of the loop: the next ones join the batch flushed after it
        self._open = False

    async def write(self, events: Sequence[NewEvent]) -> None:
        """Return once ``events`` are committed: at once if no other outcome was written in this pass of
        the loop, else in a transaction shared with the others that come before the loop's next pass."""
        import asyncio  # not at the top: a run without a loop never gets here (loop_free)

        loop = asyncio.get_running_loop()
        if not self._open:
            self._open = True
            loop.call_soon(self._flush)
            self._write(events)
            return
        done: asyncio.Future[None] = loop.create_future()
        self._events.extend(events)
        self._waiters.append(done)
        await done

    def _flush(self) -> None:
        events, waiters = self._events, self._waiters
        self._events, self._waiters, self._open = [], [], False
        if not events:
            return
        try:
            self._write(events)
        except (Exception, WorkflowSignal) as error:  # every waiter meets it, as each would alone
            for waiter in waiters:
                if not waiter.done():  # a waiter cancelled meanwhile: its events were in the batch anyway
                    waiter.set_exception(error)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
