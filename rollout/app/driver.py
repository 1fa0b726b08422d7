"""The rollout state machine: step the weight with `pulumi up`, analyse, promote or revert.

Every transition is journaled before it acts; every action is "set config, then up", which
is idempotent, so a driver killed anywhere resumes by redoing the action of its phase.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from rollout.adapters.processes import alive
from rollout.adapters.webhooks import WebhookCaller
from rollout.analysis.wording import metrics_line, verdict_word
from rollout.core.errors import (
    Aborted,
    InfrastructureError,
    InvalidInput,
    LockLost,
    RolloutError,
    StackError,
    StackLocked,
)
from rollout.core.policy import HookType, Policy
from rollout.core.ports import (
    AnalysisContext,
    AnalysisPort,
    Clock,
    Notifier,
    ReadbackPort,
    StackPort,
    StateStore,
)
from rollout.core.routers import WEIGHT_STEP_TYPES
from rollout.core.schedule import Step, build_schedule, promotion_weights
from rollout.core.stack_data import ConfigEntry, UpSummary
from rollout.core.stackconfig import Keys, captured, restored
from rollout.core.state import Outcome, Phase, RolloutState
from rollout.core.tally import Tally, add_check

Progress = Callable[[RolloutState, str], None]
LOCK_WAIT_SECONDS = 120.0
# Between tries of a locked stack: another service's update on it takes 2-3 s.
LOCK_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Target:
    """What the driver needs to know about the service, read from the stack's settings."""

    app: str
    namespace: str
    stable_version: str
    canary_replicas: int


class _Rollback(Exception):
    def __init__(self, reason: str, outcome: Outcome = Outcome.ROLLED_BACK) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome


def _this_driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Deadline:
    """Calls `expire` once `seconds` have passed inside the `with` block (None: never)."""

    def __init__(self, seconds: float | None, expire: Callable[[], object]) -> None:
        self.seconds, self._expire = seconds, expire
        self.expired = False
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self.expired = True
        self._expire()

    def __enter__(self) -> _Deadline:
        if self.seconds is not None:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _changes(summary: UpSummary) -> str:
    """Pulumi's change summary in words: "1 update, 6 same"."""
    counts = {op: n for op, n in sorted(summary.changes.items()) if n}
    return ", ".join(f"{n} {op}" for op, n in counts.items()) or "no changes"


class _PromoteNow(Exception):
    """A person asked to promote now, skipping the remaining steps."""


class _Stop(Exception):
    """A signal arrived and the rollout is to be left where it is."""


