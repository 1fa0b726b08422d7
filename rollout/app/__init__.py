"""The application: the driver, the Python API, releases across environments, backtests and
plans, built from the core, the analysis and the adapters."""
