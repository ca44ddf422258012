"""Stored exceptions keep their whole cause chain, and their traceback note only once (issue 14)."""

from __future__ import annotations

import dataclasses
import enum
import errno
import traceback
from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.errors import SerializationError
from taskloom.serde import dumps, dumps_error, json_view, loads

#: how many links of a cause chain are stored (taskloom/serde.py); longer chains are cut there
STORED_LINKS = 8

NOTE = "(original traceback)"


class StageError(Exception):
    """One link of a cause chain; its message ``stage N`` tells the links apart."""

    @property
    def stage(self) -> int:
        return int(str(self.args[0]).removeprefix("stage "))


def raise_chain(links: int) -> BaseException:
    """Raise ``StageError(0) from StageError(1) from ... StageError(links - 1)``; return the caught error."""

    def level(stage: int) -> None:
        if stage == links - 1:
            raise StageError(f"stage {stage}")
        try:
            level(stage + 1)
        except StageError as cause:
            raise StageError(f"stage {stage}") from cause

    try:
        level(0)
    except StageError as error:
        return error
    raise AssertionError("unreachable")


def stages(error: BaseException | None) -> list[int]:
    found = []
    while error is not None:
        assert isinstance(error, StageError), error
        found.append(error.stage)
        error = error.__cause__
    return found


@pytest.mark.parametrize("links", [1, 2, 3, 5, STORED_LINKS])
def test_the_whole_cause_chain_comes_back(links: int) -> None:
    restored = loads(dumps_error(raise_chain(links), what="test"))
    assert stages(restored) == list(range(links))
    assert [str(e) for e in _chain(restored)] == [f"stage {n}" for n in range(links)]


def test_a_longer_chain_is_cut_at_the_stored_limit_not_lost() -> None:
    restored = loads(dumps_error(raise_chain(STORED_LINKS + 5), what="test"))
    assert stages(restored) == list(range(STORED_LINKS))


def test_a_cause_that_cannot_be_stored_keeps_its_place_in_the_chain() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    try:
        try:
            try:
                raise StageError("stage 2")
            except StageError as deepest:
                raise Local("unpicklable middle") from deepest
        except Local as middle:
            raise StageError("stage 0") from middle
    except StageError as error:
        restored = loads(dumps_error(error, what="task 't'"))
    chain = _chain(restored)
    assert len(chain) == 3
    assert isinstance(chain[0], StageError) and chain[0].stage == 0
    assert "Local: unpicklable middle" in str(chain[1])
    assert isinstance(chain[2], StageError) and chain[2].stage == 2


def _chain(error: BaseException | None) -> list[BaseException]:
    found = []
    while error is not None:
        found.append(error)
        error = error.__cause__
    return found


def _notes(error: BaseException) -> list[str]:
    return [n for n in getattr(error, "__notes__", []) if n.startswith(NOTE)]


def test_storing_an_error_twice_adds_its_traceback_note_once() -> None:
    error = raise_chain(1)
    first = loads(dumps_error(error, what="test"))
    second = loads(dumps_error(error, what="test"))
    assert len(_notes(first)) == 1
    assert len(_notes(second)) == 1
    assert "raise_chain" in _notes(second)[0]  # the note is the original traceback


def test_an_error_stored_raised_again_and_stored_again_keeps_one_note() -> None:
    """What a replayed failure does: the stored error is re-raised, and may be stored once more."""
    restored = loads(dumps_error(raise_chain(2), what="test"))
    try:
        raise restored
    except StageError as again:
        stored_again = loads(dumps_error(again, what="test"))
    assert len(_notes(stored_again)) == 1
    assert stages(stored_again) == [0, 1]


def test_a_workflow_step_failure_keeps_its_chain_and_one_note_through_replay() -> None:
    @task
    def deep() -> None:
        raise raise_chain(4)

    @workflow
    async def failing(ctx: WorkflowExecutionContext[None]) -> Any:
        await deep()

    ctx = failing.run()
    assert ctx.has_failed
    assert stages(ctx.output) == [0, 1, 2, 3]
    again = failing.run(execution_id=ctx.execution_id)  # finished: read back from the store
    assert stages(again.output) == [0, 1, 2, 3]
    assert len(_notes(again.output)) == 1


# -- what survives the store, exactly -------------------------------------------------------------------
def test_stored_values_use_pickle_protocol_5() -> None:
    """The store's format is pinned (serde.PROTOCOL), not whatever this Python's default is."""
    for value in ("text", 3, [1, 2], {"a": StageError("stage 0")}):
        assert dumps(value, what="test")[:2] == b"\x80\x05", value
    assert dumps_error(raise_chain(1), what="test")[:2] == b"\x80\x05"


