#!/usr/bin/env bash
# Rolls VERSION out on the first environment, then releases it along the others, in order,
# on the Python API (rollout.Rollouts and rollout.release).
#
#   examples/release-pipeline.sh v2 staging prod          # from the project directory
#   APPROVE=1 examples/release-pipeline.sh v2 staging prod   # when prod requires approval
#
# Exits like the CLI: 0 promoted everywhere (or nothing to do), 1 rolled back by analysis,
# 2 invalid input, 3 infrastructure error, 4 aborted, 5 a release gate is not met (the
# gates are printed; nothing was changed on either stack).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <version> <first-env> [<next-env> ...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}

exec "$python" - "$@" <<'PY'
import os
import sys

from rollout import GateNotMet, RolloutError, Rollouts, release

version, first, *rest = sys.argv[1:]
approve = os.environ.get("APPROVE") == "1"
try:
    result = Rollouts(stack=first).run(version)
    print(f"{first}: {result.outcome}: {result.reason}", file=sys.stderr)
    if result.exit_code != 0:
        sys.exit(result.exit_code)
    for source, target in zip([first, *rest], rest):
        released = release(source, target, approve=approve)
        print(f"{target}: {released.outcome}: {released.reason}", file=sys.stderr)
        if released.exit_code != 0:
            sys.exit(released.exit_code)
except GateNotMet as err:
    for gate in err.check.unmet:
        print(f"gate {gate.name} not met: {gate.detail}\n  fix: {gate.fix}", file=sys.stderr)
    sys.exit(err.exit_code)
except RolloutError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)
PY
