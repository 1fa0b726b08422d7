"""The `rollout` command line: commands, views, reports and the demo."""

from rollout.cli.commands import app, main

__all__ = ["app", "main"]
