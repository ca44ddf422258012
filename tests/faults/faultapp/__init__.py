"""Workflows the fault-injection tests run in real processes (workers, ``taskloom run``, drivers)."""
