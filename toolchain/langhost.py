"""Serves the Pulumi LanguageRuntime for a Python project, from the Pulumi Python SDK.

The CLI starts a language plugin with its engine address as the last argument and reads the
plugin's gRPC port from its first line of output. Running the program is the SDK's own job
(the same server the Automation API uses for inline programs); this file only finds the
project's `main` (or the function CANARY_PROGRAM names) and puts the project on sys.path.
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
from concurrent import futures
from pathlib import Path

import grpc
import yaml
from pulumi.automation._server import LanguageServer
from pulumi.runtime.proto import language_pb2_grpc


def project_main(root: Path) -> Path:
    settings = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    main = root / settings.get("main", ".")
    return main / "__main__.py" if main.is_dir() else main


def project_root(start: Path) -> Path:
    """The CLI starts plugins in the program's folder; the project file may be above it."""
    for folder in [start, *start.parents]:
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise SystemExit(f"no Pulumi.yaml in {start} or above")


def program() -> None:
    """The project's `main` as `python <main>` runs it, or, when CANARY_PROGRAM names one
    (`module:function`, `rollout run --program`), that function of a module of the project."""
    root = project_root(Path(os.getcwd()))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    entry = os.environ.get("CANARY_PROGRAM")
    if entry:
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function or "main")()
        return
    runpy.run_path(str(project_main(root)), run_name="__main__")


def serve() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageServer(program), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The CLI ends its plugins with SIGINT/SIGTERM once the update is done.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    serve()
