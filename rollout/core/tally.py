"""The failed-check rule, written once: how analysis runs add up to a rollback.

Failed checks add up and a pass never resets them (as in Flagger). Conclusive evidence (the
sequential test) rolls back at once. An inconclusive run holds the step; more than
`max_inconclusive` of them in a row count as failed checks, so a canary nobody can see is
never promoted by waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    failed: int = 0
    inconclusive: int = 0  # in a row
    note: str = ""

    def rolls_back(self, threshold: int) -> bool:
        return self.failed >= threshold


def add_check(
    before: Tally, *, passed: bool | None, failed_checks: int, final: bool, threshold: int,
    max_inconclusive: int,
) -> Tally:
    """The tally after one analysis run: PASS (True), FAIL (False) or INCONCLUSIVE (None)."""
    failed = before.failed + failed_checks
    note = ""
    if final and passed is False:
        failed = max(failed, threshold)
        note = "the evidence of a regression is conclusive"
    if passed is None:
        inconclusive = before.inconclusive + 1
        if inconclusive > max_inconclusive:
            failed += 1
            note = (
                f"inconclusive {inconclusive} times in a row, more than maxInconclusive "
                f"{max_inconclusive}: counted as a failed check"
            )
    else:
        inconclusive = 0
    return Tally(failed=failed, inconclusive=inconclusive, note=note)
