"""The driver end to end on the lab: real pulumi up, cluster, Prometheus and HTTP traffic."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from rollout.lab.lab import Lab
from rollout.readback import ClusterReadback
from tests.lab.project import PREFIX
from tests.lab.service import Service, deployed_service


def _readback(service: Service) -> ClusterReadback:
    return ClusterReadback(app="demo", namespace=service.namespace, router="istio",
                           kubeconfig=str(service.lab.layout.kubeconfig))


def test_a_good_release_is_promoted(lab: Lab, tmp_path: Path) -> None:
    with deployed_service(lab, tmp_path) as service:
        result = service.rollouts.run("v2")
        assert result.outcome == "promoted", result.reason
        assert [a["weight"] for a in result.state.analyses] == [20, 50]
        outputs = service.rollouts.adapter.outputs()
        assert outputs["stableVersion"] == "v2" and outputs["canaryReplicas"] == 0
        live = _readback(service).live()
        assert (live.primary_weight, live.canary_weight) == (100, 0)
        assert live.primary_version == "v2" and live.canary_replicas == 0
        config = service.rollouts.adapter.config()
        assert config[f"{PREFIX}:stableVersion"].value == "v2"


def test_a_failing_release_is_reverted_to_exactly_what_was_there(lab: Lab, tmp_path: Path
                                                                 ) -> None:
    with deployed_service(lab, tmp_path) as service:
        config_before = service.rollouts.adapter.config()
        live_before = service.live()
        result = service.rollouts.run("v3")
        assert result.outcome == "rolled-back"
        assert result.exit_code == 1
        assert "request-success-rate" in result.reason and "below the minimum 99" in result.reason
        assert service.rollouts.adapter.config() == config_before
        assert service.live() == live_before


def test_a_driver_killed_mid_step_resumes_from_a_fresh_checkout_of_the_stack_file(
    lab: Lab, tmp_path: Path
) -> None:
    # Issue 12 item 1: a pipeline re-run checks the stack file out fresh (canaryReplicas back
    # at 0); resume then set only the weight, and live traffic went to a canary without pods.
    with deployed_service(lab, tmp_path) as service:
        stack_file = service.project / "stacks" / f"Pulumi.{service.stack}.yaml"
        committed = stack_file.read_text()
        first = service.cli("run", "--version", "v2")
        service.wait_journal(lambda s: s["weight"] == 50 and not s["step_applied"])
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert service.journal()["phase"] not in ("Succeeded", "Failed")
        stack_file.write_text(committed)
        seen: list[tuple[int | None, int | None]] = []
        stop = threading.Event()

        def watch() -> None:
            readback = _readback(service)
            while not stop.is_set():
                live = readback.live()
                seen.append((live.canary_weight, live.canary_replicas))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        resumed = service.cli("resume", "--output", "json")
        out, err = resumed.communicate(timeout=300)
        stop.set()
        watcher.join(timeout=10)
        assert resumed.returncode == 0, err
        assert '"outcome": "promoted"' in out
        assert seen and [s for s in seen if s[0] and not s[1]] == [], seen
        live = _readback(service).live()
        assert live.primary_version == "v2" and (live.primary_weight, live.canary_weight) == (
            100, 0)


def test_a_second_driver_is_refused_and_sigterm_reverts(lab: Lab, tmp_path: Path) -> None:
    with deployed_service(lab, tmp_path) as service:
        config_before = service.rollouts.adapter.config()
        first = service.cli("run", "--version", "v2")
        service.wait_journal(lambda s: s["phase"] == "Progressing")
        second = service.cli("run", "--version", "v2")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 3
        assert "another rollout driver is running" in err
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
        assert first.returncode == 4, err
        state = service.journal()
        assert state["phase"] == "Failed" and state["outcome"] == "aborted"
        assert "SIGTERM" in state["reason"]
        time.sleep(0.5)
        assert service.rollouts.adapter.config() == config_before
        live = _readback(service).live()
        assert (live.primary_weight, live.canary_weight) == (100, 0)
        assert live.primary_version == "v1"


def test_a_rollout_of_a_missing_stack_fails_and_creates_nothing(lab: Lab, tmp_path: Path) -> None:
    import pytest

    from rollout.errors import InvalidInput
    from tests.lab.project import make_project, rollouts

    project, stack, _ = make_project(tmp_path)
    with pytest.raises(InvalidInput) as err:
        rollouts(project, f"{stack}-typo").run("v2")
    assert "does not exist" in str(err.value)
    backend = lab.layout.pulumi_backend / ".pulumi" / "stacks" / "canary-service"
    assert not list(backend.glob(f"{stack}-typo*"))


def test_the_sequential_judge_catches_v3_and_lets_v2_through(lab: Lab, tmp_path: Path) -> None:
    from tests.lab.service import FAST_POLICY

    # An anytime-valid test needs evidence, not a single bad interval: give it six looks.
    policy = {**FAST_POLICY, "metrics": [], "stepWeights": [10, 20, 30, 40, 50, 60],
              "judge": {"kind": "sequential", "alpha": 0.01}}
    with deployed_service(lab, tmp_path, policy=policy) as service:
        bad = service.rollouts.run("v3")
        assert bad.outcome == "rolled-back", bad.reason
        assert bad.state.judge_state, "the sequential evidence is journaled between looks"
        assert "5xx responses" in bad.reason and "evidence" in bad.reason
        good = service.rollouts.run("v2")
        assert good.outcome == "promoted", good.reason
