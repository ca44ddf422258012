"""Workflows and tasks that the log tests run in other processes (a worker, process-backend workers)."""