class Driver:
    def __init__(self, *, stack: StackPort, analysis: AnalysisPort, readback: ReadbackPort,
                 journal: StateStore, webhooks: WebhookCaller, notifiers: Sequence[Notifier],
                 clock: Clock,
                 policy: Policy, target: Target, keys: Keys, stack_name: str,
                 on_progress: Progress | None = None, leave_paused: bool = False,
                 targeted_steps: bool = True) -> None:
        self.stack, self.analysis, self.readback = stack, analysis, readback
        self.journal, self.webhooks, self.clock = journal, webhooks, clock
        self.notifiers = list(notifiers)
        self.policy, self.target, self.keys, self.stack_name = policy, target, keys, stack_name
        self.schedule: list[Step] = build_schedule(policy)
        self._progress = on_progress or (lambda state, msg: None)
        self.leave_paused = leave_paused
        self.targeted_steps = targeted_steps
        self._signal: int | None = None
        self._signals_seen = 0
        self._up_running = False
        self._up_cancelled = False
        self._reverting = False
        self._ignored: set[str] = set()
        self._orphaned_up = ""
        self._notes: list[dict[str, Any]] = []
        self._scope: dict[bool, list[str]] = {}

    # -- entry points -----------------------------------------------------------------

    def run(self, candidate: str) -> RolloutState:
        with self._locked(), self._signals():
            self._archive_missing()
            existing = self.journal.load()
            if existing is not None and not existing.phase.terminal:
                if existing.candidate != candidate:
                    raise InvalidInput(
                        f"the rollout of {existing.candidate} on stack {self.stack_name} is "
                        f"unfinished ({existing.phase}, step {existing.step + 1})",
                        hint="finish it with `rollout resume` or revert it with `rollout abort`",
                    )
                self._journaled_schedule(existing)
                self._reconcile(existing)
                self._adopt(existing)
                return self._drive(existing.with_event("resumed by run"))
            if not self.policy.skip_analysis and candidate != self.target.stable_version:
                # A query Prometheus cannot parse is a config error: found before any change.
                self.analysis.validate(self._context(RolloutState(
                    stack=self.stack_name, candidate=candidate,
                    stable=self.target.stable_version, last_good={})))
            state = self._begin(candidate)
            return state if state.phase.terminal else self._drive(state)

    def resume(self) -> RolloutState:
        with self._locked(), self._signals():
            self._archive_missing()
            state = self._unfinished()
            self._journaled_schedule(state)
            self._reconcile(state)
            self._adopt(state)
            return self._drive(state.with_event("resumed"))

    def abort(self, reason: str = "aborted by a person") -> RolloutState:
        """Reverts an unfinished rollout whose driver is not running."""
        with self._locked():
            self._archive_missing()
            state = self._unfinished()
            self._journaled_schedule(state)
            self._adopt(state)
            if state.phase is Phase.ROLLING_BACK:
                # Finishing a revert that was already under way: its cause stays the outcome.
                return self._drive(state.with_event(f"revert continued: {reason}"))
            state = self._enter(state, Phase.ROLLING_BACK, reason, reason=reason,
                                outcome=Outcome.ABORTED)
            return self._drive(state)

    def _adopt(self, state: RolloutState) -> None:
        """Notes the update a killed driver left in flight (see `_orphaned_lock`)."""
        if state.up_in_flight and state.up_in_flight != _this_driver():
            self._orphaned_up = state.up_in_flight

    def _archive_missing(self) -> None:
        """A finished journal that never reached history (a crash between the two) is
        recorded there now; `archive` adds each rollout once."""
        found = self.journal.load()
        if found is not None and found.phase.terminal and self.journal.archive(found):
            self._progress(found, f"recorded the finished rollout {found.rollout_id} of "
                                  f"{found.candidate} ({found.outcome}) in history: a crash had "
                                  "left it out")

    def _journaled_schedule(self, state: RolloutState) -> None:
        """A resumed rollout walks the steps it began with, whatever the policy says today."""
        if not state.schedule:
            return  # journaled before the schedule was
        journaled = [Step(**step) for step in state.schedule]
        if journaled != self.schedule:
            self._progress(state, "the policy's steps changed since this rollout began; it "
                                  "continues with the steps it began with: "
                                  + ", ".join(f"{s.weight}%" for s in journaled))
        self.schedule = journaled

    def _reconcile(self, state: RolloutState) -> None:
        """Refuse to resume when the stack's config says something the journal cannot explain.

        Each key the driver owns may hold the journal's desired value, or its value before the
        rollout (a fresh checkout of the stack file); the next step applies the journal's
        whole desired state either way. Anything else is a person's change, so stop.
        """
        entries = self.stack.config()
        before = restored(state.last_good)
        promoted = state.phase in (Phase.PROMOTING, Phase.FINALISING)
        allowed = {
            **{key: {value} for key, value in self._desired(state).items()},
            self.keys.canary_weight: {str(w) for w in range(101)}
            if promoted else {str(state.weight)},
            self.keys.stable_version: {state.stable, state.candidate}
            if promoted else {state.stable},
        }
        if promoted:  # the last promotion step scales the canary down
            allowed[self.keys.canary_replicas] |= {"0"}
        if state.phase in (Phase.INITIALIZING, Phase.ROLLING_BACK):
            return  # both apply a whole config of their own next
        off = []
        for key, values in allowed.items():
            entry = entries.get(key)
            now = entry.value if entry is not None else None
            was = before[key].value if key in before else None
            if now in values or now == was:
                continue
            off.append(f"{key} is {now!r} (the journal expects "
                       f"{' or '.join(sorted(repr(v) for v in values)[:3])})")
        if off:
            raise InvalidInput(
                f"the stack's config disagrees with the unfinished rollout of {state.candidate}: "
                + "; ".join(off),
                hint="put those keys back as the journal has them (or as committed) and resume, "
                     "or revert with `rollout abort`",
            )

    def _unfinished(self) -> RolloutState:
        state = self.journal.load()
        if state is None or state.phase.terminal:
            raise InvalidInput(f"no unfinished rollout on stack {self.stack_name}",
                               hint="start one with `rollout run`")
        return state

    # -- the loop ---------------------------------------------------------------------

    def _begin(self, candidate: str) -> RolloutState:
        entries = self.stack.config()
        state = RolloutState(stack=self.stack_name, candidate=candidate,
                             stable=self.target.stable_version, last_good=captured(entries),
                             canary_replicas=self.target.canary_replicas,
                             schedule=[asdict(step) for step in self.schedule],
                             total_steps=len(self.schedule),
                             interval_seconds=self.policy.interval_seconds,
                             threshold=self.policy.threshold)
        if candidate == self.target.stable_version:
            state = state.moved(phase=Phase.SUCCEEDED, outcome=Outcome.NOTHING_TO_DO,
                                reason=f"{candidate} is already the stable version")
            self._progress(state, state.reason)
            return state
        self._require_idle(entries)
        return self._enter(state, Phase.INITIALIZING,
                           f"rollout of {candidate} started (stable {state.stable})")

    def _require_idle(self, entries: dict[str, ConfigEntry]) -> None:
        """The config captured now is what a revert brings back, so the stack must be at
        rest: no canary traffic or pods in its config, and none live (a hand step left
        half-way would otherwise become the "last good" state)."""
        off = []
        for key in (self.keys.canary_weight, self.keys.canary_replicas):
            value = entries[key].value if key in entries else ""
            if value.strip() not in ("", "0"):
                off.append(f"{key} is {value!r}, not 0")
        live = self.readback.live()
        weights = (live.primary_weight, live.canary_weight)
        if weights not in ((100, 0), (None, None)):
            off.append(f"the live weights are {weights[0]}/{weights[1]} (primary/canary), "
                       "not 100/0")
        if live.canary_replicas:
            off.append(f"the live canary Deployment has {live.canary_replicas} replicas, not 0")
        if off:
            raise InvalidInput(
                f"stack {self.stack_name} is not idle, so its config cannot be taken as the "
                "last good state: " + "; ".join(off),
                hint="set canaryWeight and canaryReplicas to 0 (or remove them) and run "
                     "`pulumi up`, or finish the rollout that left them so",
            )

    def _drive(self, state: RolloutState) -> RolloutState:
        handlers: dict[Phase, Callable[[RolloutState], RolloutState]] = {
            Phase.INITIALIZING: self._initialize,
            Phase.PROGRESSING: self._advance,
            Phase.WAITING: self._advance,
            Phase.WAITING_PROMOTION: self._await_promotion,
            Phase.PROMOTING: self._promote,
            Phase.FINALISING: self._finalise,
            Phase.ROLLING_BACK: self._roll_back,
        }
        while not state.phase.terminal:
            try:
                state = handlers[state.phase](state)
            except LockLost:
                raise  # another driver holds the stack now: write nothing, revert nothing
            except (_Rollback, _PromoteNow, _Stop, RolloutError) as interruption:
                # The handler journaled its progress before it was interrupted.
                state = self._interrupted(self.journal.load() or state, interruption)
        self.journal.archive(state)
        return state

    def _interrupted(self, state: RolloutState, interruption: Exception) -> RolloutState:
        if isinstance(interruption, _Rollback):
            return self._enter(state, Phase.ROLLING_BACK, interruption.reason,
                               reason=interruption.reason, outcome=interruption.outcome)
        if isinstance(interruption, _PromoteNow):
            # Skips the remaining steps, never the confirm-promotion gate.
            return self._enter(state, Phase.WAITING_PROMOTION, "promote now, asked by a person",
                               reason="promoted by a person before the last step",
                               wait_deadline=0.0)
        if isinstance(interruption, _Stop):
            self._save(state.with_event("left paused by signal"))
            raise Aborted(f"stopped by signal; rollout left at {state.phase}",
                          hint="continue with `rollout resume` or revert with `rollout abort`")
        assert isinstance(interruption, RolloutError)
        if state.phase in (Phase.ROLLING_BACK, Phase.PROMOTING, Phase.FINALISING):
            self._save(state.with_event(f"failed: {interruption.message}"))
            raise interruption
        if isinstance(interruption, InfrastructureError):
            # Pulumi, the cluster or Prometheus failed: revert, but this says nothing about
            # the version, so it must never read as a rollback verdict.
            reason = f"infrastructure failure: {interruption.message}"
            return self._enter(state, Phase.ROLLING_BACK, reason, reason=reason,
                               outcome=Outcome.INFRASTRUCTURE_FAILED)
        return self._enter(state, Phase.ROLLING_BACK, interruption.message,
                           reason=interruption.message, outcome=Outcome.ROLLED_BACK)

    # -- phases -----------------------------------------------------------------------

    def _initialize(self, state: RolloutState) -> RolloutState:
        state = self._gate(state, "confirm-rollout")
        ok, results = self.webhooks.all_pass("pre-rollout", self._payload(state))
        if not ok:
            failed = sum(not r.ok for r in results)
            state = self._save(state.moved(failed_checks=state.failed_checks + failed)
                               .with_event("; ".join(r.message for r in results if not r.ok)))
            if state.failed_checks >= self.policy.threshold:
                raise _Rollback("pre-rollout hook failed: "
                                + "; ".join(r.message for r in results if not r.ok))
        self.stack.set_config(self._desired(state.moved(weight=0)))
        self._up(state, f"canary {state.candidate} scaled to {self._replicas(state)}",
                 awaits_pods=True)
        return self._enter(state, Phase.PROGRESSING, f"canary {state.candidate} is ready",
                           step=0, weight=0, step_applied=False)

    def _advance(self, state: RolloutState) -> RolloutState:
        step = self.schedule[state.step]
        if not state.step_applied:
            state = self._apply_step(state, step)
        if state.phase is Phase.WAITING:
            return self._next_step(self._pause(state, step))
        self._wait(state, self.policy.interval_seconds)
        state = self._analyse(state)
        if state.failed_checks >= self.policy.threshold:
            raise _Rollback(self._failure_reason(state))
        last = state.analyses[-1] if state.analyses else {"passed": True}
        if last["passed"] is not True:
            return state
        if step.pause_seconds is not None:
            state = self._enter(state, Phase.WAITING, self._pause_message(step))
            return self._next_step(self._pause(state, step))
        return self._next_step(state)

    def _apply_step(self, state: RolloutState, step: Step) -> RolloutState:
        if step.weight > state.weight:
            state = self._gate(state, "confirm-traffic-increase")
        started = time.monotonic()
        state = self._save(state.moved(weight=step.weight))
        self._canary_before_traffic(state)
        self.stack.set_config(self._desired(state))
        self._up(state, f"weight {step.weight}%", weight_only=True)
        self._check_live_weight(step.weight)
        # The whole step as a user pays it: journal, config, targeted update, readback.
        seconds = time.monotonic() - started
        return self._save(state.moved(step_applied=True,
                                      step_seconds=[*state.step_seconds, seconds])
                          .with_event(f"canary weight set to {step.weight}%",
                                      seconds=round(seconds, 2)))

    def _check_live_weight(self, weight: int) -> None:
        """The analysis that follows judges the traffic the route really carries: a route
        that does not read back at the step's weight (edited by someone else, or never
        applied) is a failed step, not a step to judge."""
        live = self.readback.live()
        if (live.primary_weight, live.canary_weight) != (100 - weight, weight):
            raise _Rollback(f"after the step to {weight}% the live route carries "
                            f"{live.primary_weight}/{live.canary_weight} (primary/canary), not "
                            f"{100 - weight}/{weight}: something else changed it")

    def _next_step(self, state: RolloutState) -> RolloutState:
        if state.step + 1 >= len(self.schedule):
            return self._enter(state, Phase.WAITING_PROMOTION, "all steps passed",
                               step_applied=True, wait_deadline=0.0)
        return self._enter(state, Phase.PROGRESSING, f"step {state.step + 2}",
                           step=state.step + 1, step_applied=False, wait_deadline=0.0)

    def _deadline(self, state: RolloutState, seconds: float) -> tuple[RolloutState, float]:
        """The end of the current wait: journaled when it starts, so a resume keeps it."""
        if state.wait_deadline:
            return state, state.wait_deadline
        deadline = self.clock.now() + seconds
        return self._save(state.moved(wait_deadline=deadline)), deadline

    def _analyse(self, state: RolloutState) -> RolloutState:
        if self._rollback_requested(state):
            raise _Rollback("a rollback hook asked for a rollback")
        ok, results = self.webhooks.all_pass("rollout", self._payload(state))
        hook_failures = [r.message for r in results if not r.ok]
        if self.policy.skip_analysis:
            verdict = {"passed": not hook_failures, "failed_checks": len(hook_failures),
                       "reason": "analysis skipped" if ok else "; ".join(hook_failures),
                       "metrics": []}
            judge_state = state.judge_state
        else:
            result = self.analysis.analyze(self._context(state), state.judge_state)
            verdict = result.to_dict()
            judge_state = result.judge_state
            if hook_failures:
                verdict = {**verdict, "passed": False,
                           "failed_checks": verdict["failed_checks"] + len(hook_failures),
                           "reason": "; ".join([verdict["reason"], *hook_failures])}
        verdict.update(step=state.step, weight=state.weight, at=self.clock.now())
        tally = add_check(Tally(state.failed_checks, state.inconclusive),
                          passed=verdict["passed"], failed_checks=int(verdict["failed_checks"]),
                          final=bool(verdict.get("final")), threshold=self.policy.threshold,
                          max_inconclusive=self.policy.max_inconclusive)
        if tally.note:
            verdict["reason"] += f" ({tally.note})"
        state = self._save(state.moved(analyses=[*state.analyses, verdict],
                                       failed_checks=tally.failed,
                                       inconclusive=tally.inconclusive,
                                       judge_state=judge_state)
                           .with_event(f"analysis: {verdict['reason']}",
                                       passed=verdict["passed"]))
        word = verdict_word(verdict["passed"])
        self._progress(state, f"analysis {word}: "
                       + (metrics_line(verdict["metrics"]) or verdict["reason"]))
        return state

    def _pause(self, state: RolloutState, step: Step) -> RolloutState:
        state, deadline = self._deadline(state, step.pause_seconds
                                         or self.policy.pause_timeout_seconds)
        if step.pause_seconds:
            self._wait(state, deadline - self.clock.now())
            return state
        while True:
            approvals = self._pending(state, ("approve",))
            if approvals:
                state = self._handled(state, approvals[0])
                return self._save(state.with_event("approved"))
            if self.clock.now() >= deadline:
                raise _Rollback(f"nobody approved the pause at {step.weight}% within "
                                f"pauseTimeout {self.policy.pause_timeout}", Outcome.ABORTED)
            self._wait(state, min(self.policy.interval_seconds, 1.0))

    def _await_promotion(self, state: RolloutState) -> RolloutState:
        state = self._gate(state, "confirm-promotion")
        return self._enter(state, Phase.PROMOTING, f"promoting {state.candidate}")

    def _promote(self, state: RolloutState) -> RolloutState:
        self.stack.set_config({**self._desired(state), self.keys.stable_version: state.candidate})
        self._up(state, f"primary to {state.candidate}")
        return self._enter(state, Phase.FINALISING, "primary runs the new version")

    def _finalise(self, state: RolloutState) -> RolloutState:
        for weight in promotion_weights(self.policy, state.weight):
            self.stack.set_config({**self._desired(state.moved(weight=weight)),
                                   self.keys.stable_version: state.candidate})
            self._up(state, f"traffic back to primary (canary {weight}%)")
            state = self._save(state.moved(weight=weight))
        # Only once no traffic goes to it: one up that did both could scale the canary down
        # before the route changed, since Pulumi orders unrelated resources as it likes.
        # The canary's keys go back as they were before the rollout (idle: no pods, no
        # traffic), so the stack file's only change is the `stableVersion` line.
        before = restored(state.last_good)
        self.stack.restore_config({key: before.get(key) for key in self.keys.owned
                                   if key != self.keys.stable_version})
        self._up(state, "canary scaled to 0")
        state = self._enter(state, Phase.SUCCEEDED, f"{state.candidate} promoted",
                            outcome=Outcome.PROMOTED,
                            reason=state.reason or f"{state.candidate} passed every step")
        self._finished(state, ok=True)
        return state

    def _roll_back(self, state: RolloutState) -> RolloutState:
        self._reverting = True
        if state.weight:
            # Traffic first, pods after: one up doing both could remove the canary's pods
            # while the route still sends it traffic. The journal's weight decides, never the
            # stack file's: a fresh checkout says 0 while the live route may still say 20.
            # The whole desired canary config goes in, so that this up keeps the pods.
            self.stack.set_config(self._desired(state.moved(weight=0)))
            self._up(state, "all traffic back to the primary", weight_only=True)
        self._restore_owned_keys(state)
        self._up(state, "restore the last good config")
        problems = self._revert_problems(state)
        if problems:
            # Someone changed the live objects behind Pulumi's back: refresh so that Pulumi
            # sees the drift, and put them right once more.
            self._progress(state, "the cluster differs from the restored config ("
                           + "; ".join(problems) + "): refreshing and applying again")
            self.stack.refresh()
            self._up(state, "restore the last good config after a refresh")
            problems = self._revert_problems(state)
        if problems:
            raise InfrastructureError("revert did not restore the cluster: " + "; ".join(problems),
                                      hint="inspect the stack, then run `rollout abort` again")
        outcome = state.outcome or Outcome.ROLLED_BACK
        state = self._enter(state, Phase.FAILED, f"reverted to {state.stable}: {state.reason}",
                            outcome=outcome, weight=0)
        self.webhooks.call_all("post-rollout", self._payload(state))
        self._finished(state, ok=False)
        return state

    def _restore_owned_keys(self, state: RolloutState) -> None:
        """Puts the driver's own keys back exactly as captured. Other keys people changed
        during the rollout are theirs: kept, and said so (names only: values may be secret)."""
        before = restored(state.last_good)
        now = self.stack.config()
        self.stack.restore_config({key: before.get(key) for key in self.keys.owned})
        edited = sorted(
            key for key in set(before) | set(now)
            if key not in self.keys.owned
            and not any(entry.secret for entry in (before.get(key), now.get(key)) if entry)
            and before.get(key) != now.get(key))
        if edited:
            message = ("kept config changed during the rollout (not the driver's to revert): "
                       + ", ".join(edited))
            self._note(state, message, kept=edited)
            self._progress(state, message)

    def _revert_problems(self, state: RolloutState) -> list[str]:
        live = self.readback.live()
        problems = []
        if (live.primary_weight, live.canary_weight) != (100, 0):
            # Unknown weights are not a revert that worked: say what was found.
            problems.append(f"live weights are {live.primary_weight}/{live.canary_weight} "
                            "(primary/canary)")
        if live.primary_version not in (None, state.stable):
            problems.append(f"primary runs {live.primary_version}, not {state.stable}")
        return problems

    # -- helpers ----------------------------------------------------------------------

    def _up(self, state: RolloutState, what: str, *, weight_only: bool = False,
            awaits_pods: bool = False) -> float:
        self._interrupts(state)
        targets = self._targets(weight_only=weight_only) if self.targeted_steps else None
        self._progress(state, f"pulumi up: {what}")
        # Recorded so that a driver resuming after this one was killed knows whose lock it is.
        self.journal.save((self.journal.load() or state).moved(up_in_flight=_this_driver()))
        waited = 0.0
        retried = False
        while True:
            started = time.monotonic()
            try:
                with self._running_up(awaits_pods) as ready_deadline:
                    summary = self.stack.up(targets=targets,
                                            message=f"rollout {state.rollout_id}: {what}")
            except StackError as failed:
                if ready_deadline.expired:
                    raise _Rollback(f"the canary's pods were not ready within readyTimeout "
                                    f"{self.policy.ready_timeout}; the update was cancelled"
                                    ) from failed
                if self._up_cancelled:
                    # Cancelled by a second signal: the first one decides what happens next.
                    self._up_cancelled = False
                    self._progress(state, f"pulumi up cancelled: {failed.message}")
                    self._interrupts(state)
                if isinstance(failed, StackLocked):
                    # A killed driver's update may still be finishing, or left a stale lock.
                    if self.stack.clear_stale_lock():
                        self._progress(state, "cleared a stale Pulumi lock left by a dead process")
                        continue
                    if waited >= LOCK_WAIT_SECONDS:
                        if self._orphaned_lock(state):
                            continue
                        raise
                    self.clock.sleep(LOCK_POLL_SECONDS)
                    waited += LOCK_POLL_SECONDS
                    continue
                # Only an update that started no step is safe to repeat as it is.
                if failed.changed or retried:
                    raise
                retried = True
                self._progress(state, f"pulumi up failed before changing anything; retrying "
                                      f"once: {failed.message}")
                continue
            seconds = time.monotonic() - started
            changes = _changes(summary)
            self.journal.save((self.journal.load() or state).moved(up_in_flight=""))
            self._note(state, f"pulumi up: {what}: {changes}", changes=summary.changes,
                       seconds=round(seconds, 2))
            self._progress(state, f"pulumi up done in {seconds:.1f}s: {changes}")
            return seconds

    def _targets(self, *, weight_only: bool) -> list[str] | None:
        """Only this service's resources: other services and resources of the stack are never
        part of its rollout, whatever their config says meanwhile. Read from the state once
        per rollout (a rollout changes no resource's URN); None when it is not deployed."""
        if not self._scope:
            # Both sets from one read of the state, before the first up changes it.
            scope = {weight_step: self.stack.service_targets(
                         self.keys.service, types=WEIGHT_STEP_TYPES if weight_step else None)
                     for weight_step in (False, True)}
            if not scope[False]:
                return None  # not deployed yet: a whole up, and another look next time
            self._scope = scope
        return self._scope[weight_only] or None

    @contextmanager
    def _running_up(self, awaits_pods: bool) -> Iterator[_Deadline]:
        """Marks an `up` as running (a second signal cancels it), and cancels one that waits
        for the canary's pods longer than readyTimeout."""
        deadline = _Deadline(self.policy.ready_timeout_seconds if awaits_pods else None,
                             self.stack.interrupt)
        self._up_running = True
        try:
            with deadline:
                yield deadline
        finally:
            self._up_running = False

    def _orphaned_lock(self, state: RolloutState) -> bool:
        """Cancels a lock that outlived the wait when the journal shows it is this rollout's
        own update, started by a driver that is dead on this host: evidence, not a guess,
        and the same on every backend. Anything else is left alone."""
        owner, self._orphaned_up = self._orphaned_up, ""
        if not owner:
            return False
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or alive(int(pid)):
            return False
        self.stack.cancel()
        self._progress(state, f"cancelled the Pulumi update of driver {owner}, killed during "
                              "it: its lock outlived the wait")
        return True

    def _canary_before_traffic(self, state: RolloutState) -> None:
        """Brings the canary's version and pods back first when the stack's config lacks them
        (a resume from a fresh checkout): the route must never lead to a canary with no pods,
        and the up that scales it waits for its pods to be ready."""
        desired = self._desired(state)
        keys = [self.keys.canary_version, self.keys.canary_replicas]
        values = self.stack.plain_values(keys)
        pods = {key: desired[key] for key in keys if values.get(key) != desired[key]}
        if pods:
            self.stack.set_config(pods)
            self._up(state, f"canary {state.candidate} back to {self._replicas(state)} pods "
                            "before it takes traffic", awaits_pods=True)

    def _replicas(self, state: RolloutState) -> int:
        return state.canary_replicas or self.target.canary_replicas

    def _desired(self, state: RolloutState) -> dict[str, str]:
        """The whole canary config the journal asks for at `state.weight`, applied before every
        step's `up`, so a resume from any checkout reaches the same cluster state."""
        return {
            self.keys.canary_version: state.candidate,
            self.keys.canary_replicas: str(self._replicas(state)),
            self.keys.canary_weight: str(state.weight),
        }

    def _gate(self, state: RolloutState, hook_type: HookType) -> RolloutState:
        deadline = 0.0
        while True:
            ok, results = self.webhooks.all_pass(hook_type, self._payload(state))
            if ok:
                return self._save(state.moved(wait_deadline=0.0)) if deadline else state
            if not deadline:
                state, deadline = self._deadline(state, self.policy.gate_timeout_seconds)
            self._progress(state, "; ".join(r.message for r in results if not r.ok))
            if self.clock.now() >= deadline:
                raise _Rollback(f"the {hook_type} gate did not pass within gateTimeout "
                                f"{self.policy.gate_timeout}", Outcome.ABORTED)
            self._wait(state, self.policy.interval_seconds)

    def _rollback_requested(self, state: RolloutState) -> bool:
        results = self.webhooks.call_all("rollback", self._payload(state))
        return any(r.ok for r in results)

    def _wait(self, state: RolloutState, seconds: float) -> None:
        deadline = self.clock.now() + seconds
        while True:
            self._interrupts(state)
            left = deadline - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(left, 0.5))

    def _interrupts(self, state: RolloutState) -> None:
        # Before every action: a driver whose lock was taken over (or not renewed in time)
        # stops here, even in the middle of a revert, which the new holder finishes.
        self.journal.check_held()
        if state.phase is Phase.ROLLING_BACK:
            return  # a revert always runs to its end; requests wait for the next rollout
        if self._signal is not None:
            signum, self._signal = self._signal, None
            if self.leave_paused:
                raise _Stop()
            raise _Rollback(f"stopped by signal {signal.Signals(signum).name}", Outcome.ABORTED)
        for request in self._pending(state, ("abort", "promote")):
            state = self._handled(state, request)
            if request["action"] == "abort":
                raise _Rollback(request.get("reason") or f"aborted by {request['by']}",
                                Outcome.ABORTED)
            if state.phase in (Phase.PROGRESSING, Phase.WAITING, Phase.WAITING_PROMOTION):
                raise _PromoteNow()
            self._progress(state, f"ignored the promote request from {request['by']}: "
                                  f"the rollout is {state.phase}")

    def _pending(self, state: RolloutState, actions: tuple[str, ...]) -> list[dict[str, Any]]:
        """This rollout's requests not handled yet; others' are ignored, and said so once."""
        found = []
        for request in self.journal.requests():
            if request["id"] in state.handled_requests or request["id"] in self._ignored:
                continue
            if request["rollout_id"] != state.rollout_id:
                self._ignored.add(request["id"])
                if not state.phase.terminal and request["at"] >= state.started_at - 3600:
                    self._progress(state, f"ignored a stale {request['action']} request from "
                                          f"{request['by']}: it was for rollout "
                                          f"{request['rollout_id']}, not {state.rollout_id}")
                continue
            if request["action"] in actions:
                found.append(request)
        return found

    def _handled(self, state: RolloutState, request: dict[str, Any]) -> RolloutState:
        fresh = self.journal.load() or state
        return self._save(fresh.moved(
            handled_requests=[*fresh.handled_requests, request["id"]]).with_event(
            f"{request['action']} requested by {request['by']}"
            + (f": {request['reason']}" if request.get("reason") else "")))

    def _enter(self, state: RolloutState, phase: Phase, message: str, **changes: Any
               ) -> RolloutState:
        state = self._save(state.moved(phase=phase, **changes).with_event(message))
        if phase.terminal:
            # History first: the release gates read it, and hooks and notifications can take
            # long enough for a crash to come between.
            self.journal.archive(state)
        self._progress(state, message)
        self.webhooks.call_all("event", self._payload(state))
        return state

    def _save(self, state: RolloutState) -> RolloutState:
        if self._notes:
            # In the order things happened: a note is older than the event saved with it.
            events = sorted([*state.events, *self._notes], key=lambda event: event["at"])
            state = state.moved(events=events)
            self._notes = []
        self.journal.save(state)
        return state

    def _note(self, state: RolloutState, message: str, **data: Any) -> None:
        """An event for the journal that goes in with the next save of the rollout's state."""
        self._notes.append(state.with_event(message, **data).events[-1])

    def _context(self, state: RolloutState) -> AnalysisContext:
        return AnalysisContext(
            app=self.target.app, namespace=self.target.namespace,
            canary_workload=f"{self.target.app}-canary",
            primary_workload=f"{self.target.app}-primary",
            weight=state.weight, step=state.step,
            interval_seconds=self.policy.interval_seconds, canary_share=state.weight / 100,
        )

    def _payload(self, state: RolloutState) -> dict[str, Any]:
        return {"name": self.target.app, "namespace": self.target.namespace,
                "phase": str(state.phase), "stack": self.stack_name,
                "candidate": state.candidate, "stable": state.stable, "weight": state.weight}

    def _failure_reason(self, state: RolloutState) -> str:
        failing = [a["reason"] for a in state.analyses if a["passed"] is not True][-1:]
        return (f"{state.failed_checks} failed checks reached the threshold "
                f"{self.policy.threshold}: " + "; ".join(failing))

    def _pause_message(self, step: Step) -> str:
        if step.pause_seconds:
            return f"paused at {step.weight}% for {step.pause_seconds:g}s"
        return f"paused at {step.weight}% until `rollout approve`"

    def _finished(self, state: RolloutState, *, ok: bool) -> None:
        if ok:
            self.webhooks.call_all("post-rollout", self._payload(state))
        for notifier in self.notifiers:
            try:
                notifier.post(
                    title=f"{self.target.app} on {self.stack_name}: {state.outcome}",
                    text=state.reason, ok=ok,
                    fields={"candidate": state.candidate, "stable": state.stable,
                            "failed checks": state.failed_checks},
                )
            except Exception as err:  # one broken notifier never stops the others
                # The type only: a message may carry the notifier's URL.
                self._progress(state, f"notifier {type(notifier).__name__} failed: "
                                      f"{type(err).__name__}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.journal.acquire()
        try:
            yield
        finally:
            self.journal.release()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            self._signal = signum
            self._signals_seen += 1
            name = signal.Signals(signum).name
            then = "stays paused" if self.leave_paused else "is reverted"
            if self._reverting:
                note = f"{name}: the revert runs to its end"
            elif self._signals_seen == 1:
                note = (f"{name}: the current step finishes, then the rollout {then}; "
                        "send it again to cancel a running `pulumi up`")
            elif self._up_running and self.stack.interrupt():
                self._up_cancelled = True
                note = f"{name} again: cancelling the running `pulumi up`"
            else:
                note = f"{name} again: the rollout {then} now"
            # Plain text: the handler may run in the middle of the progress display's write.
            with contextlib.suppress(OSError):  # stderr may be a pipe nobody reads now
                os.write(2, f"\n{note}\n".encode())

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
