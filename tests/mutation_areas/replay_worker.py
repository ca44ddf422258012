"""Mutation testing of taskloom/replay.py and taskloom/worker.py (issue 14): their tests and excluded mutants.

Merged into ``tests/mutate.py`` (see its ``TESTS``, ``EQUIVALENT`` and ``UNREACHABLE`` for the format).

The replay key is ``taskloom/replay`` rather than ``taskloom/replay.py``: ``tests/mutate.py`` merges areas
with ``{**area, **TESTS}``, so an area key equal to one of its own keeps *its* list; a shorter prefix is
tried first and matches only ``taskloom/replay.py``.
"""

from __future__ import annotations

TESTS: dict[str, list[str]] = {
    "taskloom/replay": [
        "tests/unit/test_mutants_replay.py",
        "tests/unit/test_replay.py",
        "tests/unit/test_ownership.py",
        "tests/unit/test_workflow.py",
        "tests/unit/test_builtins.py",
        "tests/unit/test_strength_tasks.py",
        "tests/unit/test_messages.py",  # take_message and its receipt events
        "tests/unit/test_plain_steps.py",  # the plain steps' fast path
    ],
    "taskloom/worker.py": ["tests/unit/test_mutants_worker.py"],
}

#: tests left out of a module's runs: each fails now and then unmutated (see tests/mutate.py's DESELECT)
DESELECT: dict[str, list[str]] = {
    # About one run in three on a loaded machine, unmutated at d2738b2: the crash of branch y can end the
    # parallel before the sync branch z has run, so `runs` is ['x'] (the test assumes z always runs first).
    "taskloom/replay": [
        "tests/unit/test_replay.py::test_rerun_of_a_crashed_parallel_runs_only_the_unfinished_branches",
    ],
}

