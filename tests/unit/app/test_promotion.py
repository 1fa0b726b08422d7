"""Covers the release gates, their config and the pipeline view on plain data (no stacks)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from rollout.adapters.journal import Journal
from rollout.app.api import RolloutResult
from rollout.app.environments import ordered, predecessors, stack_files
from rollout.app.promotion import Release, approval_of, resolve_source
from rollout.core.errors import Aborted, GateNotMet, InvalidInput, SettingsError
from rollout.core.gates import (
    GATES,
    Environment,
    PromotionPolicy,
    blocked,
    evaluate,
    load_promotion,
    proven,
)
from rollout.core.service import load_settings
from rollout.core.state import Outcome, Phase, RolloutState

NOW = 1_700_000_000.0
IMAGE = "registry.local/demo"


def finished(candidate: str, outcome: Outcome, *, at: float, stable: str = "v1",
             reason: str = "") -> RolloutState:
    return RolloutState(stack="s", candidate=candidate, stable=stable, last_good={},
                        phase=Phase.SUCCEEDED if outcome is Outcome.PROMOTED else Phase.FAILED,
                        outcome=outcome, reason=reason, started_at=at - 60, updated_at=at)


def staging(**changes: Any) -> Environment:
    env = Environment(stack="staging", service="demo", image=IMAGE, stable_version="v2",
                      deployed_image=f"{IMAGE}:v2",
                      history=(finished("v2", Outcome.PROMOTED, at=NOW - 7200),))
    return replace(env, **changes)


def prod(**changes: Any) -> Environment:
    return replace(Environment(stack="prod", service="demo", image=IMAGE, stable_version="v1",
                               deployed_image=f"{IMAGE}:v1"), **changes)


def check(source: Environment | None = None, target: Environment | None = None,
          policy: PromotionPolicy | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    return evaluate(source or staging(), target or prod(), policy or PromotionPolicy(),
                    now=NOW, **kwargs)


def gate(result: Any, name: str) -> Any:
    return next(g for g in result.gates if g.name == name)


def test_a_proven_version_passes_every_gate() -> None:
    result = check(policy=PromotionPolicy(soak="1h"))
    assert result.ready and not result.up_to_date
    assert [g.name for g in result.gates] == list(GATES)
    assert result.version == "v2" and result.image == f"{IMAGE}:v2"
    assert "promoted on staging" in gate(result, "source-succeeded").detail


def test_the_proof_is_the_latest_promotion_of_the_current_stable_version() -> None:
    history = (finished("v2", Outcome.PROMOTED, at=NOW - 900),
               finished("v3", Outcome.ROLLED_BACK, at=NOW - 600, stable="v2"))
    assert proven(staging(history=history)) == history[0]
    assert proven(staging(history=history, stable_version="v3")) is None


def test_a_version_never_rolled_out_on_the_source_is_blocked() -> None:
    result = check(source=staging(stable_version="v1", deployed_image=f"{IMAGE}:v1"))
    assert not result.ready
    assert {g.name for g in result.unmet} == {"source-succeeded", "soak"}
    assert "no rollout of it succeeded" in gate(result, "source-succeeded").detail
    assert "rollout run -s staging" in gate(result, "source-succeeded").fix


def test_a_source_whose_last_rollout_failed_is_blocked() -> None:
    history = (finished("v3", Outcome.ROLLED_BACK, at=NOW - 60, stable="v2"),)
    result = check(source=staging(stable_version="v3", history=history))
    assert "ended rolled-back" in gate(result, "source-succeeded").detail


def test_a_source_not_running_its_declared_version_is_blocked() -> None:
    result = check(source=staging(deployed_image=f"{IMAGE}:v1"))
    assert gate(result, "source-succeeded").passed is False
    assert "runs registry.local/demo:v1" in gate(result, "source-succeeded").detail


def test_soak_blocks_until_the_version_has_been_live_long_enough() -> None:
    source = staging(history=(finished("v2", Outcome.PROMOTED, at=NOW - 600),))
    result = check(source=source, policy=PromotionPolicy(soak="1h"))
    assert [g.name for g in result.unmet] == ["soak"]
    soak = gate(result, "soak")
    assert "for 10m" in soak.detail and "wait 50m" in soak.fix
    assert check(source=source, policy=PromotionPolicy(soak="10m")).ready


def test_a_different_image_repository_is_blocked() -> None:
    result = check(target=prod(image="registry.other/demo"))
    assert [g.name for g in result.unmet] == ["same-image"]
    assert "demo:image on prod to registry.local/demo" in gate(
        result, "same-image").fix


def test_approval_is_needed_only_when_required() -> None:
    policy = PromotionPolicy(requireApproval=True)
    result = check(policy=policy)
    assert [g.name for g in result.unmet] == ["approval"]
    assert "rollout approve-release --to prod --version v2" in gate(result, "approval").fix
    assert check(policy=policy, approval="--approve given").ready
    assert gate(check(), "approval").detail == "not required"


def test_a_version_the_target_rolled_back_is_refused_unless_forced() -> None:
    target = prod(history=(finished("v2", Outcome.ROLLED_BACK, at=NOW - 60,
                                    reason="request-success-rate below 99"),))
    result = check(target=target)
    assert [g.name for g in result.unmet] == ["not-rolled-back-before"]
    assert "request-success-rate below 99" in gate(result, "not-rolled-back-before").detail
    assert "--force" in gate(result, "not-rolled-back-before").fix
    assert check(target=target, force=True).ready
    assert check(target=target, policy=PromotionPolicy(allowPreviouslyRolledBack=True)).ready


def test_an_aborted_attempt_is_not_a_rollback_verdict() -> None:
    target = prod(history=(finished("v2", Outcome.ABORTED, at=NOW - 60),))
    assert check(target=target).ready


def test_an_unfinished_rollout_on_the_target_blocks() -> None:
    running = replace(finished("v9", Outcome.PROMOTED, at=NOW), phase=Phase.PROGRESSING,
                      outcome=None, weight=20)
    result = check(target=prod(current=running))
    assert [g.name for g in result.unmet] == ["target-idle"]
    assert "Progressing, canary 20%" in gate(result, "target-idle").detail


def test_a_target_already_running_the_version_is_up_to_date() -> None:
    result = check(target=prod(stable_version="v2", deployed_image=f"{IMAGE}:v2"))
    assert result.up_to_date


def test_gate_not_met_names_every_unmet_gate_and_its_fix() -> None:
    err = blocked(check(policy=PromotionPolicy(soak="1d", requireApproval=True)))
    assert err.exit_code == 5
    assert "blocked by soak, approval (nothing was changed)" in err.message
    assert "wait 22h" in str(err.hint) and "--approve" in str(err.hint)
    # The Python API's promise (README, examples/release-pipeline.sh): the gates ride along.
    assert [gate.name for gate in err.check.unmet] == ["soak", "approval"]


# -- the gate config -------------------------------------------------------------------------


def test_the_gate_config_is_read_by_alias() -> None:
    policy = load_promotion({"from": "staging", "soak": "1h30m", "requireApproval": True,
                             "allowPreviouslyRolledBack": False})
    assert policy is not None and policy.source == "staging"
    assert policy.soak_seconds == 5400 and policy.require_approval
    assert load_promotion(None) is None


@pytest.mark.parametrize(("raw", "message"), [
    ({"soak": "1 hour"}, "demo:promotion.soak = \"1 hour\": must be a duration: whole "
     "numbers with units in falling order"),
    ({"from": "no spaces"}, "demo:promotion.from = \"no spaces\": must be a stack "
     "name, e.g. staging"),
    ({"sock": "1h"}, "demo:promotion.sock = ***: is not a known setting; did you mean "
     "soak? known settings: from, soak, requireApproval, allowPreviouslyRolledBack"),
    ({"requireApproval": "maybe"}, "demo:promotion.requireApproval = \"maybe\": must "
     "be true or false"),
    ("staging", "demo:promotion = \"staging\": must be a map with the settings from, "
     "soak, requireApproval, allowPreviouslyRolledBack"),
    ([1, 2], "demo:promotion = [1, 2]: must be a map with the settings from"),
])
def test_bad_gate_config_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_promotion(raw, stack="prod", service="demo")
    assert err.value.exit_code == 2
    assert message in str(err.value)
    assert "stacks/Pulumi.prod.yaml" in str(err.value)


def test_every_bad_gate_field_is_listed_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        load_promotion({"soak": "1 hour", "from": "no spaces", "sock": "1h"}, stack="prod",
                       service="demo")
    assert sorted(p.key for p in err.value.problems) == [
        "demo:promotion.from", "demo:promotion.soak",
        "demo:promotion.sock"]


def test_the_program_accepts_the_promotion_key() -> None:
    settings = load_settings({"app": "demo", "image": IMAGE, "stableVersion": "v1",
                              "promotion": {"from": "staging"}}, service="demo")
    assert settings.promotion == {"from": "staging"}


def test_the_source_comes_from_the_flag_or_the_target_config() -> None:
    configured = PromotionPolicy(**{"from": "staging"})
    assert resolve_source(None, configured, "prod") == "staging"
    assert resolve_source("staging", configured, "prod") == "staging"
    assert resolve_source("dev", PromotionPolicy(), "prod") == "dev"
    for given, policy in (("dev", configured), (None, PromotionPolicy()),
                          ("prod", PromotionPolicy())):
        with pytest.raises(InvalidInput):
            resolve_source(given, policy, "prod")


# -- approvals, the release itself (with a stand-in target) ----------------------------------


def test_an_approval_is_for_one_version_and_the_latest_one_is_told(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Journal(tmp_path, "prod")
    assert approval_of(store, "v2") is None
    monkeypatch.setattr("time.time", lambda: NOW)
    store.approve_release("v2", by="alice")
    store.approve_release("v3", by="carol")
    monkeypatch.setattr("time.time", lambda: NOW + 60)
    store.approve_release("v2", by="bob")
    assert approval_of(store, "v2") == "approved by bob at 2023-11-14T22:14:20Z"
    assert approval_of(store, "v3") == "approved by carol at 2023-11-14T22:13:20Z"
    assert approval_of(store, "v4") is None


@dataclass
class FakeTarget:
    journal: Journal
    runs: list[str] = field(default_factory=list)

    def run(self, version: str) -> RolloutResult:
        self.runs.append(version)
        state = finished(version, Outcome.PROMOTED, at=NOW)
        return RolloutResult("promoted", "Succeeded", "all steps passed", state)


def fake_release(tmp_path: Path) -> tuple[Release, FakeTarget]:
    release = Release(target="prod", source="staging", journal_directory=tmp_path)
    target = FakeTarget(Journal(tmp_path, "prod"))
    release.target = target  # type: ignore[assignment]
    return release, target


def test_a_blocked_release_runs_nothing(tmp_path: Path) -> None:
    release, target = fake_release(tmp_path)
    with pytest.raises(GateNotMet):
        release.apply(check(policy=PromotionPolicy(soak="1d")))
    assert target.runs == [] and not list(tmp_path.iterdir())


def test_a_ready_release_rolls_the_exact_version_out_and_logs_it(tmp_path: Path) -> None:
    release, target = fake_release(tmp_path)
    result = release.apply(check(target=prod(history=(finished(
        "v2", Outcome.ROLLED_BACK, at=NOW - 60),)), force=True), force=True)
    assert target.runs == ["v2"]
    assert (result.outcome, result.exit_code) == ("promoted", 0)
    assert result.to_dict()["gates"][0]["name"] == "source-succeeded"
    [logged] = target.journal.release_log()
    assert logged["forced"] is True and logged["version"] == "v2"
    assert logged["outcome"] == "promoted"


def test_a_target_with_an_unfinished_rollout_is_busy_exit_3(tmp_path: Path) -> None:
    # Issue 12 item 10: it exited 5 ("gate not met"), as if the version were at fault.
    from rollout.core.errors import TargetBusy

    release, target = fake_release(tmp_path)
    running = replace(finished("v9", Outcome.PROMOTED, at=NOW), phase=Phase.PROGRESSING,
                      outcome=None, weight=20)
    with pytest.raises(TargetBusy) as busy:
        release.apply(check(target=prod(current=running)))
    assert busy.value.exit_code == 3 and target.runs == []


def test_a_release_that_fails_or_is_aborted_is_still_in_the_audit_log(tmp_path: Path) -> None:
    release, target = fake_release(tmp_path)

    def interrupted(version: str) -> RolloutResult:
        raise Aborted("stopped by signal; rollout left at Progressing")

    target.run = interrupted  # type: ignore[method-assign]
    with pytest.raises(Aborted):
        release.apply(check())
    [logged] = target.journal.release_log()
    assert logged["outcome"].startswith("error (exit 4): stopped by signal")


def test_an_up_to_date_target_is_nothing_to_do(tmp_path: Path) -> None:
    release, target = fake_release(tmp_path)
    result = release.apply(check(target=prod(stable_version="v2",
                                             deployed_image=f"{IMAGE}:v2")))
    assert target.runs == [] and (result.outcome, result.exit_code) == ("nothing-to-do", 0)


# -- the pipeline view -----------------------------------------------------------------------


def test_stacks_are_listed_from_the_stack_config_dir(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    for name in ("prod", "dev", "staging"):
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    assert stack_files(tmp_path) == ["dev", "prod", "staging"]


def test_sources_come_first_and_config_overrides_the_listed_order() -> None:
    envs = {"dev": Environment("dev"), "prod": Environment(
        "prod", promotion=PromotionPolicy(**{"from": "staging"})), "staging": Environment(
        "staging", promotion=PromotionPolicy(**{"from": "dev"}))}
    sources = predecessors(["dev", "prod", "staging"], envs, chain=False)
    assert sources == {"dev": None, "prod": "staging", "staging": "dev"}
    assert ordered(["dev", "prod", "staging"], sources) == ["dev", "staging", "prod"]
    chained = predecessors(["dev", "staging"], {"dev": Environment("dev"),
                                                "staging": Environment("staging")}, chain=True)
    assert chained == {"dev": None, "staging": "dev"}


def test_envs_lists_stacks_in_release_order() -> None:
    from rollout.app.environments import pipeline_order

    order = pipeline_order({"prod": "staging", "staging": "dev", "dev": None, "lab": None,
                            "loop": "loop"})
    assert order.index("dev") < order.index("staging") < order.index("prod")
    assert set(order) == {"prod", "staging", "dev", "lab", "loop"}
