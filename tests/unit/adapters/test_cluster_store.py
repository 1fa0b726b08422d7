"""Covers the cluster store's pure parts: object names, the CRD, the status and history shapes,
request annotations, Events, RBAC and how API failures are worded (tests/lab runs the rest)."""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from rollout.adapters import cluster_resource as resource
from rollout.adapters.cluster_lease import LeaseTimings
from rollout.core.errors import InfrastructureError, InvalidInput
from rollout.core.state import Outcome, Phase
from tests.contract.state_store import finished, rollout

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# -- names --------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["lab", "staging", "prod-eu-1", "a"])
def test_a_stack_named_like_an_object_keeps_its_name(stack: str) -> None:
    assert resource.object_name(stack) == stack


@pytest.mark.parametrize("stack", ["org/shop/Prod.eu", "Prod", "my_stack", "a.b", "-x",
                                   "x" * 64, "org/" + "very-long-project-name" * 4 + "/dev",
                                   "lab-0123456789", "9" * 63 + "z"])
def test_other_stack_names_map_to_a_valid_distinct_name_that_stays_readable(stack: str) -> None:
    name = resource.object_name(stack)
    assert DNS_LABEL.match(name) and len(name) <= 63, name
    assert name == resource.object_name(stack), "the same stack always gets the same name"
    assert name != stack
    slug = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-")[:20]
    assert name.startswith(slug[:20].rstrip("-"))
    for derived in (resource.lease_name(name), resource.archive_name(name, 12)):
        assert len(derived) <= 253 and re.match(r"^[a-z0-9][-a-z0-9.]*[a-z0-9]$", derived)


def test_similar_stack_names_never_share_an_object() -> None:
    stacks = ["org/shop/Prod.eu", "org/shop/prod.eu", "org-shop-prod-eu", "org.shop.prod.eu",
              "org/shop/prod_eu", "Org/Shop/Prod.EU"]
    names = [resource.object_name(stack) for stack in stacks]
    assert len(set(names)) == len(stacks), names
    # A plain name cannot take the hashed name of another stack.
    assert resource.object_name(names[0]) != names[0]


# -- the CRD ------------------------------------------------------------------------------

