"""Entry point that Pulumi runs for this project; the program itself is infra.program.main."""

import sys
from pathlib import Path

# Pulumi may run this file by path with only infra/ on sys.path; make `infra` importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra import program  # noqa: E402

program.main()
