"""Shared fixtures: the lab is started once per session for tests marked `lab`."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from rollout.lab.lab import Lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab; started here (and stopped at the end) unless it was already up."""
    lab = Lab()
    started_here = not lab.is_up()
    lab.up(progress=lambda msg: print(f"lab: {msg}"))
    saved = {key: os.environ.get(key) for key in lab.environment()}
    os.environ.update(lab.environment())
    try:
        yield lab
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if started_here and not os.environ.get("CANARY_KEEP_LAB"):
            lab.down(progress=lambda msg: print(f"lab: {msg}"))


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_per_module() -> Iterator[None]:
    """Collects each module's garbage at its end, so that an abandoned coroutine (a Pulumi
    program left unfinished, say) fails the module that abandoned it (filterwarnings =
    error) rather than whichever later test the garbage collector happens to run in."""
    yield
    gc.collect()
