"""Runs the lab's data plane: python -m rollout.lab.dataplane --help."""

import sys

from rollout.lab.dataplane.server import main

if __name__ == "__main__":
    sys.exit(main())