def test_os_errors_keep_their_errno_strerror_filename_and_subclass() -> None:
    """Exceptions that rebuild from their args go through their own constructor (OSError maps errno to
    its subclass and fills its attributes there), not through the by-state fallback."""
    error = OSError(errno.ENOENT, "No such file or directory", "missing.txt")
    restored = loads(dumps(error, what="test"))
    assert type(restored) is FileNotFoundError
    assert (restored.errno, restored.strerror, restored.filename) == (
        errno.ENOENT,
        "No such file or directory",
        "missing.txt",
    )
    decode = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert str(loads(dumps(decode, what="test"))) == str(decode)


def test_a_value_that_cannot_be_stored_is_refused_saying_what_to_use() -> None:
    with pytest.raises(SerializationError) as caught:
        dumps(lambda: 1, what="task 't' result")
    message = str(caught.value)
    assert message.startswith("task 't' result: cannot store a value of type function")
    assert message.endswith("Use values that pickle: builtins, dataclasses, pydantic models, module-level classes.")


def test_the_traceback_note_is_the_formatted_traceback() -> None:
    error = raise_chain(1)
    expected = "".join(traceback.format_exception(error)).rstrip()
    restored = loads(dumps_error(error, what="test"))
    assert _notes(restored) == [f"{NOTE}\n{expected}"]


# -- json_view: scalars as they are, nesting cut at one depth for every container ------------------------
def test_json_view_keeps_floats_and_writes_nan_as_text() -> None:
    assert json_view(1.5) == 1.5 and type(json_view(1.5)) is float
    assert json_view(float("nan")) == "nan"
    assert json_view(True) is True and json_view(None) is None and json_view("s") == "s"


@dataclasses.dataclass
class Box:
    inner: Any


#: json_view shows 21 levels (depths 0 to 20); the value at depth 21 is its repr
SHOWN_LEVELS = 21


def _levels(view: Any) -> tuple[int, Any]:
    """How many containers deep ``view`` goes, and what is at the bottom."""
    levels = 0
    while isinstance(view, list | dict):
        view = view[0] if isinstance(view, list) else next(iter(view.values()))
        levels += 1
    return levels, view


def _nest(wrap: Any, depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = wrap(value)
    return value


@pytest.mark.parametrize(
    "wrap",
    [lambda v: [v], lambda v: (v,), lambda v: {"k": v}, Box],
    ids=["list", "tuple", "dict", "dataclass"],
)
def test_json_view_cuts_deep_nesting_at_the_same_depth_for_every_container(wrap: Any) -> None:
    levels, bottom = _levels(json_view(_nest(wrap, 30)))
    assert levels == SHOWN_LEVELS
    assert bottom == repr(_nest(wrap, 30 - SHOWN_LEVELS))  # the repr of what was cut, not of anything else


def test_json_view_counts_an_enum_and_a_pydantic_model_as_a_level() -> None:
    import pydantic

    class Model(pydantic.BaseModel):
        inner: Any

    levels, _ = _levels(json_view(Model(inner=_nest(lambda v: [v], 30))))
    assert levels == SHOWN_LEVELS - 1  # the model's dict is level 1 of the view and depth 1
    deep = enum.Enum("Deep", {"MEMBER": _nest(lambda v: (v,), 30)})
    levels, _ = _levels(json_view(deep.MEMBER))
    assert levels == SHOWN_LEVELS - 1  # the member is depth 0 and shows as its value, from depth 1


def test_what_is_stored_does_not_depend_on_a_library_registering_exception_reducers() -> None:
    # distributed (the Dask executor) installs tblib's reducers for every exception class when imported;
    # with them pickle keeps whole cause chains and tracebacks. A fresh process shows it without
    # touching this one's copyreg.
    import subprocess
    import sys

    pytest.importorskip("tblib")
    probe = (
        "import tblib.pickling_support; tblib.pickling_support.install()\n"
        "from taskloom.serde import STORED_CHAIN_LINKS, dumps_error, loads\n"
        "def chain(n):\n"
        "    error = None\n"
        "    for stage in range(n):\n"
        "        try:\n"
        "            raise ValueError(f'stage {stage}') from error\n"
        "        except ValueError as raised:\n"
        "            error = raised\n"
        "    return error\n"
        "restored, links = loads(dumps_error(chain(STORED_CHAIN_LINKS + 5), what='t')), 0\n"
        "while restored is not None:\n"
        "    links, restored = links + 1, restored.__cause__\n"
        "assert links == STORED_CHAIN_LINKS, links\n"
        "missing = loads(dumps_error(FileNotFoundError(2, 'No such file', '/x'), what='t'))\n"
        "assert (type(missing), missing.errno, missing.filename) == (FileNotFoundError, 2, '/x')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
