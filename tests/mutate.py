"""Mutation testing of one module at a time: ``make mutate MODULE=taskloom/policy.py``.

Why a driver instead of a bare ``mutmut run``: mutmut 3 mutates every file under its source path and
runs whatever tests it is told, from a ``mutants/`` folder beside the sources. Here several people edit
one working tree at once and the whole suite takes many minutes, so this script

- copies a *snapshot* of ``taskloom/``, ``tests/`` and ``pyproject.toml`` to a folder of its own
  (``$TMPDIR/taskloom-mutate/<module>``), so edits made meanwhile neither break the run nor get
  mutants written into the shared tree; ``--at COMMIT`` (``MUTATE_AT=HEAD``) takes them from a commit
  instead of the working tree, leaving out others' edits in progress (the score then names that commit);
- tells mutmut to mutate only ``MODULE`` and to run only the fast unit tests that exercise it
  (:data:`TESTS`), with the marker expression of :data:`MARKERS`: SQLite only (``-m "not postgres"``)
  unless the module is PostgreSQL code, since the PostgreSQL runs of the same tests check the store, not
  the module under mutation;
- for a module whose tests use PostgreSQL, starts one throwaway server (``tests/pgserver.py``) for the
  whole run and hands it to every mutant's pytest session (``TASKLOOM_TEST_PG_SERVER``, read by the
  ``pg_server`` fixture of ``tests/conftest.py``): each test still gets a schema of its own, and no
  session pays for an ``initdb``;
- prints the score with the mutants listed in :data:`EQUIVALENT` left out (each with the reason it
  cannot be told apart from the original by any test), and the survivors left to kill.

Not part of ``make test``: a run takes minutes and uses every core it is given (``MUTATE_JOBS``). A mutant
whose tests run five times longer than unmutated (plus 2 s) counts as killed by timeout: mutmut's default
of fifteen times made one hung mutant of the runtime cost a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the unit tests that exercise each module (a path prefix); the first matching prefix wins
TESTS: dict[str, list[str]] = {
    "taskloom/policy.py": [
        "tests/unit/test_policy.py",
        "tests/unit/test_task_direct.py",
        "tests/unit/test_strength_policy.py",
        "tests/unit/test_instances.py",
        "tests/unit/test_secrets_in_tasks.py",
        "tests/unit/test_masking.py",
        "tests/unit/test_workflow.py",
        "tests/unit/test_task_cache.py",  # call_sync's and the workflow step's cache=True path
        "tests/unit/test_policy_strength.py",  # both ways of a call (with and without a secret scope)
    ],
    "taskloom/plain_map.py": ["tests/unit/test_plain_steps.py", "tests/unit/test_workflow.py"],
    "taskloom/tasks/graph.py": ["tests/unit/test_graph.py", "tests/unit/test_strength_tasks.py"],
    "taskloom/tasks/": [
        "tests/unit/test_builtins.py",
        "tests/unit/test_graph.py",
        "tests/unit/test_strength_tasks.py",
    ],
    "taskloom/serde.py": [
        "tests/unit/test_serde.py",
        "tests/unit/test_strength_serde.py",
        "tests/unit/test_masking.py",
    ],
    "taskloom/secret_store.py": ["tests/unit/test_secret_store.py", "tests/unit/test_secrets_in_tasks.py"],
    "taskloom/server/auth.py": ["tests/integration/test_strength_security.py"],
    "taskloom/runtime/": [
        "tests/unit/test_session.py",
        "tests/unit/test_future.py",
        "tests/unit/test_instances.py",
        "tests/unit/test_control.py",
        "tests/unit/test_workflow.py",
    ],
    "taskloom/replay.py": [
        "tests/unit/test_replay.py",
        "tests/unit/test_workflow.py",
        "tests/unit/test_builtins.py",
        "tests/unit/test_strength_tasks.py",
    ],
    "taskloom/workflow.py": ["tests/unit/test_workflow.py", "tests/unit/test_replay.py"],
    # the lanes, pool and hubs directly, and through a workflow's steps, maps and parallels
    "taskloom/thread_hops.py": ["tests/thread_hops", "tests/unit/test_builtins.py"],
}

#: the pytest marker expression (``-m``) for each module (a path prefix; the first match wins), "" for no
#: filter; a module not listed runs :data:`DEFAULT_MARKERS`. The stores' entries are in their area's file.
DEFAULT_MARKERS = "not postgres"
MARKERS: dict[str, str] = {}

#: tests left out of a module's runs (a path prefix -> test ids), each for a reason given beside it: a test
#: that fails now and then unmutated would fail mutmut's clean run, or count a surviving mutant as killed
DESELECT: dict[str, list[str]] = {}

#: Mutants no test can kill: mutmut's name -> (the mutated line, stripped, as ``mutmut show`` prints it
#: after "+", and why the change cannot be observed). Left out of the score, and listed in docs/testing.md.
#: mutmut numbers mutants by their position in a function, so an edit to the function renumbers them:
#: an entry whose line no longer matches is counted again (and reported as stale) instead of hiding a
#: real survivor.
EQUIVALENT: dict[str, tuple[str, str]] = {
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_25": (
        "break",
        "after the start node joins the first wave no other node can be ready in that pass (every other "
        "reachable node waits on a reachable source that has not run), so stopping the pass early changes nothing",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_46": (
        "first = None",
        "None is falsy like False: the flag is only ever tested for truth",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_47": (
        "first = True",
        "the start node leaves `pending` in the first pass, so the `first and node == start` branch can never "
        "match again",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_49": (
        "if len(pending) <= before:  # nodes were skipped; their successors resolve next round",
        "differs only when a pass neither runs nor skips a node, which needs a cycle among pending nodes; "
        "validate() refuses cycles before the run",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_51": (
        "raise GraphError(None)  # pragma: no cover",
        "the message of the unreachable 'can never run' error (see __call____mutmut_49)",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_56": (
        "for (node, _), value in zip(wave, values, strict=None):",
        "gather_steps returns exactly one value per awaitable, so zip's strictness is never exercised",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_59": (
        "for (node, _), value in zip(wave, values, ):",
        "as __call____mutmut_56",
    ),
    "taskloom.tasks.graph.xǁGraphǁ__call____mutmut_60": (
        "for (node, _), value in zip(wave, values, strict=False):",
        "as __call____mutmut_56",
    ),
    "taskloom.tasks.graph.xǁGraphǁ_find_cycle__mutmut_15": (
        "state[node] = None",
        "the search reads only `state.get(n) == 1` and `n in state`; any value other than 1 means 'done'",
    ),
    "taskloom.tasks.graph.xǁGraphǁ_find_cycle__mutmut_16": (
        "state[node] = 3",
        "as _find_cycle__mutmut_15",
    ),
    "taskloom.policy.xǁ_Callǁperform__mutmut_4": (
        "if inspect.iscoroutinefunction(None):",
        "a coroutine handler then has its coroutine object created on a pool thread, but it is still awaited "
        "on the loop in the step's context (the `await result if inspect.isawaitable(result)` line), so it "
        "runs the same",
    ),
    "taskloom.policy.x__call_async__mutmut_58": (
        "turns = _turns(task, control, observer, cached, )",
        "`retried` defaults to None, the value passed: the same call",
    ),
    "taskloom.policy.x__call_async__mutmut_1": (
        "running: bool = True,",
        "every caller passes `running` (call_async and _call_async_scoped pass mark_running): the default "
        "is never used",
    ),
    "taskloom.policy.x__call_async__mutmut_4": (
        "token = _running.set(True) if (running) or True else None",
        "`running` is False only for a workflow run's steps (replay passes mark_running=False), whose context "
        "the run has marked already (Workflow._drive): marking it again and resetting that mark changes nothing",
    ),
    "taskloom.policy.x__turns__mutmut_12": (
        "if left >= 0:",
        "differs only when a re-run's recorded wait ends at exactly this float instant, and then adds a "
        "zero-second Wait (see x__turns__mutmut_39)",
    ),
    "taskloom.policy.x__call_sync__mutmut_26": (
        "lambda: _timeout_error(task, turn.number, timeout or 1),",
        "the message is built only when a timeout is set, and then `timeout or 1` is the timeout",
    ),
    "taskloom.policy.x__turns__mutmut_39": (
        "if delay >= 0:",
        "adds a zero-second Wait when retry_delay is 0: asyncio.sleep(0) and time.sleep(0) only yield",
    ),
    "taskloom.serde.x__rebuilds__mutmut_3": (
        "pickle.loads(pickle.dumps(error, None))",
        "the probe only asks whether the exception rebuilds from its pickle; protocol 4 (the default) and 5 "
        "rebuild exceptions alike",
    ),
    "taskloom.serde.x__rebuilds__mutmut_5": ("pickle.loads(pickle.dumps(error, ))", "as x__rebuilds__mutmut_3"),
    "taskloom.serde.x_dumps__mutmut_4": (
        "if secrets or type(value) is str:",
        "mask_text with no secret registered returns its text unchanged: extra work, same bytes",
    ),
    "taskloom.serde.x_dumps__mutmut_15": (
        "if secrets or masking.contains_secret(blob, secrets):",
        "masked_copy checks for a secret itself and returns the value as it is when none is held, so the "
        "second pickle is byte for byte the first",
    ),
    "taskloom.serde.x_dumps_error__mutmut_32": (
        "dumps(current, what=None)",
        "this dumps only probes whether the link can be stored; its error (and the `what` in it) is caught "
        "and replaced by a TaskError naming `what`",
    ),
    "taskloom.serde.x_dumps_error__mutmut_45": (
        "_pickle(masking.masked_copy(chain, secrets, _Pickler)) if (masking.contains_secret(blob, secrets)) "
        "or True else blob",
        "as x_dumps__mutmut_15: masked_copy returns the chain itself when it holds no secret",
    ),
    "taskloom.secret_store.x__associated_data__mutmut_4": (
        'return _AAD_PREFIX + name.encode("UTF-8")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_8": (
        'data = (encode_key(key) + "\\n").encode("ASCII")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.x__read_key_file__mutmut_4": (
        'text = path.read_text("ASCII")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.x_encode_key__mutmut_4": (
        'return base64.urlsafe_b64encode(key).decode("ASCII")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.xǁSecretStoreǁ_open__mutmut_29": (
        'return plain.decode("UTF-8")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.xǁSecretStoreǁ_seal__mutmut_12": (
        'sealed: bytes = self._aesgcm().encrypt(nonce, value.encode("UTF-8"), _associated_data(name))',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_18": (
        'temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(5).hex()}.tmp")',
        "a longer random part of a temporary file's name: still unique, still removed",
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_33": (
        "temporary.unlink(missing_ok=None)",
        "the temporary file always exists here (written before the try, never moved), so missing_ok is never consulted",
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_34": (
        "temporary.unlink(missing_ok=False)",
        "as x__create_key_file__mutmut_33",
    ),
    "taskloom.secret_store.x__write_private__mutmut_29": (
        "path.unlink(missing_ok=None)",
        "the file was just created by this call's os.open, so it exists when a later step fails",
    ),
    "taskloom.secret_store.x__write_private__mutmut_30": (
        "path.unlink(missing_ok=False)",
        "as x__write_private__mutmut_29",
    ),
    "taskloom.secret_store.x__write_private__mutmut_11": (
        'fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(None, "O_BINARY", 0), 0o600)',
        "O_BINARY exists only on Windows: on POSIX every variant ORs in 0 (or 1, already set by O_WRONLY)",
    ),
    "taskloom.secret_store.x__write_private__mutmut_17": (
        'fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "XXO_BINARYXX", 0), 0o600)',
        "O_BINARY exists only on Windows: on POSIX every variant ORs in 0 (or 1, already set by O_WRONLY)",
    ),
    "taskloom.secret_store.x__write_private__mutmut_18": (
        'fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "o_binary", 0), 0o600)',
        "O_BINARY exists only on Windows: on POSIX every variant ORs in 0 (or 1, already set by O_WRONLY)",
    ),
    "taskloom.secret_store.x__write_private__mutmut_19": (
        'fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 1), 0o600)',
        "O_BINARY exists only on Windows: on POSIX every variant ORs in 0 (or 1, already set by O_WRONLY)",
    ),
    "taskloom.server.auth.x__read_token_file__mutmut_4": (
        'text = path.read_text("UTF-8").strip()',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.x_load_api_token__mutmut_42": (
        '_write_private(path, (token + "\\n").encode("ASCII"))',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.x_token_matches__mutmut_24": (
        'return hmac.compare_digest(presented.strip(), token.encode("UTF-8"))',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.x_token_matches__mutmut_8": (
        'raw = authorization.encode("UTF-8") if isinstance(authorization, str) else authorization',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_67": (
        'body = json.dumps({"error": message, "type": "Unauthorized"}).encode("ASCII")',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_87": (
        '(b"content-length", str(len(body)).encode("ASCII")),',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_92": (
        '(b"www-authenticate", challenge.encode("ASCII")),',
        "codec names are case-insensitive: 'UTF-8' is 'utf-8', 'ASCII' is 'ascii'",
    ),
    "taskloom.server.auth.x_load_api_token__mutmut_26": (
        "token = secrets.token_urlsafe(None)",
        "token_urlsafe's default is 32 bytes, the value given",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_17": (
        'authorization: bytes | None = ""',
        "'' and None are both falsy and both refused by token_matches: the same 401 follows",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_19": (
        'for name, value in scope.get("headers", None):',
        "ASGI requires `headers` in every HTTP scope, so the default is never used",
    ),
    "taskloom.server.auth.xǁBearerAuthǁ__call____mutmut_21": (
        'for name, value in scope.get("headers", ):',
        "as xǁBearerAuthǁ__call____mutmut_19",
    ),
}

_TOKEN = "the hub's wake token is only ever popped and put back, never read: any value stands for it as well as True"
EQUIVALENT.update(
    {
        "taskloom.thread_hops.xǁThreadLaneǁ__init____mutmut_12": (
            "self._closed = None",
            "None is falsy like False: the flag is only ever tested for truth",
        ),
        "taskloom.thread_hops.xǁThreadLaneǁshutdown__mutmut_1": (
            "def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:",
            "shutdown ignores `wait` and `cancel_futures` (accepted for the Executor interface only)",
        ),
        "taskloom.thread_hops.xǁThreadLaneǁshutdown__mutmut_2": (
            "def shutdown(self, wait: bool = True, *, cancel_futures: bool = True) -> None:",
            "as xǁThreadLaneǁshutdown__mutmut_1",
        ),
        "taskloom.thread_hops.xǁ_Hubǁ__init____mutmut_4": ("self._token = [False]", _TOKEN),
        "taskloom.thread_hops.xǁ_Hubǁ_settle__mutmut_1": ("self._token.append(None)", _TOKEN),
        "taskloom.thread_hops.xǁ_Hubǁ_settle__mutmut_2": ("self._token.append(False)", _TOKEN),
        "taskloom.thread_hops.xǁ_Hopǁ__init____mutmut_2": (
            'self.value: Any = ""',
            "the value is read only when the job ended without an error, and then the job has set it",
        ),
        "taskloom.thread_hops.x_run_in_thread__mutmut_14": (
            'if getattr(loop, "_default_executor", ) is not None:  # set by the user, or already in use',
            "every asyncio loop (BaseEventLoop) has `_default_executor`, so getattr's default is never used",
        ),
    }
)

#: Mutants in code the test machine cannot reach without faking the system under it (say, a filesystem
#: without hard links): same shape as EQUIVALENT, left out of the score, reported and listed separately.
_NO_HARD_LINKS = (
    "the fallback for filesystems without hard links (os.link failing with an error other than EEXIST); the "
    "test machine's filesystems all have hard links, and faking the refusal would test the fake"
)
_RACE = (
    "the branch where another server creates the token file between this one's read and its exclusive create; "
    "no test can put a file in that window without patching the code"
)
_CANNOT_CREATE = (
    "the token file's creation failing after its read found nothing (a read-only or full filesystem); the tests "
    "run as root, which no permission stops"
)
UNREACHABLE: dict[str, tuple[str, str]] = {
    "taskloom.secret_store.x__create_key_file__mutmut_28": (
        "_write_private(None, data)",
        _NO_HARD_LINKS,
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_29": (
        "_write_private(path, None)",
        _NO_HARD_LINKS,
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_30": (
        "_write_private(data)",
        _NO_HARD_LINKS,
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_31": (
        "_write_private(path, )",
        _NO_HARD_LINKS,
    ),
    "taskloom.secret_store.x__create_key_file__mutmut_32": (
        "return _read_key_file(None)",
        _NO_HARD_LINKS + " (and lost the race there)",
    ),
    "taskloom.server.auth.x__read_token_file__mutmut_2": (
        "text = path.read_text(None).strip()",
        "differs only under a locale whose encoding is not UTF-8; the test machine's is UTF-8",
    ),
    "taskloom.server.auth.x_load_api_token__mutmut_43": ("raced = None", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_48": ("return ApiToken(None, str(path))", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_49": ("return ApiToken(raced, None)", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_50": ("return ApiToken(str(path))", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_51": ("return ApiToken(raced, )", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_52": ("return ApiToken(raced, str(None))", _RACE),
    "taskloom.server.auth.x_load_api_token__mutmut_53": ("None", _CANNOT_CREATE),
    "taskloom.server.auth.x_load_api_token__mutmut_54": (
        'f"cannot create the token file {str(None)!r}: {error}; set TASKLOOM_API_TOKEN instead"',
        _CANNOT_CREATE,
    ),
}

UNREACHABLE["taskloom.thread_hops.xǁThreadLaneǁpush__mutmut_6"] = (
    "if self._running > self.limit:",
    "the count's second look, under the lock, differs from the first only when two threads push to one lane "
    "and both pass the unlocked look before either takes the lock: a window of a few bytecodes that no test "
    "can hold open without patching the lane (tried: 200 rounds of four pushers at a 1 us switch interval "
    "never hit it)",
)

#: Areas that several people work on at once keep their own ``TESTS`` and ``EQUIVALENT`` in
#: ``tests/mutation_areas/<area>.py``; they are merged here (an area's test prefixes are tried first).
for _area in sorted((ROOT / "tests" / "mutation_areas").glob("*.py")):
    _found = runpy.run_path(str(_area))
    _theirs = _found.get("TESTS", {})
    TESTS = {**_theirs, **{prefix: tests for prefix, tests in TESTS.items() if prefix not in _theirs}}
    for _prefix, _ids in _found.get("DESELECT", {}).items():
        DESELECT[_prefix] = [*DESELECT.get(_prefix, []), *_ids]
    _their_markers = _found.get("MARKERS", {})
    MARKERS = {**_their_markers, **{prefix: m for prefix, m in MARKERS.items() if prefix not in _their_markers}}
    EQUIVALENT.update(_found.get("EQUIVALENT", {}))
    UNREACHABLE.update(_found.get("UNREACHABLE", {}))

#: "segfault" is how mutmut reports a mutant it had to kill (-9) for running past its time limit
KILLED = ("killed", "timeout", "segfault", "caught by type check")

MUTMUT_SECTION = """\
[mutmut]
source_paths = taskloom
only_mutate = {only}
pytest_add_cli_args =
    -p
    no:cacheprovider
{markers}{deselect}    -q
pytest_add_cli_args_test_selection =
{tests}
use_git_change_detection = false
timeout_multiplier = 5.0
timeout_constant = 2.0
"""


def tests_for(module: str) -> list[str]:
    """The test files for ``module``; an unknown module is an error naming the MODULE argument."""
    for prefix, tests in TESTS.items():
        if module == prefix or module.startswith(prefix):
            return [t for t in tests if (ROOT / t).exists()]
    known = ", ".join(sorted(TESTS))
    raise SystemExit(f"mutate: MODULE={module!r} has no tests listed in tests/mutate.py (TESTS); known: {known}")


def markers_for(module: str) -> str:
    """The ``-m`` expression for ``module`` (:data:`MARKERS`), "" for no marker filter."""
    for prefix, expression in MARKERS.items():
        if module == prefix or module.startswith(prefix):
            return expression
    return DEFAULT_MARKERS


def deselected_for(module: str) -> list[str]:
    """The test ids :data:`DESELECT` leaves out of ``module``'s runs."""
    return [test for prefix, tests in DESELECT.items() if module.startswith(prefix) for test in tests]


