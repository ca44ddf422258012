"""``import taskloom`` (and a one-step workflow on SQLite) load only what a local workflow needs.

Each check runs in a fresh interpreter. Since issue 12's one-step process, a run of plain sync steps
loads no event loop either (taskloom.loop_free): asyncio, with the ``ssl``, ``socket``, ``selectors`` and
``subprocess`` it imports, is loaded by the first step that needs a loop. Nor does it load ``logging``
(taskloom.logs installs its record factory when the program imports it), ``inspect``, ``dataclasses``
(taskloom.plain_values, taskloom.signatures), ``pathlib``, ``concurrent.futures``, ``typing``
(taskloom.typing_free), nor the policy: a plain step needs none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: modules of the server, the client, the PostgreSQL driver, the CLI, the optional extras, and of
#: stdlib parts no local workflow needs (importlib.resources drew tempfile, shutil, zipfile, bz2, lzma)
AVOIDED = (
    "argparse",
    "asyncio",  # a run of plain sync steps is driven without a loop (taskloom.loop_free)
    "concurrent.futures",  # with logging: a ThreadLane is no Executor subclass
    "dataclasses",  # taskloom.plain_values
    "inspect",  # taskloom.signatures reads a plain function's code object
    "logging",  # taskloom.logs: lazy loggers, the record factory installed when logging is imported
    "pathlib",  # Settings.home_dir and SQLiteStore.file are str
    "queue",  # made with the first pool thread
    "selectors",
    "socket",  # the host name from os.uname
    "ssl",
    "subprocess",
    "traceback",  # only a failure's note needs it
    "typing",  # annotations are strings; taskloom.typing_free stands in for the few run-time names
    "importlib",  # taskloom.lazy imports it with the first lazy name used
    "datetime",  # the first event read imports it: a new execution's run reads none
    "_strptime",
    "taskloom.cache",  # the policy's and the general path's: plain steps need neither
    "taskloom.executors",
    "taskloom.group_commit",
    "taskloom.policy",
    "taskloom.runtime",  # TaskControl, for a task that takes one
    "taskloom.thread_hops",  # a run's lane, made by its first body that leaves the loop's thread
    "bz2",
    "cronsim",
    "cryptography",
    "dask",
    "decimal",  # serde's JSON views and cache keys import it when they meet a value
    "distributed",
    "email",
    "fastapi",
    "hashlib",  # OpenSSL: cache keys and over-long child ids import it
    "http",
    "httpx",
    "importlib.resources",
    "lzma",
    "opentelemetry",
    "platform",  # drawn by uuid
    "psycopg",
    "psycopg_pool",
    "random",  # retry jitter and a store outage's backoff import it when they draw
    "rich",
    "starlette",
    "taskloom.cli",
    "taskloom.client",
    "taskloom.handles",  # with queues and runner: wf.start() and wf.handle() load them, run() does not
    "taskloom.queues",
    "taskloom.runner",
    "taskloom.runtime.config",  # TaskConfig, sessions, instances and futures load with their names
    "taskloom.runtime.future",
    "taskloom.runtime.instance",
    "taskloom.runtime.session",
    "taskloom.schedule_ticks",  # schedules load with the first workflow that has one
    "taskloom.schedules",
    "taskloom.server",
    "taskloom.store.postgres",
    "taskloom.store.records",  # messages, schedules, queues, expired deadlines: records a run never makes
    "taskloom.worker",  # with worker_settings: a worker's, loaded from taskloom.settings on first use
    "taskloom.worker_settings",
    "tempfile",
    "unicodedata",  # checks only an execution id the caller gave
    "urllib.request",
    "uuid",  # ids come from taskloom.ids
    "uvicorn",
    "zipfile",
    "zoneinfo",
)

#: avoided by ``import taskloom`` alone; a run writes its execution's start data as JSON
AVOIDED_BY_IMPORT = ("json",)

ONE_STEP = """
from taskloom import task, workflow

@task
def hello(name):
    return "hello " + name

@workflow
async def greet(ctx):
    return await hello(ctx.input)

assert greet.run("world").output == "hello world"
"""


#: taskloom and its dependencies, for an interpreter started without ``site`` (``-S``): an editable
#: install's startup hook imports pathlib, re and more in every process of this venv, which would hide
#: whether taskloom imports them (a regular install has no such hook)
PATHS = os.pathsep.join(
    [str(Path(__file__).resolve().parents[2]), *(p for p in sys.path if p.endswith("site-packages"))]
)


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` (its own store in ``tmp_path``)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'taskloom.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": PATHS,
    }
    # the modules are listed before json is imported to print them
    script = f"{code}\nimport sys\nloaded = sorted(sys.modules)\nimport json\nprint(json.dumps(loaded))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str], avoided: tuple[str, ...] = AVOIDED) -> list[str]:
    return sorted(name for name in modules if any(name == a or name.startswith(f"{a}.") for a in avoided))


def added_by(code: str, tmp_path: Path) -> set[str]:
    """The modules ``code`` loads beyond what the interpreter's own start loads."""
    return loaded_after(code, tmp_path) - loaded_after("pass", tmp_path)


def test_import_taskloom_loads_none_of_the_modules_a_local_workflow_does_not_need(tmp_path: Path) -> None:
    assert heavy(added_by("import taskloom", tmp_path), AVOIDED + AVOIDED_BY_IMPORT) == []


def test_a_one_step_workflow_on_sqlite_loads_none_of_them_either(tmp_path: Path) -> None:
    assert heavy(added_by(ONE_STEP, tmp_path)) == []


def test_every_public_name_imports_and_a_lazy_one_loads_its_module_on_first_use(tmp_path: Path) -> None:
    code = (
        "import sys, taskloom\n"
        "assert 'taskloom.schedules' not in sys.modules, 'loaded by the import itself'\n"
        "from taskloom import Schedule, ScheduleError, run_schedules\n"
        "names = {name: getattr(taskloom, name) for name in taskloom.__all__}\n"
        "assert Schedule.__module__ == 'taskloom.schedules' and ScheduleError.__module__ == 'taskloom.schedule_ticks'\n"
        "assert run_schedules is names['run_schedules'] and set(taskloom.__all__) <= set(dir(taskloom))\n"
    )
    assert "taskloom.schedules" in loaded_after(code, tmp_path)
