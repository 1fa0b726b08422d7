"""`rollout init`: adds one canary service's config to a stack file of an existing project."""

from __future__ import annotations

from pathlib import Path

from rollout.adapters.paths import project_root
from rollout.adapters.stack import settings_path, stack_file_values
from rollout.adapters.stackfile import StackFile
from rollout.core.errors import InvalidInput
from rollout.core.scaffold import service_block
from rollout.core.stackconfig import services_in, validate_stack_name


def init_service(stack: str, service: str, *, version: str, image: str | None = None,
                 router: str | None = None, namespace: str | None = None,
                 project_dir: Path | None = None) -> tuple[Path, list[str]]:
    """Writes the service's block into the stack's settings file (created if need be) and
    returns the file and the lines written; a service already there is refused."""
    validate_stack_name(stack)
    path = settings_path(project_dir or project_root(), stack)
    lines, data = service_block(service, version=version, image=image, router=router,
                                namespace=namespace)
    if service in services_in(stack_file_values(path)):
        raise InvalidInput(f"stack {stack} already declares service {service} "
                           f"({service}:stableVersion is set in {path})",
                           hint="edit its keys in that file, or pick another --service")
    path.parent.mkdir(parents=True, exist_ok=True)
    StackFile(path).add_block(lines, data)
    return path, lines