def test_the_crd_is_a_namespaced_canaryrollout_with_a_status_subresource() -> None:
    crd = resource.crd_manifest()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "canaryrollouts.rollouts.canary.dev"
    assert (spec["group"], spec["scope"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "rollouts.canary.dev", "Namespaced", "CanaryRollout", "canaryrollouts")
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_the_printer_columns_show_each_stacks_rollout_from_declared_fields() -> None:
    (version,) = resource.crd_manifest()["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Stack", "Service", "Phase", "Step", "Weight", "Candidate", "Stable",
                             "Last Verdict", "Age"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    for path in columns.values():
        part, field = path.strip(".").split(".")
        assert field in schema[part]["properties"], path


def test_the_schema_is_structural_and_keeps_the_journal_whole() -> None:
    (version,) = resource.crd_manifest()["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["journal"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["history"]["items"]["x-kubernetes-preserve-unknown-fields"] is True

    def typed(node: dict[str, object]) -> None:
        assert "type" in node, node
        for child in (node.get("properties") or {}).values():  # type: ignore[attr-defined]
            typed(child)
        if isinstance(node.get("items"), dict):
            typed(node["items"])  # type: ignore[arg-type]

    typed(version["schema"]["openAPIV3Schema"])


# -- the status ---------------------------------------------------------------------------

def test_the_journal_round_trips_through_strict_json() -> None:
    state = rollout(judge_state={"ratio": math.inf, "low": -math.inf, "mean": math.nan,
                                 "nested": [{"v": math.nan}]})
    status = resource.with_journal({"lockToken": "t", "requests": []}, state)
    text = json.dumps(status, allow_nan=False)  # what the API server accepts
    back = resource.journal_of(json.loads(text))
    assert back is not None
    assert back.judge_state["ratio"] == math.inf and back.judge_state["low"] == -math.inf
    assert math.isnan(back.judge_state["mean"]) and math.isnan(back.judge_state["nested"][0]["v"])
    assert replace(back, judge_state={}) == replace(state, judge_state={})
    assert status["lockToken"] == "t" and status["requests"] == []
    assert resource.journal_of({}) is None


def test_the_journal_keeps_the_threshold_and_an_older_one_without_it_loads() -> None:
    state = rollout(threshold=3)
    back = resource.journal_of(json.loads(json.dumps(resource.with_journal({}, state))))
    assert back == state and back.threshold == 3
    older = resource.state_to_wire(state)
    del older["threshold"]
    assert resource.journal_of({"journal": older}) == replace(state, threshold=0)


def test_the_status_columns_say_where_the_rollout_is() -> None:
    columns = resource.summary(rollout())
    assert columns["phase"] == "Progressing" and columns["step"] == "2/3"
    assert (columns["weight"], columns["candidate"], columns["stable"]) == (40, "v2", "v1")
    assert columns["lastVerdict"] == "Inconclusive at 40%"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", columns["startedAt"])
    begun = rollout().moved(step=-1, analyses=[], phase=Phase.INITIALIZING)
    assert resource.summary(begun)["step"] == "0/3"
    assert resource.summary(begun)["lastVerdict"] == ""
    failed = rollout().moved(analyses=[{"passed": False, "weight": 20}])
    assert resource.last_verdict(failed) == "Fail at 20%"


# -- history ------------------------------------------------------------------------------

def _entries(count: int) -> list[dict[str, object]]:
    return [resource.state_to_wire(finished(f"v{n}")) for n in range(count)]


def test_history_keeps_the_newest_in_the_status_and_hands_the_oldest_to_the_archive() -> None:
    entries = _entries(25)
    kept, older = resource.split_history(entries, limit=20)
    assert kept == entries[5:] and older == entries[:5]
    assert resource.split_history(entries[:3], limit=20) == (entries[:3], [])


def test_history_in_the_status_stays_within_its_byte_budget() -> None:
    entries = _entries(10)
    # Exactly the newest three: entries differ in size (their times are floats of any length).
    sizes = [len(json.dumps(entry, separators=(",", ":"))) for entry in entries]
    kept, older = resource.split_history(entries, limit=20, budget=sum(sizes[-3:]))
    assert kept == entries[-3:] and older == entries[:-3]
    kept, older = resource.split_history(entries, limit=20, budget=10)
    assert kept == entries[-1:], "the newest rollout is always kept, whatever its size"


def test_the_archive_round_trips_and_skips_what_it_cannot_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = _entries(3)
    data = resource.encode_archive(entries)
    assert resource.decode_archive(data) == entries
    import base64
    import gzip
    torn = gzip.decompress(base64.b64decode(data)).decode() + '{"candidate": "v9", "st'
    with caplog.at_level(logging.WARNING):
        again = resource.decode_archive(base64.b64encode(gzip.compress(torn.encode())).decode())
        assert again == entries
        assert resource.decode_archive("not base64 gzip") == []
    assert "skipping unreadable line 4" in caplog.text


def test_history_reads_each_rollout_once_oldest_first(caplog: pytest.LogCaptureFixture) -> None:
    first, second = finished("v2"), finished("v3", Outcome.ROLLED_BACK)
    wire = [resource.state_to_wire(state) for state in (first, second)]
    with caplog.at_level(logging.WARNING):
        found = resource.rollouts_in([wire[0], {"junk": 1}, wire[1], wire[0]], where="test")
    assert found == [first, second]
    assert "skipping an unreadable rollout in test" in caplog.text


# -- requests -----------------------------------------------------------------------------

def test_an_annotation_request_is_read_with_its_reason_and_sender() -> None:
    group = "rollouts.canary.dev"
    assert resource.annotated_request({}) is None
    assert resource.annotated_request({f"{group}/request": " Approve "}) == (
        "approve", "kubectl annotate", "")
    assert resource.annotated_request({f"{group}/request": "abort", f"{group}/reason": "p99",
                                       f"{group}/by": "ana"}) == ("abort", "ana", "p99")
    assert set(resource.REQUEST_KEYS) == {f"{group}/request", f"{group}/reason", f"{group}/by"}


def test_queued_requests_are_listed_oldest_first_and_after_the_moved_ones() -> None:
    def entry(ident: str, at: float) -> dict[str, Any]:
        return {"id": ident, "rollout_id": "r1", "action": "approve", "by": "x", "at": at,
                "reason": ""}

    annotations = {resource.queued_key(e["id"]): json.dumps(e)
                   for e in (entry("b", 2.0), entry("a", 1.0), entry("c", 3.0))}
    annotations["rollouts.canary.dev/queued-torn"] = "{"
    annotations["unrelated"] = "x"
    queued = resource.queued_requests(annotations)
    assert [e["id"] for e in queued] == ["a", "b", "c"]
    listed = [entry("z", 0.5), entry("a", 1.0)]
    assert [e["id"] for e in resource.merged_requests(listed, queued)] == ["z", "a", "b", "c"]


def test_the_request_list_keeps_every_request_of_the_current_rollout() -> None:
    old = [{"id": f"o{n}", "rollout_id": f"r{n}"} for n in range(80)]
    mine = [{"id": f"m{n}", "rollout_id": "now"} for n in range(60)]
    kept = resource.bounded_requests([*mine[:30], *old, *mine[30:]], current="now")
    assert [e for e in kept if e["rollout_id"] == "now"] == mine
    assert [e["id"] for e in kept if e["rollout_id"] != "now"] == [
        e["id"] for e in old[-resource.OTHER_REQUESTS_KEPT:]]


# -- events -------------------------------------------------------------------------------

def test_a_phase_event_names_the_phase_and_tells_the_latest_news() -> None:
    obj = {"metadata": {"name": "lab", "namespace": "ops", "uid": "u-1",
                        "resourceVersion": "7"}}
    state = rollout().moved(phase=Phase.ROLLING_BACK).with_event("é" * 2000)
    reason, message, warning = resource.phase_event(state)
    assert (reason, warning) == ("RollingBack", True)
    body = resource.event_body(obj, reason=reason, message=message, warning=warning,
                               now=1_790_000_000.5, instance="ana@host:1")
    assert body["type"] == "Warning" and body["reason"] == "RollingBack"
    assert len(body["note"].encode()) <= 1024 and body["note"].startswith("éé")
    assert body["regarding"]["kind"] == "CanaryRollout" and body["regarding"]["uid"] == "u-1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", body["eventTime"])
    assert body["metadata"]["name"].startswith("lab.")
    assert resource.phase_event(rollout())[1:] == ("pulumi up: weight 40%", False)


# -- RBAC ---------------------------------------------------------------------------------

def _rules(documents: list[dict[str, object]], role: str) -> dict[str, set[str]]:
    (found,) = [d for d in documents if d["kind"] == "Role"
                and d["metadata"]["name"] == role]  # type: ignore[index]
    return {f"{g}/{r}" if g else r: set(rule["verbs"])
            for rule in found["rules"]  # type: ignore[attr-defined]
            for g in rule["apiGroups"] for r in rule["resources"]}


def test_drivers_may_write_the_state_and_approvers_only_request() -> None:
    documents = list(yaml.safe_load_all(resource.rbac_yaml(
        "ops", drivers=["serviceaccount:ci:deployer"], approvers=["group:oncall", "user:ana"])))
    assert [d["kind"] for d in documents] == ["Role", "RoleBinding", "Role", "RoleBinding"]
    assert all(d["metadata"]["namespace"] == "ops" for d in documents)
    driver = _rules(documents, "canary-rollout-driver")
    assert {"update"} <= driver["rollouts.canary.dev/canaryrollouts/status"]
    assert {"get", "create", "update"} <= driver["coordination.k8s.io/leases"]
    assert {"create"} <= driver["events.k8s.io/events"]
    assert {"get", "list", "create", "update"} <= driver["configmaps"]
    approver = _rules(documents, "canary-rollout-approver")
    assert approver == {"rollouts.canary.dev/canaryrollouts": {"get", "list", "watch", "patch"},
                        "coordination.k8s.io/leases": {"get"}}
    assert documents[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]
    assert [s["name"] for s in documents[3]["subjects"]] == ["oncall", "ana"]


def test_a_subject_that_is_not_one_is_refused_with_the_forms_that_are() -> None:
    with pytest.raises(InvalidInput, match="'robot' is not a subject") as refused:
        resource.rbac_yaml("ops", drivers=["robot"])
    assert "serviceaccount:" in (refused.value.hint or "")


@pytest.mark.parametrize("namespace", ["Bad NS!", "", "a" * 64, "-lead", "UPPER"])
def test_a_namespace_that_is_not_one_is_refused(namespace: str) -> None:
    with pytest.raises(InvalidInput, match="is not a namespace name"):
        resource.rbac_yaml(namespace)


# -- errors from the API ------------------------------------------------------------------

def _api(status: int, body: object = "", reason: str = "") -> ApiException:
    text = body if isinstance(body, str) else json.dumps(body)
    return ApiException(status=status, reason=reason, body=text)


def _not_found(kind: str) -> dict[str, object]:
    return {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": f'{kind} "x" not found', "details": {"name": "x", "kind": kind}}


def test_a_missing_crd_says_to_install_it_and_a_missing_object_is_not_that() -> None:
    missing = _api(404, "404 page not found\n", "Not Found")
    assert resource.resource_missing(missing)
    assert not resource.resource_missing(_api(404, _not_found("canaryrollouts")))
    error = resource.api_error(missing, doing="reading x", server="https://k:6443")
    assert isinstance(error, InfrastructureError) and error.exit_code == 3
    assert "no CanaryRollout resource" in error.message and "https://k:6443" in error.message
    assert "rollout install" in (error.hint or "")


@pytest.mark.parametrize(("failure", "said", "hint"), [
    (_api(403, {"kind": "Status", "message": 'user "ci" cannot update leases'}),
     'forbade reading x: user "ci" cannot update leases', "canary-rollout-driver Role"),
    (_api(401, "Unauthorized"), "did not accept the credentials", "kubeconfig"),
    (_api(503, "etcd down"), "failed while reading x: 503 etcd down", "retry"),
    (_api(413, "request entity too large"), "too large", "journal outgrew"),
    (_api(500, "etcdserver: request is too large"), "too large", "journal outgrew"),
    (urllib3.exceptions.MaxRetryError(None, "/x", OSError("Connection refused")),  # type: ignore[arg-type]
     "could not reach the API server at https://k:6443", "kubeconfig"),
])
def test_api_failures_become_infrastructure_errors_that_name_the_fix(
    failure: Exception, said: str, hint: str
) -> None:
    error = resource.api_error(failure, doing="reading x", server="https://k:6443")
    assert type(error) is InfrastructureError
    assert said in error.message and hint in (error.hint or "")


def test_only_failures_worth_retrying_are_retried() -> None:
    assert resource.transient(_api(503)) and resource.transient(_api(429))
    assert resource.transient(urllib3.exceptions.ReadTimeoutError(None, "/x", "timed out"))  # type: ignore[arg-type]
    assert not resource.transient(_api(403)) and not resource.transient(_api(409))
    assert not resource.transient(_api(500, "etcdserver: request is too large"))


# -- lease timings ------------------------------------------------------------------------

def test_lease_timings_default_to_client_gos_and_must_be_in_order() -> None:
    assert LeaseTimings() == LeaseTimings(duration=15, renew_deadline=10, retry_period=2)
    LeaseTimings(duration=3, renew_deadline=2, retry_period=0.5)
    with pytest.raises(InvalidInput, match="not in order"):
        LeaseTimings(renew_deadline=15)
    with pytest.raises(InvalidInput, match="not in order"):
        LeaseTimings(retry_period=10)
    with pytest.raises(InvalidInput, match="not in order"):
        LeaseTimings(retry_period=0)


def test_a_kubeconfig_that_cannot_be_loaded_is_named(tmp_path: Path) -> None:
    from rollout.adapters.cluster_store import api_client

    broken = tmp_path / "kubeconfig"
    broken.write_text("just a line\n")
    for path in (broken, tmp_path / "missing"):
        with pytest.raises(InfrastructureError, match=f"could not load the kubeconfig {path}"):
            api_client(str(path))


def test_a_save_tells_each_new_verdict_with_its_values_then_the_phase_it_enters() -> None:
    passed = {"weight": 20, "passed": True, "metrics": [
        {"metric": "request-success-rate", "canary": 100.0, "primary": 99.95, "result": "PASS"}]}
    failed = {"weight": 40, "passed": False, "metrics": [
        {"metric": "request-success-rate", "canary": 92.31, "primary": 100.0, "result": "FAIL"},
        {"metric": "request-duration", "canary": 24.04, "primary": 21.3, "result": "PASS"}]}
    before = replace(rollout(), analyses=[])
    after = replace(before, analyses=[passed, failed]).moved(phase=Phase.ROLLING_BACK)
    told = resource.save_events(replace(before, analyses=[passed]), after)
    assert told == [
        ("AnalysisFailed", "at 40%: request-success-rate 92.31 (primary 100) FAIL, "
                           "request-duration 24.04 (primary 21.3) PASS", True),
        ("RollingBack", "pulumi up: weight 40%", True)]
    # The same phase and no new verdict: nothing to tell; a new rollout tells its phase.
    assert resource.save_events(before, before) == []
    assert resource.save_events(replace(before, rollout_id="older"), before) == [
        ("Progressing", "pulumi up: weight 40%", False)]
    assert resource.save_events(None, replace(before, analyses=[passed]))[0] == (
        "AnalysisPassed", "at 20%: request-success-rate 100 (primary 99.95) PASS", False)


def test_a_hand_edited_release_approval_the_gate_cannot_read_is_skipped() -> None:
    prefix = resource.APPROVAL_PREFIX
    annotations = {
        f"{prefix}a": json.dumps({"version": "v2", "by": "x", "at": "yesterday"}),
        f"{prefix}b": "{not json",
        f"{prefix}c": json.dumps({"version": "v3", "by": "y", "at": 5.0}),
        f"{prefix}d": json.dumps({"version": "v4", "by": "z", "at": True}),
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    assert [e["version"] for _, e in resource.release_approvals_in(annotations)] == ["v3"]
