"""A project folder of its own that runs this checkout's program: for the demo and lab tests.

It holds Pulumi.yaml and a `stacks/` folder; the program folder is a link to the checkout's,
so the `pulumi` CLI (and so the driver) runs the same program a hand-run `pulumi up` does.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rollout.adapters.paths import install_root
from rollout.core.errors import InvalidInput


def project_copy(target: Path, *, source: Path | None = None) -> Path:
    """`source` (default: this checkout's own project) as a project in `target`."""
    root = source or install_root()
    settings = yaml.safe_load((root / "Pulumi.yaml").read_text())
    main = str(settings.get("main", "")).rstrip("/")
    if not main or main == ".":
        raise InvalidInput(f"{root / 'Pulumi.yaml'} has no `main` folder to link",
                           hint="set `main: infra/` (the program's folder) in Pulumi.yaml")
    (target / "stacks").mkdir(parents=True, exist_ok=True)
    (target / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    link = target / main
    if not link.is_symlink():
        link.symlink_to(root / main, target_is_directory=True)
    return target
