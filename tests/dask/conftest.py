"""The Dask tests' cluster and store: one LocalCluster of 2 process workers per module, a SQLite store per test.

The cluster starts once per module (seconds on a busy machine); its workers import ``daskapp.flows``
through PYTHONPATH and write where ``DASKAPP_DIR`` says (a directory of the module, emptied before each test).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.store import stores

HERE = Path(__file__).parent
_FOREIGN_SETTINGS = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DASKAPP_DIR for this module's test process and, set before the cluster starts, its Dask workers."""
    path = tmp_path_factory.mktemp("daskapp")
    saved = {name: os.environ.get(name) for name in ("DASKAPP_DIR", "PYTHONPATH")}
    os.environ["DASKAPP_DIR"] = str(path)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), saved["PYTHONPATH"]) if p)
    sys.path.insert(0, str(HERE))
    yield path
    sys.path.remove(str(HERE))
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def isolated_store(app_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store as the default store, taskloom's home in ``tmp_path``, and an empty runs.log."""
    url = f"sqlite:///{tmp_path / 'taskloom.db'}"
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    for name in _FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for leftover in app_dir.iterdir():
        leftover.unlink()
    stores.clear()
    yield url
    stores.clear()


@pytest.fixture(scope="module")
def dask_client(app_dir: Path) -> Iterator[Any]:
    """A real LocalCluster (2 worker processes, 1 thread each, on 127.0.0.1) as this module's executor.

    Dask's own ``allowed-failures`` is left at its default (3), as on a cluster taskloom does not own: a
    re-run of an attempt whose worker died is refused by taskloom itself (taskloom.executors.dask).
    """
    from distributed import Client, LocalCluster

    import taskloom.executors

    # Its HTTP server (health, metrics; the dashboard if bokeh is there) on a free loopback port: None would
    # leave Dask's default, 8787, which a second test run on the machine would find taken.
    cluster = LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    client = Client(cluster)
    try:
        with taskloom.executors.use_dask(client):
            yield client
    finally:
        client.close()
        cluster.close()
