"""Output storages: inline keeps the value, local files keep a pickle per step, both keep types."""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from taskloom.errors import SerializationError, TaskError
from taskloom.options import OutputStorage, TaskOptions
from taskloom.outputs import InlineOutputStorage, LocalFileOutputStorage


@dataclass(frozen=True)
class Invoice:
    number: int
    issued: datetime
    lines: tuple[str, ...]


VALUES: list[Any] = [
    datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    Invoice(7, datetime(2024, 5, 1, tzinfo=UTC), ("a", "b")),
    {"nested": [1, 2.5, None, {"x"}]},
    None,
]


@pytest.fixture
def files(tmp_path: Path) -> LocalFileOutputStorage:
    return LocalFileOutputStorage(tmp_path / "outputs")


def visible_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_inline_storage_round_trips_the_value_itself(value: Any) -> None:
    storage = InlineOutputStorage()
    stored = storage.store("exec-1/step-1", value)
    assert stored is value
    assert storage.retrieve(stored) == value


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_local_files_round_trip_values_with_their_types(files: LocalFileOutputStorage, value: Any) -> None:
    reference = files.store("exec-1/step-1", value)
    restored = files.retrieve(reference)
    assert restored == value
    assert type(restored) is type(value)


def test_a_new_storage_on_the_same_directory_reads_earlier_outputs(
    files: LocalFileOutputStorage, tmp_path: Path
) -> None:
    reference = files.store("exec-1/step-1", VALUES[1])
    assert LocalFileOutputStorage(tmp_path / "outputs").retrieve(reference) == VALUES[1]


def test_local_reference_is_a_file_name_under_the_directory(files: LocalFileOutputStorage) -> None:
    reference = files.store("exec-1/step-1", 42)
    assert reference.startswith("file:")
    name = reference.removeprefix("file:")
    assert "/" not in name
    assert visible_files(files.directory) == [name]


def test_directory_is_created_on_first_store_not_before(tmp_path: Path) -> None:
    storage = LocalFileOutputStorage(tmp_path / "later" / "outputs")
    assert not (tmp_path / "later").exists()
    storage.store("step", 1)
    assert (tmp_path / "later" / "outputs").is_dir()


def test_storing_a_reference_again_replaces_its_file(files: LocalFileOutputStorage) -> None:
    first = files.store("exec-1/step-1", "old")
    second = files.store("exec-1/step-1", "new")
    assert first == second
    assert files.retrieve(second) == "new"
    assert len(visible_files(files.directory)) == 1


def test_references_that_sanitise_alike_get_different_files(files: LocalFileOutputStorage) -> None:
    a = files.store("exec/1", "a")
    b = files.store("exec:1", "b")
    assert a != b
    assert (files.retrieve(a), files.retrieve(b)) == ("a", "b")


def test_a_reference_cannot_escape_the_directory(files: LocalFileOutputStorage, tmp_path: Path) -> None:
    reference = files.store("../../escape", "value")
    assert visible_files(files.directory) == [reference.removeprefix("file:")]
    assert visible_files(tmp_path) == ["outputs"]
    with pytest.raises(TaskError, match="not made by LocalFileOutputStorage"):
        files.retrieve("file:../escape.pickle")


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(files: LocalFileOutputStorage) -> None:
    reference = files.store("exec-1/step-1", {"value": "old"})
    half_picklable = {"big": "x" * 1_000_000, "lock": threading.Lock()}  # fails after writing part
    with pytest.raises(SerializationError, match="exec-1/step-1"):
        files.store("exec-1/step-1", half_picklable)
    assert files.retrieve(reference) == {"value": "old"}
    assert visible_files(files.directory) == [reference.removeprefix("file:")]


def test_a_missing_file_raises_task_error_naming_the_reference(files: LocalFileOutputStorage) -> None:
    reference = files.store("exec-1/step-1", 1)
    (files.directory / reference.removeprefix("file:")).unlink()
    with pytest.raises(TaskError, match="is missing") as caught:
        files.retrieve(reference)
    assert reference in str(caught.value)


def test_a_reference_from_another_storage_is_refused(files: LocalFileOutputStorage) -> None:
    with pytest.raises(TaskError, match="not made by LocalFileOutputStorage"):
        files.retrieve({"inline": "value"})


@pytest.mark.parametrize("storage", [InlineOutputStorage(), LocalFileOutputStorage("/srv/outputs")], ids=repr)
def test_storages_pickle_and_satisfy_the_protocol(storage: OutputStorage) -> None:
    copy = pickle.loads(pickle.dumps(storage))
    assert copy == storage
    assert repr(copy) == repr(storage)
    assert isinstance(storage, OutputStorage)
    assert TaskOptions.build(output_storage=storage).output_storage is storage


def test_reprs_say_where_outputs_go(tmp_path: Path) -> None:
    assert repr(InlineOutputStorage()) == "InlineOutputStorage()"
    assert repr(LocalFileOutputStorage(tmp_path)) == f"LocalFileOutputStorage({str(tmp_path)!r})"


def test_a_relative_directory_is_fixed_when_the_storage_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalFileOutputStorage("outputs")
    assert storage.directory == tmp_path / "outputs"
