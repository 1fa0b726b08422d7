"""The StateStore in the cluster the stack deploys to: a CanaryRollout per stack, and a Lease.

Per stack, in one namespace:
- CanaryRollout `<name>` (group rollouts.canary.dev): spec.stack is the stack's real name;
  status holds the journal, the last `HISTORY_LIMIT` finished rollouts and the requests,
  with the columns `kubectl get canaryrollouts -A` shows. Its Events tell the story.
- ConfigMaps `canaryrollout-<name>-history-NNNN`: older history, gzip'd JSON lines.
- Lease `canaryrollout-<name>`: the one-driver lock, renewed from a thread.

Every status write is a compare-and-swap on resourceVersion. A journal write by the lock's
holder is fenced: it checks the Lease still names it and that status.lockToken is still its
token (a new holder writes its own there before it does anything), so a driver whose lock
was taken can never overwrite the new holder's state, whatever the clocks say.

People request approve / promote / abort with `rollout approve` (and the rest), or
`kubectl annotate canaryrollout <name> rollouts.canary.dev/request=approve` (optionally
`rollouts.canary.dev/reason=...`, `rollouts.canary.dev/by=...`): the annotation is turned
into a queued request with an id of its own, which then moves into status.requests.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from rollout.adapters.cluster_lease import LeaseLock, LeaseTimings, driver_identity
from rollout.adapters.cluster_resource import (
    ACTIONS,
    APPROVAL_PREFIX,
    APPROVALS_KEPT,
    ARCHIVE_KEY,
    ARCHIVE_SHARD_BUDGET,
    CRD_NAME,
    GROUP,
    HISTORY_LIMIT,
    KIND,
    MANAGED_BY,
    MANAGER,
    PLURAL,
    RELEASE_LOG_KEPT,
    REQUEST_ANNOTATION,
    REQUEST_KEYS,
    ROLLOUT_LABEL,
    STACK_ANNOTATION,
    VERSION,
    annotated_request,
    api_error,
    archive_name,
    bounded_requests,
    crd_manifest,
    decode_archive,
    encode_archive,
    event_body,
    from_wire,
    ids_in,
    journal_of,
    lease_name,
    merged_requests,
    new_object,
    object_name,
    queued_key,
    queued_requests,
    release_approvals_in,
    resource_missing,
    rollouts_in,
    save_events,
    split_history,
    state_to_wire,
    to_wire,
    transient,
    with_journal,
)
from rollout.core.errors import DriverBusy, InfrastructureError, InvalidInput, LockLost
from rollout.core.state import RolloutState, unfinished_rollout_id

_log = logging.getLogger(__name__)

_API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
_BACKOFF = (0.2, 0.5, 1.0)  # pauses between tries of a call that failed transiently
_CONFLICTS = 16  # compare-and-swap rounds before giving up
_CONFLICT_BACKOFF = 0.02  # seconds: the pause after the k-th lost round is up to k times this
MERGE_PATCH = "application/merge-patch+json"


def _conflict_rounds() -> Iterator[int]:
    """Compare-and-swap rounds. After a lost round comes a short random pause (as client-go's
    RetryOnConflict does), so that writers which keep colliding fall out of step: without it,
    two approvers patching in a loop made a journal save lose 8 rounds in a row."""
    for attempt in range(_CONFLICTS):
        if attempt:
            time.sleep(random.uniform(0, _CONFLICT_BACKOFF * attempt))
        yield attempt


# What a status write must check first: the journal (fenced while holding the lock), the
# lock's own token (only the Lease), or nothing (requests, which merge).
Guard = Literal["journal", "lease", "none"]
Status = dict[str, Any]


class ClusterStore:
    def __init__(self, api: client.ApiClient, *, stack: str, namespace: str,
                 service: str | None = None,
                 timings: LeaseTimings | None = None, identity: str | None = None,
                 history_limit: int = HISTORY_LIMIT, request_timeout: float = 10.0) -> None:
        self.api, self.stack, self.namespace, self.service = api, stack, namespace, service
        self.subject = f"service {service} of stack {stack}" if service else f"stack {stack}"
        # One CanaryRollout per service of a stack, e.g. `prod-checkout`.
        self.name = object_name(f"{stack}-{service}" if service else stack)
        self.history_limit = history_limit
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._timeout = request_timeout
        self._lock = LeaseLock(api, namespace=namespace, name=lease_name(self.name),
                               stack=stack, rollout=self.name, subject=self.subject,
                               timings=timings or LeaseTimings(),
                               identity=identity or driver_identity(),
                               request_timeout=request_timeout)

    @classmethod
    def from_kubeconfig(cls, *, stack: str, namespace: str, kubeconfig: str | None = None,
                        context: str | None = None, **options: Any) -> ClusterStore:
        return cls(api_client(kubeconfig, context), stack=stack, namespace=namespace, **options)

    @property
    def where(self) -> str:
        return f"{KIND} {self.namespace}/{self.name}"

    # -- the journal ------------------------------------------------------------------

    def load(self) -> RolloutState | None:
        obj = self._get()
        if obj is None:
            return None
        try:
            return journal_of(obj.get("status") or {})
        except (ValueError, TypeError, KeyError) as err:
            raise InvalidInput(
                f"the rollout journal in {self.where} ({self.subject}) is unreadable: {err}",
                hint=f"inspect it with `kubectl get {PLURAL} -n {self.namespace} {self.name} "
                     "-o yaml`; clear status.journal only if the stack is known to be as "
                     "before the rollout") from err

    def save(self, state: RolloutState) -> None:
        before, after = self._update_status("saving the rollout journal",
                                            lambda status: with_journal(status, state),
                                            guard="journal")
        if after is not None:
            try:
                previous = journal_of(before.get("status") or {})
            except (ValueError, TypeError, KeyError):
                previous = None  # an unreadable journal that this save replaced
            for reason, message, warning in save_events(previous, state):
                self._event(after, reason, message, warning=warning)

    # -- history ----------------------------------------------------------------------

    def archive(self, state: RolloutState) -> bool:
        entry = state_to_wire(state)
        archived: set[str] | None = None

        def appended(status: Status) -> Status | None:
            nonlocal archived
            recent = list(status.get("history") or [])
            if state.rollout_id in ids_in(recent):
                return None
            if archived is None:
                archived = ids_in(self._archived())
            if state.rollout_id in archived:
                return None
            kept, older = split_history([*recent, entry], limit=self.history_limit)
            if older:
                # The archive first: a crash in between leaves a rollout in both, which
                # history() reads once, rather than in neither.
                self._append_archive(older)
            return {**status, "history": kept, "archived": int(status.get("archived") or 0)
                    + len(older)}

        _, after = self._update_status("recording the finished rollout in history", appended,
                                       guard="journal")
        return after is not None

    def history(self) -> list[RolloutState]:
        obj = self._get()
        recent = list(((obj or {}).get("status") or {}).get("history") or [])
        return rollouts_in([*self._archived(), *recent], where=f"the history of {self.where}")

    # -- requests ---------------------------------------------------------------------

    def request(self, action: str, *, rollout_id: str | None = None, by: str = "",
                reason: str = "") -> dict[str, Any]:
        if rollout_id is None:
            rollout_id = unfinished_rollout_id(self.load(), stack=self.stack, action=action)
        elif self._get() is None:
            self._create()
        entry = _entry(action, rollout_id=rollout_id, by=by or _person(), reason=reason)
        # A key of its own, added by a merge patch: no other request can overwrite it.
        self._call(f"queueing the {action} request", self._objects.patch_namespaced_custom_object,
                   GROUP, VERSION, self.namespace, PLURAL, self.name,
                   {"metadata": {"annotations": {queued_key(entry["id"]): json.dumps(entry)}}},
                   _content_type=MERGE_PATCH)
        return entry

    # -- releases onto this stack ------------------------------------------------------

    def approve_release(self, version: str, *, by: str = "") -> dict[str, Any]:
        obj = self._get() or self._create()
        entry = {"version": version, "by": by or _person(), "at": time.time()}
        kept = release_approvals_in(_annotations(obj))
        # Bounded: the oldest beyond APPROVALS_KEPT go in the same patch.
        dropped = [key for key, _ in kept[:max(0, len(kept) + 1 - APPROVALS_KEPT)]]
        annotations: dict[str, str | None] = {key: None for key in dropped}
        annotations[f"{APPROVAL_PREFIX}{uuid.uuid4().hex[:12]}"] = json.dumps(entry)
        self._call(f"recording the approval of {version}",
                   self._objects.patch_namespaced_custom_object,
                   GROUP, VERSION, self.namespace, PLURAL, self.name,
                   {"metadata": {"annotations": annotations}}, _content_type=MERGE_PATCH)
        return entry

    def release_approvals(self) -> list[dict[str, Any]]:
        obj = self._get()
        return [] if obj is None else [entry for _, entry in
                                       release_approvals_in(_annotations(obj))]

    def log_release(self, record: dict[str, Any]) -> None:
        def appended(status: Status) -> Status:
            kept = [*(status.get("releases") or []), to_wire(record)][-RELEASE_LOG_KEPT:]
            return {**status, "releases": kept}

        self._update_status("recording the release", appended, guard="none")

    def release_log(self) -> list[dict[str, Any]]:
        obj = self._get()
        entries = [] if obj is None else (obj.get("status") or {}).get("releases") or []
        return [from_wire(entry) for entry in entries if isinstance(entry, dict)]

    def requests(self) -> list[dict[str, Any]]:
        obj = self._get()
        if obj is None:
            return []
        if annotated_request(_annotations(obj)) is not None:
            obj = self._take_annotated_request() or obj
        queued = queued_requests(_annotations(obj))
        listed = list((obj.get("status") or {}).get("requests") or [])
        if queued:
            try:
                self._move_queued(queued)
            except InfrastructureError as err:
                # They stay queued, listed and with the same ids; a later call moves them.
                _log.info("queued requests of %s stay queued for now: %s", self.where, err)
        return merged_requests(listed, queued)

    def _take_annotated_request(self) -> Status | None:
        """Turns `rollouts.canary.dev/request=<action>` into a queued request with an id, in
        one compare-and-swap, so two readers never make two requests of one annotation."""
        for _ in _conflict_rounds():
            obj = self._get()
            raw = annotated_request(_annotations(obj or {}))
            if obj is None or raw is None:
                return obj
            action, by, reason = raw
            status = obj.get("status") or {}
            annotations: dict[str, str | None] = {
                key: None for key in REQUEST_KEYS if key in _annotations(obj)}
            entry = None
            if action in ACTIONS:
                journal = status.get("journal") or {}
                entry = _entry(action, rollout_id=str(journal.get("rollout_id") or ""), by=by,
                               reason=reason)
                annotations[queued_key(entry["id"])] = json.dumps(entry)
            patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"],
                                  "annotations": annotations}}
            try:
                taken: Status = self._call(
                    "taking the request annotation", self._objects.patch_namespaced_custom_object,
                    GROUP, VERSION, self.namespace, PLURAL, self.name, patch,
                    _content_type=MERGE_PATCH, passthrough=(409,))
            except ApiException:
                continue  # someone else wrote first: look again
            if entry is None:
                self._event(taken, "IgnoredRequest", f"ignored {REQUEST_ANNOTATION}={action!r}: "
                            "use one of " + ", ".join(ACTIONS), warning=True)
            return taken
        return None

    def _move_queued(self, queued: list[dict[str, Any]]) -> None:
        def added(status: Status) -> Status | None:
            listed = list(status.get("requests") or [])
            ids = {entry.get("id") for entry in listed}
            new = [entry for entry in queued if entry["id"] not in ids]
            if not new:
                return None
            current = (status.get("journal") or {}).get("rollout_id")
            return {**status, "requests": bounded_requests([*listed, *new], current=current)}

        self._update_status("moving queued requests into the status", added, guard="none")
        self._call("removing moved requests", self._objects.patch_namespaced_custom_object,
                   GROUP, VERSION, self.namespace, PLURAL, self.name,
                   {"metadata": {"annotations": {queued_key(entry["id"]): None
                                                 for entry in queued}}},
                   _content_type=MERGE_PATCH)

    # -- the lock ---------------------------------------------------------------------

    def acquire(self) -> None:
        token = self._lock.acquire()
        try:
            # From now on a driver that held the lock before can write nothing here.
            self._update_status("taking the rollout lock",
                                lambda status: {**status, "lockToken": token}, guard="lease")
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        self._lock.release()

    def refuse_if_busy(self) -> None:
        self._lock.refuse_if_busy()

    def driver_running(self) -> bool:
        return self._lock.held or self._lock.holder() is not None

    def holder(self) -> str | None:
        return self._lock.holder()

    def check_held(self) -> None:
        self._lock.check_held()

    # -- writing the status -----------------------------------------------------------

    def _update_status(self, doing: str, change: Callable[[Status], Status | None], *,
                       guard: Guard) -> tuple[Status, Status | None]:
        """Reads the object (creating it when missing), applies `change` to its status and
        writes that back if the object is still as read; re-reads and re-applies on a
        conflict. Returns the object as read and as written (None: `change` left it)."""
        for _ in _conflict_rounds():
            self._guard(guard)
            obj = self._get() or self._create()
            status = obj.get("status") or {}
            if guard == "journal" and self._lock.held and status.get("lockToken") != \
                    self._lock.token:
                raise LockLost(
                    f"another driver took the rollout lock of {self.subject} and wrote "
                    f"to {self.where}", hint="stop: that driver now drives the stack")
            changed = change(status)
            if changed is None:
                return obj, None
            try:
                written: Status = self._call(
                    doing, self._objects.replace_namespaced_custom_object_status,
                    GROUP, VERSION, self.namespace, PLURAL, self.name,
                    {**obj, "status": changed}, passthrough=(409,))
            except ApiException:
                continue  # written by someone else since it was read
            return obj, written
        raise InfrastructureError(
            f"{doing} on {self.where} kept conflicting with other writers ({_CONFLICTS} tries)",
            hint="another process writes the object in a loop: find it (`kubectl get "
                 f"{PLURAL} -n {self.namespace} {self.name} --show-managed-fields -o yaml`)")

    def _guard(self, guard: Guard) -> None:
        if guard == "none":
            return
        if self._lock.held:
            self._lock.check_held()
            seen = self._lock.seen()
            if seen is None or (seen.holder, seen.token) != (self._lock.identity,
                                                             self._lock.token):
                raise LockLost(
                    f"the rollout lock of {self.subject} is now held by "
                    f"{seen.holder if seen and seen.holder else 'nobody'}, not this driver",
                    hint="stop: another driver may now drive the stack")
            return
        if guard == "journal":
            seen = self._lock.seen()
            if seen is not None and not seen.free:
                raise DriverBusy(
                    f"another rollout driver ({seen.holder}) holds the lock of stack "
                    f"{self.stack}: only it writes the journal",
                    hint="watch it with `rollout status`, or stop it with `rollout abort`")
            return
        raise LockLost(f"this driver does not hold the rollout lock of {self.subject}",
                       hint="take it first (`acquire`)")

    # -- the objects ------------------------------------------------------------------

    def _get(self) -> Status | None:
        try:
            obj: Status = self._call(
                f"reading {self.where}", self._objects.get_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, self.name, passthrough=(404,))
        except ApiException as err:
            if resource_missing(err):
                raise api_error(err, doing=f"reading {self.where}",
                                server=self._server) from err
            return None
        found = obj.get("spec", {}).get("stack")
        if found != self.stack:
            raise InfrastructureError(
                f"{self.where} belongs to stack {found!r}, not {self.stack!r}",
                hint="two stack names map to one object name: keep one of the stacks' state "
                     "in another namespace")
        return obj

    def _create(self) -> Status:
        body = new_object(stack=self.stack, name=self.name, namespace=self.namespace,
                          service=self.service)
        try:
            created: Status = self._call(
                f"creating {self.where}", self._objects.create_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, body, passthrough=(404, 409))
            return created
        except ApiException as err:
            if err.status == 409:
                found = self._get()
                if found is not None:
                    return found
            if err.status == 404 and not resource_missing(err):
                raise InfrastructureError(
                    f"namespace {self.namespace} does not exist on the cluster at "
                    f"{self._server}, so the rollout state of {self.subject} cannot be "
                    "kept there", hint="create the namespace, or keep the state in another "
                    "one") from err
            raise api_error(err, doing=f"creating {self.where}", server=self._server) from err

    def _call(self, doing: str, method: Callable[..., Any], *args: Any,
              passthrough: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """One API call, tried again after a transient failure; any failure as the project's
        error, but for the statuses in `passthrough`, raised as they are for the caller."""
        for pause in (*_BACKOFF, None):
            try:
                return method(*args, _request_timeout=self._timeout, **kwargs)
            except ApiException as err:
                if err.status in passthrough:
                    raise
                failure: Exception = err
            except (urllib3.exceptions.HTTPError, OSError) as err:
                failure = err
            if pause is None or not transient(failure):
                raise api_error(failure, doing=doing, server=self._server) from failure
            time.sleep(pause)
        raise AssertionError("unreachable")

    @property
    def _server(self) -> str:
        return str(self.api.configuration.host)

    # -- the history archive ----------------------------------------------------------

    def _archive_maps(self) -> list[Any]:
        found = self._call(
            "reading the history archive", self._core.list_namespaced_config_map,
            self.namespace, label_selector=f"{ROLLOUT_LABEL}={self.name}")
        return sorted(found.items or [], key=lambda item: item.metadata.name)

    def _archived(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for item in self._archive_maps():
            data = (item.data or {}).get(ARCHIVE_KEY)
            if data:
                entries.extend(decode_archive(data, where=f"ConfigMap {item.metadata.name}"))
        return entries

    def _append_archive(self, entries: list[dict[str, Any]]) -> None:
        for _ in _conflict_rounds():
            maps = self._archive_maps()
            old = {item.metadata.name: decode_archive(
                (item.data or {}).get(ARCHIVE_KEY) or "") for item in maps}
            known = set().union(*(ids_in(found) for found in old.values()))
            new = [entry for entry in entries if str(entry.get("rollout_id")) not in known]
            if not new:
                return
            last = maps[-1] if maps else None
            shard = len(maps)
            body_entries = new
            if last is not None:
                joined = [*old[last.metadata.name], *new]
                if len(encode_archive(joined)) * 3 // 4 <= ARCHIVE_SHARD_BUDGET:
                    shard, body_entries = shard - 1, joined
            try:
                self._write_archive(shard, body_entries,
                                    last if shard == len(maps) - 1 else None)
            except ApiException:
                continue  # another writer changed the archive: read it again
            return
        raise InfrastructureError(f"writing the history archive of {self.where} kept "
                                  "conflicting with other writers")

    def _write_archive(self, shard: int, entries: list[dict[str, Any]], current: Any) -> None:
        name = archive_name(self.name, shard)
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": {MANAGED_BY: MANAGER, ROLLOUT_LABEL: self.name},
                         "annotations": {STACK_ANNOTATION: self.stack}},
            "data": {ARCHIVE_KEY: encode_archive(entries)},
        }
        doing = f"writing the history archive ConfigMap {self.namespace}/{name}"
        if current is None:
            self._call(doing, self._core.create_namespaced_config_map, self.namespace, body,
                       passthrough=(409,))
            return
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        self._call(doing, self._core.replace_namespaced_config_map, name, self.namespace, body,
                   passthrough=(409,))

    # -- events -----------------------------------------------------------------------

    def _event(self, obj: Status, reason: str, message: str, *, warning: bool) -> None:
        """Best effort: an Event that cannot be written never fails the write it tells of."""
        body = event_body(obj, reason=reason, message=message, warning=warning,
                          now=time.time(), instance=self._lock.identity)
        try:
            self._objects.create_namespaced_custom_object(
                "events.k8s.io", "v1", self.namespace, "events", body,
                _request_timeout=self._timeout)
        except Exception as err:
            _log.warning("could not record the %s event on %s: %s", reason, self.where, err)


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client for the cluster in `kubeconfig` (default: $KUBECONFIG, ~/.kube/config, or the
    pod's service account), at `context` (default: the current one)."""
    try:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, persist_config=False)
        return api
    except Exception as err:  # the library raises anything at all for a malformed file
        if kubeconfig is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                return client.ApiClient()
            except ConfigException:
                pass
        raise InfrastructureError(
            f"could not load the kubeconfig {kubeconfig or '(default)'}"
            + (f" with context {context}" if context else "") + f": {err}",
            hint="set KUBECONFIG (or the stack's kubernetes:context) to the cluster the stack "
                 "deploys to") from err


