"""Benchmarks that need no cluster: simulated traffic fed to the real judges."""
