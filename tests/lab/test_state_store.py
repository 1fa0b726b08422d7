"""Runs the StateStore contract against the cluster store on the lab's real API server, then
what only a cluster has: the CRD and its columns, racing drivers, a lease edited by hand, a
lost API server, RBAC, Events, `kubectl annotate` requests and the history archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from rollout.adapters import cluster_store
from rollout.adapters.cluster_lease import LeaseTimings
from rollout.adapters.cluster_resource import (
    APPROVALS_KEPT,
    ARCHIVE_KEY,
    GROUP,
    PLURAL,
    VERSION,
    lease_name,
    object_name,
    rbac_yaml,
)
from rollout.adapters.cluster_store import ClusterStore, api_client, install_crd
from rollout.core.errors import DriverBusy, InfrastructureError, LockLost
from rollout.core.ports import StateStore
from rollout.core.state import Phase
from rollout.lab.lab import Lab
from tests.contract.state_store import STACK, StateStoreContract, finished, rollout

# Short enough to keep takeovers quick, long enough for a loaded machine's API calls.
TIMINGS = LeaseTimings(duration=3, renew_deadline=2.0, retry_period=0.5)
CLOSED_PORT = "https://127.0.0.1:1"


@pytest.fixture(scope="module")
def kubeconfig(lab: Lab) -> str:
    path = str(lab.layout.kubeconfig)
    install_crd(api_client(path))
    return path


@pytest.fixture(scope="module")
def admin(kubeconfig: str) -> client.ApiClient:
    return api_client(kubeconfig)


@pytest.fixture
def namespace(admin: client.ApiClient) -> Iterator[str]:
    name = f"state-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


class ClusterStores:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.made: list[ClusterStore] = []

    def __call__(self, stack: str = STACK, **options: Any) -> ClusterStore:
        # A client of its own, as another process would have: cutting one off cuts no other.
        store = ClusterStore(api_client(self.kubeconfig), stack=stack,
                             namespace=self.namespace, **{"timings": TIMINGS, **options})
        self.made.append(store)
        return store

    def steal(self, holder: StateStore, thief: StateStore) -> None:
        assert isinstance(holder, ClusterStore) and isinstance(thief, ClusterStore)
        with cut_off(holder):
            time.sleep(TIMINGS.duration + 0.5)  # the lease runs out unrenewed
            thief.acquire()

    def release_all(self) -> None:
        for store in self.made:
            store.release()


@contextmanager
def cut_off(store: ClusterStore) -> Iterator[None]:
    """Points a store's client at a closed port: the API server is gone for it alone."""
    host = store.api.configuration.host
    store.api.configuration.host = CLOSED_PORT
    try:
        yield
    finally:
        store.api.configuration.host = host


@pytest.fixture
def stores(kubeconfig: str, namespace: str) -> Iterator[ClusterStores]:
    made = ClusterStores(kubeconfig, namespace)
    yield made
    made.release_all()


class TestClusterStateStore(StateStoreContract):
    pass


# -- the resource -------------------------------------------------------------------------

