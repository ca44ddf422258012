"""Workflow modules that the integration tests run in subprocesses (``python -m helpers.run ...``)."""