#: mutmut's name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", why no test can
#: tell it from the original)
EQUIVALENT: dict[str, tuple[str, str]] = {
    # -- taskloom/replay.py
    "taskloom.replay.xǁExecutionRunǁ__init____mutmut_12": (
        'self.main_task: asyncio.Task[Any] | None = ""',
        (
            "Workflow._drive, the only place an ExecutionRun is made, sets run.main_task right after constructing "
            "it, before any step runs"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁ__init____mutmut_14": (
        'self.lease_owner: str | None = ""',
        "Workflow._drive sets run.lease_owner right after constructing the run, before any write",
    ),
    "taskloom.replay.xǁExecutionRunǁ__init____mutmut_20": (
        'self.resume: tuple[str, bytes] | None = ""',
        "Workflow._drive sets run.resume right after constructing the run, before the body starts",
    ),
    "taskloom.replay.xǁExecutionRunǁ_append_fenced__mutmut_20": (
        "raise WorkflowCancelled(None) from None",
        (
            "the argument of WorkflowCancelled is never read: Workflow._drive and _settle catch it and set "
            "ctx.status, and parallel branches re-raise the same object to them"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁcheck_cancelled__mutmut_1": (
        "raise WorkflowCancelled(None)",
        "as _append_fenced__mutmut_20: WorkflowCancelled's argument is never read",
    ),
    "taskloom.replay.xǁExecutionRunǁ_append_fenced__mutmut_21": (
        "raise LeaseLostError(None) from None",
        (
            "the message of this LeaseLostError is never read: Workflow._drive and _settle catch it and report "
            "the execution as running under its new owner"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁappend__mutmut_1": (
        "pending: list[NewEvent] = None",
        (
            "'pending' is rebound to the taken events whenever self.pending has any; otherwise it is only tested "
            "for truth, and None is as falsy as []"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁappend__mutmut_9": (
        "self.pending[:1] = pending",
        (
            "self.pending is empty at that point (its events were just taken, and only a run's single resume ever "
            "adds to it), and on an empty list the slices [:1] and [:0] are the same place"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁappend__mutmut_10": (
        "self.writes = 1",
        (
            "ExecutionRun.writes is only read as a truth value (Workflow._restore: 'did this run write "
            "anything'), and after one successful write 1 is as true as any count"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁappend__mutmut_11": (
        "self.writes -= 1",
        "as append__mutmut_10: -1, -2, ... are never 0 again, so the truth value is the same",
    ),
    "taskloom.replay.xǁExecutionRunǁappend__mutmut_12": (
        "self.writes += 2",
        "as append__mutmut_10: 2, 4, ... are as true as 1, 2, ...",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_101": (
        "if deadline is not None and time.time() > deadline:",
        (
            "differs only when time.time() returns exactly the recorded deadline (a float computed from an "
            "earlier time.time() plus the timeout, with a store write in between)"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_116": (
        'self.append(NewEvent(_FAILED, step_id, "pause", serde.dumps_error(error, what=None)))',
        ("'what' names the owner only in the message of an error that cannot be stored; a TaskTimeoutError always can"),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_39": (
        "self.pending = [",
        (
            "the resume's events are the only thing ever added to self.pending, once per run (self.resume is "
            "cleared here), so it is empty when they are added and = and += give the same list"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_89": (
        "step = self.steps[step_id] = RecordedStep(None, data)",
        (
            "the entry's name is never compared: the run ends two lines below (WorkflowPaused or the deadline's "
            "TaskTimeoutError), and step ids are handed out once, so recorded() never meets this step id again in "
            "this run"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_93": (
        'step = self.steps[step_id] = RecordedStep("XXpauseXX", data)',
        "as run_pause_step__mutmut_89",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_pause_step__mutmut_94": (
        'step = self.steps[step_id] = RecordedStep("PAUSE", data)',
        "as run_pause_step__mutmut_89",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_sleep_step__mutmut_39": (
        "if remaining >= 0:",
        (
            "differs only when the time left is exactly 0.0 (until was computed from an earlier time.time()), and "
            "then asyncio.sleep(0) only yields once"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_sleep_step__mutmut_53": (
        'self.append(NewEvent(_COMPLETED, step_id, "sleep", serde.dumps(None, what=None)))',
        "'what' names the owner only in the message of a value that cannot be stored; None always can",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_sleep_step__mutmut_56": (
        'self.append(NewEvent(_COMPLETED, step_id, "sleep", serde.dumps(None, what="XXsleepXX")))',
        "as run_sleep_step__mutmut_53",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_sleep_step__mutmut_57": (
        'self.append(NewEvent(_COMPLETED, step_id, "sleep", serde.dumps(None, what="SLEEP")))',
        "as run_sleep_step__mutmut_53",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_task_step__mutmut_1": (
        "start_recorded: bool = True,",
        "the default is never used: StepCall.__await__, the only caller, always passes start_recorded",
    ),
    "taskloom.replay.xǁExecutionRunǁrun_task_step__mutmut_43": (
        "blob = serde.dumps_error(error, what=None)",
        (
            "'what' names the owner only when the error cannot be stored; the SerializationError raised by "
            "start_event always can"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁrun_task_step__mutmut_72": (
        "if (task.wants_control) or True",
        (
            "a TaskControl made for a task that does not take one is never seen: Task.prepare_arguments passes it "
            "only to tasks that want it, nobody holds it to request a stop, and the policy reads only its "
            "should_stop (False)"
        ),
    ),
    "taskloom.replay.xǁExecutionRunǁstart_event__mutmut_12": (
        "blob = serde.dumps((args, kwargs), what=None)",
        (
            "the whole call's message is never shown: when (args, kwargs) cannot be stored, the loop below stores "
            "each argument alone and raises naming the one at fault; a call whose arguments each store alone also "
            "stores as a tuple"
        ),
    ),
    "taskloom.replay.xǁStartWatchdogǁ_loop__mutmut_7": (
        "due = [start for start, deadline in self.pending.items() if deadline < now]",
        (
            "differs only when time.monotonic() returns exactly a start's deadline (an earlier time.monotonic() "
            "plus START_FLUSH_DELAY)"
        ),
    ),
    "taskloom.replay.xǁStepCallǁ__init____mutmut_6": (
        "self.start_recorded = None",
        ("start_recorded is only passed on to run_task_step, which tests it for truth; None is as falsy as False"),
    ),
    # -- taskloom/worker.py
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_7": (
        "if remaining < 0:",
        (
            "differs only when time.monotonic() returns exactly the deadline (an earlier time.monotonic() plus "
            "the time to the next look); the wait then lasts 0 s and the next pass returns"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_execute__mutmut_63": (
        "self._running.pop(record.id, )",
        (
            "the entry is always there: run() adds it while holding self._lock around pool.submit, and this pop "
            "takes the same lock, so it cannot run before the entry is added; pop's default is never used"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_execute__mutmut_66": (
        "self.store.release_execution(record.id, self.worker_id, requeue=None, retry_after=retry_after)",
        (
            "requeue is only tested for truth by both stores (SQLite: 1 if requeue else 0; PostgreSQL: CASE WHEN "
            "NULL AND ... takes the ELSE branch), and None is as false as False"
        ),
    ),
}

#: Mutants of code that this mutation run (one process, SQLite only) cannot reach; same shape
UNREACHABLE: dict[str, tuple[str, str]] = {
    # -- taskloom/replay.py
    "taskloom.replay.xǁExecutionRunǁ_append_fenced__mutmut_15": (
        'if record is not None or record.status == "cancelled":',
        (
            "needs the execution's row to vanish between the refused write and the read that follows it inside "
            "one call of append: taskloom never deletes an execution, and a row deleted before the write makes "
            "the write raise ExecutionNotFoundError instead of reaching this line"
        ),
    ),
    # -- taskloom/worker.py
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_14": (
        "log.exception(None, self.worker_id)",
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_15": (
        'log.exception("worker %s: waiting for work failed; polling", None)',
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_16": (
        "log.exception(self.worker_id)",
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_17": (
        'log.exception("worker %s: waiting for work failed; polling", )',
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_18": (
        'log.exception("XXworker %s: waiting for work failed; pollingXX", self.worker_id)',
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_19": (
        'log.exception("WORKER %S: WAITING FOR WORK FAILED; POLLING", self.worker_id)',
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
    "taskloom.worker.xǁWorkerǁ_wait_for_work__mutmut_20": (
        "self._stopping.wait(None)  # ends at once on stop()",
        (
            "the branch where the store's wait_for_work raises: SQLite's is an Event.wait that cannot raise, only "
            "PostgreSQL's raises (a permanent fault met while listening again), and the mutation run is SQLite "
            "only"
        ),
    ),
}
