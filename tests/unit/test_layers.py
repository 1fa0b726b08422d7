"""Covers the layering rule: only the stack adapter imports pulumi.automation."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# The stack adapter, and the CLI runner it hands the Automation API.
STACK_ADAPTER = {"rollout/adapters/stack.py", "rollout/adapters/pulumi_command.py"}


def test_only_the_stack_adapter_touches_the_automation_api() -> None:
    offenders = []
    for path in sorted((ROOT / "rollout").rglob("*.py")):
        if str(path.relative_to(ROOT)) in STACK_ADAPTER:
            continue
        if any(name.startswith("pulumi.automation") for name in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_driver_never_imports_the_pulumi_program_runtime() -> None:
    offenders = []
    for path in sorted((ROOT / "rollout").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        # The component package is the program's own library; the driver runs it via the CLI.
        if rel in STACK_ADAPTER or rel.startswith("rollout/pulumi/"):
            continue
        if any(n == "pulumi" or n.startswith("pulumi_kubernetes") for n in _imports(path)):
            offenders.append(rel)
    assert offenders == []
