"""Tasks run by instance worker processes in tests/integration/test_remote_backend.py."""