def install_crd(api: client.ApiClient, *, timeout: float = 60.0) -> None:
    """Creates or replaces the CanaryRollout CRD and waits until the API server serves it."""
    # As plain JSON: the typed client would pass the schema through its own models.
    crds = client.CustomObjectsApi(api)
    where = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    manifest = crd_manifest()
    try:
        for _ in _conflict_rounds():
            try:
                crds.create_cluster_custom_object(*where, manifest, _request_timeout=30)
                break
            except ApiException as err:
                if err.status != 409:
                    raise
            current: Status = crds.get_cluster_custom_object(  # type: ignore[assignment]
                *where, CRD_NAME, _request_timeout=30)
            replacement = {**manifest, "metadata": {
                **manifest["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            try:
                crds.replace_cluster_custom_object(*where, CRD_NAME, replacement,
                                                   _request_timeout=30)
                break
            except ApiException as err:
                if err.status != 409:
                    raise
        deadline = time.monotonic() + timeout
        while True:
            found: Status = crds.get_cluster_custom_object(  # type: ignore[assignment]
                *where, CRD_NAME, _request_timeout=30)
            conditions = {c.get("type"): c for c in (found.get("status") or {}).get(
                "conditions") or []}
            if (conditions.get("Established") or {}).get("status") == "True":
                return
            if time.monotonic() > deadline:
                said = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('message', '')}"
                                 .strip() for c in conditions.values()) or "no conditions yet"
                raise InfrastructureError(
                    f"the CRD {CRD_NAME} was not Established within {timeout:g}s ({said})",
                    hint="check the API server's log; then run `rollout install` again")
            time.sleep(0.2)
    except _API_ERRORS as err:
        raise api_error(err, doing=f"installing the CRD {CRD_NAME}",
                        server=str(api.configuration.host)) from err


def _annotations(obj: Status) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _person() -> str:
    return driver_identity().rpartition(":")[0]


def _entry(action: str, *, rollout_id: str, by: str, reason: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:12], "rollout_id": rollout_id, "action": action,
            "by": by, "at": time.time(), "reason": reason}
