"""`python -m rollout.cli`."""

from rollout.cli.commands import main

main()
