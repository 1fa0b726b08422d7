"""Runs the StateStore contract against the file store (`Journal`), each test in its own dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.adapters.journal import Journal
from rollout.core.ports import StateStore
from tests.contract.state_store import STACK, StateStoreContract


class FileStores:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, stack: str = STACK) -> StateStore:
        return Journal(self.directory, stack)

    def steal(self, holder: StateStore, thief: StateStore) -> None:
        assert isinstance(holder, Journal)
        holder.lock_path.unlink()  # removed by hand, or by a clean-up job
        thief.acquire()


class TestFileStateStore(StateStoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> FileStores:
        return FileStores(tmp_path / "journal")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"v2": "yes"}',
                                  '{"v2": {"by": "x", "at": "yesterday"}}'])
def test_a_hand_edited_approvals_file_the_gate_cannot_read_approves_nothing(
        tmp_path: Path, text: str) -> None:
    store = Journal(tmp_path, STACK)
    store.approvals_path.write_text(text)
    assert store.release_approvals() == []
    store.approve_release("v3", by="ana")  # and a new approval still records
    assert [a["version"] for a in store.release_approvals()] == ["v3"]
