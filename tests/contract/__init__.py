"""Test suites that every implementation of a port must pass (run by each backend's tests)."""