def _table(admin: client.ApiClient, path: str) -> dict[str, Any]:
    response = admin.call_api(
        "GET", f"{admin.configuration.host}{path}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    response.read()
    table: dict[str, Any] = json.loads(response.data)
    return table


def test_kubectl_get_lists_each_stacks_rollout_with_its_columns(
    admin: client.ApiClient, kubeconfig: str, stores: ClusterStores
) -> None:
    install_crd(admin)  # again: replacing the CRD is harmless
    stores("org/shop/Prod.eu").save(rollout(stack="org/shop/Prod.eu"))
    stores("lab").save(rollout(candidate="v7").moved(phase=Phase.ROLLING_BACK))
    table = _table(admin, f"/apis/{GROUP}/{VERSION}/{PLURAL}")  # -A
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names == ["Name", "Stack", "Service", "Phase", "Step", "Weight", "Candidate",
                     "Stable", "Last Verdict", "Age"]
    rows = {row["cells"][1]: row["cells"] for row in table["rows"]
            if row["object"]["metadata"]["namespace"] == stores.namespace}
    assert rows["org/shop/Prod.eu"][:9] == [object_name("org/shop/Prod.eu"), "org/shop/Prod.eu",
                                            None, "Progressing", "2/3", 40, "v2", "v1",
                                            "Inconclusive at 40%"]
    assert rows["lab"][3] == "RollingBack" and rows["lab"][6] == "v7"


def test_each_phase_a_save_enters_is_told_as_an_event(
    admin: client.ApiClient, stores: ClusterStores
) -> None:
    store = stores()
    state = rollout()  # one rollout: a new rollout id is news of its own
    store.save(state.moved(phase=Phase.INITIALIZING).with_event("rollout of v2 started"))
    store.save(state.with_event("pulumi up: weight 20%"))
    store.save(state.with_event("pulumi up: weight 40%"))  # the same phase: no event
    store.save(state.moved(phase=Phase.ROLLING_BACK).with_event("5xx above 1%"))
    found = client.CustomObjectsApi(admin).list_namespaced_custom_object(
        "events.k8s.io", "v1", stores.namespace, "events")["items"]
    # Verdict events (their values) are checked in the unit tests and end to end.
    told = sorted((e["eventTime"], e["reason"], e["note"], e["type"]) for e in found
                  if e["regarding"]["name"] == store.name
                  and not e["reason"].startswith("Analysis"))
    assert [(reason, note, kind) for _, reason, note, kind in told] == [
        ("Initializing", "rollout of v2 started", "Normal"),
        ("Progressing", "pulumi up: weight 20%", "Normal"),
        ("RollingBack", "5xx above 1%", "Warning")]


def test_a_kubectl_annotate_request_is_queued_once_with_its_own_id(
    admin: client.ApiClient, stores: ClusterStores
) -> None:
    state = rollout()
    driver = stores()
    driver.save(state)
    objects = client.CustomObjectsApi(admin)

    def annotate(**annotations: str) -> None:  # what `kubectl annotate` sends
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, stores.namespace, PLURAL, driver.name,
            {"metadata": {"annotations": {f"{GROUP}/{k}": v for k, v in annotations.items()}}})

    annotate(request="approve", by="ana", reason="dashboards look fine")
    first = driver.requests()
    (approve,) = first
    assert (approve["action"], approve["by"], approve["reason"], approve["rollout_id"]) == (
        "approve", "ana", "dashboards look fine", state.rollout_id)
    assert stores().requests() == first, "read again, by anyone: the same request, same id"
    annotate(request="approve")  # a second approval is a second request
    second = driver.requests()
    assert [r["id"] for r in second[:1]] == [approve["id"]] and len(second) == 2
    assert second[1]["by"] == "kubectl annotate" and second[1]["id"] != approve["id"]
    annotate(request="launch")
    assert len(driver.requests()) == 2, "an unknown action is no request"
    obj = objects.get_namespaced_custom_object(GROUP, VERSION, stores.namespace, PLURAL,
                                               driver.name)
    assert not [k for k in obj["metadata"].get("annotations", {}) if "request" in k
                or "queued" in k], "every annotation was taken into status.requests"
    assert [r["id"] for r in obj["status"]["requests"]] == [r["id"] for r in second]
    events = client.CustomObjectsApi(admin).list_namespaced_custom_object(
        "events.k8s.io", "v1", stores.namespace, "events")["items"]
    assert any(e["reason"] == "IgnoredRequest" and "'launch'" in e["note"] for e in events)