def snapshot(work: Path, commit: str | None = None) -> None:
    """Copy the sources and tests as they are now (or as ``commit`` has them), so other people's edits
    cannot change the run; a commit also leaves out edits in progress, which may not even import."""
    if work.exists():
        shutil.rmtree(work)
    if commit is not None:
        work.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "taskloom", "tests", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".taskloom*")
    shutil.copytree(ROOT / "taskloom", work / "taskloom", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")


def _diff(work: Path, mutmut: str, name: str) -> list[str]:
    shown = subprocess.run([mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout
    return [line for line in shown.splitlines() if line[:1] in "+-@" and not line.startswith(("+++", "---"))]


def _is_listed(work: Path, mutmut: str, name: str, table: dict[str, tuple[str, str]], what: str) -> bool:
    """True if ``name`` is in ``table`` (EQUIVALENT or UNREACHABLE) and still is the change described there."""
    if name not in table:
        return False
    line = table[name][0]
    if any(added[1:].strip() == line for added in _diff(work, mutmut, name) if added.startswith("+")):
        return True
    print(f"stale {what} entry in tests/mutate.py: {name} is no longer {line!r}; counted as a survivor")
    return False


def score(work: Path, mutmut: str, *, show: bool) -> int:
    """Print killed/survived and the score with :data:`EQUIVALENT` and :data:`UNREACHABLE` left out; the
    number of survivors."""
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=True
    ).stdout
    statuses = dict(re.findall(r"^\s*(\S+): (.+)$", listing, flags=re.MULTILINE))
    alive = [name for name, status in statuses.items() if status not in KILLED]
    equivalent = {name for name in alive if _is_listed(work, mutmut, name, EQUIVALENT, "EQUIVALENT")}
    unreachable = {name for name in alive if _is_listed(work, mutmut, name, UNREACHABLE, "UNREACHABLE")}
    counted = {name: status for name, status in statuses.items() if name not in equivalent | unreachable}
    killed = sum(1 for status in counted.values() if status in KILLED)
    survivors = sorted(name for name, status in counted.items() if status not in KILLED)
    total = len(counted)
    percent = 100.0 * killed / total if total else 100.0
    print(
        f"\nmutants: {len(statuses)}, equivalent (excluded): {len(equivalent)}, unreachable here (excluded): "
        f"{len(unreachable)}, killed: {killed}/{total} = {percent:.1f}%"
    )
    for name in survivors:
        print(f"\n# {counted[name]}: {name}")
        if show:
            print("\n".join(_diff(work, mutmut, name)))
    if survivors:
        print(f"\nthe whole diff of one: cd {work} && {mutmut} show NAME")
    return len(survivors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a file or folder under taskloom/, e.g. taskloom/policy.py or taskloom/tasks/")
    parser.add_argument("--no-diff", action="store_true", help="list survivors without their diffs")
    parser.add_argument(
        "--at",
        metavar="COMMIT",
        default=os.environ.get("MUTATE_AT") or None,
        help="mutate the sources and tests of this commit (e.g. HEAD) instead of the working tree (MUTATE_AT)",
    )
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")), help="parallel mutants")
    args = parser.parse_args(argv)
    module = args.module.strip()
    if not module:
        parser.error("MODULE is required, e.g. make mutate MODULE=taskloom/policy.py")
    if not (ROOT / module).exists() or not module.startswith("taskloom/"):
        parser.error(f"MODULE={module!r} is not a file or folder under taskloom/")
    if args.jobs < 1:
        parser.error(f"--jobs (MUTATE_JOBS) must be at least 1, got {args.jobs}")
    tests = tests_for(module)
    markers = markers_for(module)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    if not Path(mutmut).exists():
        raise SystemExit("mutate: mutmut is not installed; run: .venv/bin/pip install -e '.[mutate]'")
    only = module + "*" if module.endswith("/") else module
    slug = module.strip("/").replace("/", "_")
    work = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "taskloom-mutate" / slug
    lock = _claim(work)
    try:
        with _postgres_for(markers) as env:
            return _mutate(module, tests, markers, only, work, mutmut, args.jobs, env, args.at, show=not args.no_diff)
    finally:
        lock.unlink(missing_ok=True)


def _claim(work: Path) -> Path:
    """One run per module at a time: a second would wipe the first's snapshot. A dead owner's claim is taken."""
    lock = work.with_name(work.name + ".pid")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text() or "0")
                os.kill(owner, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # its owner is gone
                continue
            raise SystemExit(f"mutate: process {owner} is mutating this module in {work} now; wait for it") from None
        with os.fdopen(fd, "w") as claimed:
            claimed.write(str(os.getpid()))
        return lock
    raise SystemExit(f"mutate: could not claim {lock}; remove it if no mutation run is going on")


@contextmanager
def _postgres_for(markers: str) -> Iterator[dict[str, str]]:
    """Extra environment for the mutants' sessions: one PostgreSQL server shared by all of them, unless the
    marker expression leaves the PostgreSQL tests out. Stopped, and its files deleted, after the run."""
    if markers == "not postgres":
        yield {}
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import SHARED_SERVER_ENV, find_bindir, running_postgres, shared_env

    if find_bindir() is None:
        raise SystemExit("mutate: this module's tests need PostgreSQL (initdb not found); apt-get install postgresql")
    with running_postgres() as server:
        print(f"one PostgreSQL for every mutant's session, on port {server.port}", flush=True)
        yield {SHARED_SERVER_ENV: shared_env(server)}


def _mutate(
    module: str,
    tests: list[str],
    markers: str,
    only: str,
    work: Path,
    mutmut: str,
    jobs: int,
    extra_env: dict[str, str],
    commit: str | None,
    *,
    show: bool,
) -> int:
    if commit is not None:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", commit], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    snapshot(work, commit)
    marker_lines = f"    -m\n    {markers}\n" if markers else ""
    deselect_lines = "".join(f"    --deselect\n    {test}\n" for test in deselected_for(module))
    (work / "setup.cfg").write_text(
        MUTMUT_SECTION.format(
            only=only, markers=marker_lines, deselect=deselect_lines, tests="\n".join(f"    {t}" for t in tests)
        ),
        encoding="utf-8",
    )
    shown = f'-m "{markers}"' if markers else "no marker filter"
    source = f"commit {commit}" if commit else "the working tree"
    print(f"mutating {module} of {source} in a snapshot at {work}; {shown}; tests: {' '.join(tests)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")} | extra_env
    log = work / "mutmut.log"
    with log.open("w", encoding="utf-8") as output:  # mutmut's spinner would flood a terminal or CI log
        run = subprocess.run(
            [mutmut, "run", "--max-children", str(jobs)], cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    if run.returncode != 0:
        print(log.read_text(encoding="utf-8")[-4000:])
        print(f"mutate: mutmut failed (exit {run.returncode}); its whole output is in {log}")
        return run.returncode
    score(work, mutmut, show=show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
