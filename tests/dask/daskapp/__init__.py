"""Tasks and workflows of the Dask executor tests, importable by the Dask workers (tests/dask on their path)."""