def test_old_history_moves_to_a_compressed_archive_that_history_still_reads(
    admin: client.ApiClient, stores: ClusterStores
) -> None:
    store = stores(history_limit=3)
    rollouts = [finished(f"v{n}") for n in range(8)]
    for state in rollouts:
        assert store.archive(state)
    assert not store.archive(rollouts[0]), "an archived rollout is not added again"
    assert stores().history() == rollouts
    obj = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        GROUP, VERSION, stores.namespace, PLURAL, store.name)
    assert [e["candidate"] for e in obj["status"]["history"]] == ["v5", "v6", "v7"]
    assert obj["status"]["archived"] == 5
    maps = client.CoreV1Api(admin).list_namespaced_config_map(
        stores.namespace, label_selector=f"{GROUP}/rollout={store.name}").items
    assert len(maps) == 1 and ARCHIVE_KEY in maps[0].data


# -- two drivers, one stack ---------------------------------------------------------------

def _race(racers: list[ClusterStore]) -> tuple[list[ClusterStore], list[str]]:
    """Every racer calls acquire at the same moment: (who won, what the others were told)."""
    start = threading.Barrier(len(racers))
    won: list[ClusterStore] = []
    refused: list[str] = []

    def race(store: ClusterStore) -> None:
        start.wait()
        try:
            store.acquire()
            won.append(store)
        except DriverBusy as busy:
            refused.append(busy.message)

    threads = [threading.Thread(target=race, args=(store,)) for store in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


def test_of_drivers_racing_for_one_stack_exactly_one_wins(stores: ClusterStores) -> None:
    for _ in range(3):
        won, refused = _race([stores() for _ in range(6)])
        assert len(won) == 1 and len(refused) == 5, (won, refused)
        holder = won[0].holder()
        assert holder and all(holder in message for message in refused)
        won[0].release()
    # Over a lease its dead holder left behind, once it has run out:
    dead = stores()
    dead.acquire()
    dead._lock._stop.set()
    time.sleep(TIMINGS.duration + 0.5)
    won, refused = _race([stores() for _ in range(6)])
    assert len(won) == 1 and len(refused) == 5, (won, refused)


def test_writers_racing_on_one_object_lose_no_request_and_no_save(
    stores: ClusterStores
) -> None:
    driver = stores()
    driver.acquire()
    state = rollout()
    driver.save(state)
    sent: list[str] = []

    def approve(who: str) -> None:
        approver = stores()
        for number in range(8):
            sent.append(approver.request("approve", by=f"{who}-{number}")["id"])

    approvers = [threading.Thread(target=approve, args=(who,)) for who in ("ana", "bo")]
    for thread in approvers:
        thread.start()
    saved = state
    for weight in range(0, 60, 4):
        saved = state.moved(weight=weight)
        driver.save(saved)
        driver.requests()  # moves queued requests into the status while others write
    for thread in approvers:
        thread.join()
    assert sorted(r["id"] for r in driver.requests()) == sorted(sent)
    assert stores().load() == saved


def test_a_lease_taken_by_hand_stops_the_driver_before_its_next_write(
    admin: client.ApiClient, stores: ClusterStores
) -> None:
    driver = stores()
    driver.acquire()
    driver.save(rollout())
    leases = client.CustomObjectsApi(admin)
    name = lease_name(driver.name)
    lease = leases.get_namespaced_custom_object("coordination.k8s.io", "v1", stores.namespace,
                                                "leases", name)
    lease["spec"]["holderIdentity"] = "intruder@elsewhere:1"
    leases.replace_namespaced_custom_object("coordination.k8s.io", "v1", stores.namespace,
                                            "leases", name, lease)
    with pytest.raises(LockLost, match="intruder@elsewhere:1"):
        driver.save(rollout().moved(phase=Phase.PROMOTING))
    deadline = time.monotonic() + 5 * TIMINGS.retry_period
    while time.monotonic() < deadline:
        try:
            driver.check_held()
        except LockLost as lost:
            assert "intruder@elsewhere:1" in lost.message
            break
        time.sleep(0.05)
    else:
        pytest.fail("the renewal never noticed the lease was taken")
    assert stores().load() == driver.load() and driver.load().phase is Phase.PROGRESSING  # type: ignore[union-attr]
    with pytest.raises(DriverBusy, match="intruder@elsewhere:1"):
        stores().acquire()


def test_a_lease_left_by_a_dead_driver_is_taken_over_once_it_expires(
    admin: client.ApiClient, stores: ClusterStores
) -> None:
    first = stores()
    first.acquire()
    first.save(rollout())
    # Dead: its renewals stop, its lease and its lock token stay behind.
    first._lock._stop.set()
    with pytest.raises(DriverBusy, match=r"renewed \d+s ago"):
        stores().acquire()
    time.sleep(TIMINGS.duration + 0.5)
    second = stores()
    second.acquire()
    assert second.holder() == first._lock.identity  # same process, same user@host:pid
    second.save(rollout().moved(phase=Phase.ROLLING_BACK))
    # The first driver had missed all of it, and its clock still says it holds the lock:
    first._lock._renewed_at = time.monotonic()
    with pytest.raises(LockLost, match="now held by"):
        first.save(rollout().moved(phase=Phase.PROMOTING))
    # Even had it read the Lease just before the takeover, the token in the status stops it.
    before_takeover = replace(second._lock.seen(), token=first._lock.token)  # type: ignore[type-var]
    first._lock.seen = lambda: before_takeover  # type: ignore[method-assign]
    with pytest.raises(LockLost, match="another driver took the rollout lock"):
        first.save(rollout().moved(phase=Phase.PROMOTING))
    with pytest.raises(LockLost):
        first.archive(finished("v2"))
    assert stores().load().phase is Phase.ROLLING_BACK  # type: ignore[union-attr]
    assert stores().history() == []


def test_a_killed_driver_process_blocks_others_until_its_lease_expires(
    kubeconfig: str, stores: ClusterStores
) -> None:
    script = (
        "import os, sys, time\n"
        "from rollout.adapters.cluster_store import ClusterStore, api_client\n"
        "from rollout.adapters.cluster_lease import LeaseTimings\n"
        "store = ClusterStore(api_client(sys.argv[1]), stack='lab', namespace=sys.argv[2],\n"
        "                     timings=LeaseTimings(duration=3, renew_deadline=2.0,\n"
        "                                          retry_period=0.5))\n"
        "store.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script, kubeconfig, stores.namespace],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        time.sleep(2 * TIMINGS.retry_period)  # it renews while it lives
        with pytest.raises(DriverBusy, match=f":{child.pid}"):
            stores().acquire()
    finally:
        child.kill()
        child.wait()
    killed_at = time.monotonic()
    survivor = stores()
    while True:
        try:
            survivor.acquire()
            break
        except DriverBusy:
            assert time.monotonic() - killed_at < TIMINGS.duration + 3
            time.sleep(0.2)
    # No process checks: the dead driver's lease held the stack until it ran out.
    assert time.monotonic() - killed_at > TIMINGS.duration - 2 * TIMINGS.retry_period - 0.5
    assert survivor.holder() == survivor._lock.identity and str(os.getpid()) in (
        survivor.holder() or "")


def test_a_driver_cut_off_from_the_api_server_stops_past_the_renew_deadline(
    stores: ClusterStores
) -> None:
    driver = stores()
    driver.acquire()
    with cut_off(driver):
        driver.check_held()  # within the renew deadline it still holds the lock
        time.sleep(TIMINGS.renew_deadline + 2 * TIMINGS.retry_period)
        with pytest.raises(LockLost, match="renew deadline") as lost:
            driver.check_held()
        assert "127.0.0.1:1" in lost.value.message
    with pytest.raises(LockLost):
        driver.check_held()  # back online it still stops: another may have taken over
    driver.release()
    assert stores().holder() is None, "its release freed the lease nobody had taken"


def test_a_store_without_the_lock_cannot_write_while_a_driver_holds_it(
    stores: ClusterStores
) -> None:
    driver = stores()
    driver.acquire()
    with pytest.raises(DriverBusy, match="only it writes the journal"):
        stores().save(rollout())
    stores().request("abort", rollout_id="abc", by="ops")  # requests are anyone's to send


# -- failures -----------------------------------------------------------------------------

def test_an_unreachable_api_server_is_an_infrastructure_error_naming_it(
    stores: ClusterStores
) -> None:
    store = stores()
    store.api.configuration.host = "https://127.0.0.1:1"
    for action in (store.load, lambda: store.save(rollout()), store.acquire, store.history,
                   store.requests, store.refuse_if_busy, store.holder,
                   lambda: store.request("approve")):
        started = time.monotonic()
        with pytest.raises(InfrastructureError) as failed:
            action()
        assert time.monotonic() - started < 10
        assert failed.value.exit_code == 3
        assert "could not reach the API server at https://127.0.0.1:1" in failed.value.message
        assert "kubeconfig" in (failed.value.hint or "")


def test_a_cluster_without_the_crd_says_to_run_rollout_install(
    stores: ClusterStores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_store, "VERSION", "v9alpha9")  # a resource the server lacks
    for action in (stores().load, lambda: stores().save(rollout()), stores().acquire):
        with pytest.raises(InfrastructureError, match="no CanaryRollout resource") as missing:
            action()
        assert "rollout install" in (missing.value.hint or "")
    assert stores().holder() is None, "the failed acquire let its lease go"


def test_a_missing_namespace_is_named(kubeconfig: str) -> None:
    store = ClusterStore(api_client(kubeconfig), stack="lab", namespace="no-such-namespace",
                         timings=TIMINGS)
    assert store.load() is None
    with pytest.raises(InfrastructureError, match="namespace no-such-namespace does not exist"):
        store.save(rollout())


def test_the_rbac_roles_let_drivers_drive_and_approvers_only_request(
    admin: client.ApiClient, kubeconfig: str, stores: ClusterStores
) -> None:
    import yaml

    rbac = client.RbacAuthorizationV1Api(admin)
    for document in yaml.safe_load_all(rbac_yaml(stores.namespace, drivers=["user:ci"],
                                                 approvers=["user:ana"])):
        create = (rbac.create_namespaced_role if document["kind"] == "Role"
                  else rbac.create_namespaced_role_binding)
        create(stores.namespace, document)

    def acting_as(user: str) -> ClusterStore:
        store = stores()
        store.api.set_default_header("Impersonate-User", user)
        return store

    driver = acting_as("ci")
    driver.acquire()
    driver.save(rollout().moved(phase=Phase.INITIALIZING))
    driver.save(rollout())
    assert driver.archive(finished("v1"))
    approver = acting_as("ana")
    assert approver.load() == driver.load() and approver.driver_running()
    sent = approver.request("approve", by="ana")
    assert [r["id"] for r in driver.requests()] == [sent["id"]]
    approver.approve_release("v2", by="ana")
    assert [(a["version"], a["by"]) for a in driver.release_approvals()] == [("v2", "ana")]
    with pytest.raises(InfrastructureError, match="forbade"):
        approver.log_release({"outcome": "promoted", "forced": True})
    driver.log_release({"outcome": "promoted", "forced": False})
    driver.release()
    with pytest.raises(InfrastructureError, match="forbade") as refused:
        approver.save(rollout().moved(phase=Phase.PROMOTING))
    assert "canary-rollout-driver Role" in (refused.value.hint or "")
    with pytest.raises(InfrastructureError, match="forbade"):
        approver.acquire()
    stranger = acting_as("mallory")
    with pytest.raises(InfrastructureError, match="forbade"):
        stranger.request("abort")


def test_release_approvals_in_the_object_are_bounded_to_the_latest(
    stores: ClusterStores,
) -> None:
    store = stores()
    for n in range(APPROVALS_KEPT + 3):
        store.approve_release(f"v{n}", by="ci")
    kept = stores().release_approvals()
    assert [a["version"] for a in kept] == [f"v{n}" for n in range(3, APPROVALS_KEPT + 3)]
