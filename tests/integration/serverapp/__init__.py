"""Workflows that worker processes run in the HTTP server tests."""
