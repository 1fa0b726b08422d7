"""The CanaryRollout resource as plain data: CRD, names, status, archive, RBAC, API errors."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from rollout.analysis.wording import metrics_line
from rollout.core.errors import InfrastructureError, InvalidInput
from rollout.core.gates import is_release_approval
from rollout.core.state import Phase, RolloutState

_log = logging.getLogger(__name__)

GROUP = "rollouts.canary.dev"
VERSION = "v1alpha1"
KIND = "CanaryRollout"
PLURAL = "canaryrollouts"
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGER = "canary-rollout"

MANAGED_BY = "app.kubernetes.io/managed-by"
# On the Lease and the history ConfigMaps: the CanaryRollout they belong to.
ROLLOUT_LABEL = f"{GROUP}/rollout"
# On every object: the stack's real name (object names cannot hold '/' or capitals).
STACK_ANNOTATION = f"{GROUP}/stack"
# `kubectl annotate canaryrollout <name> rollouts.canary.dev/request=approve` (or abort,
# promote), optionally with rollouts.canary.dev/reason=... and rollouts.canary.dev/by=...
REQUEST_ANNOTATION = f"{GROUP}/request"
REASON_ANNOTATION = f"{GROUP}/reason"
BY_ANNOTATION = f"{GROUP}/by"
# A request turned into an entry with an id, waiting to move into status.requests.
REQUEST_KEYS = (REQUEST_ANNOTATION, REASON_ANNOTATION, BY_ANNOTATION)
QUEUED_PREFIX = f"{GROUP}/queued-"
# A recorded release approval: `<prefix><id>` = {"version", "by", "at"}; approvers write it.
APPROVAL_PREFIX = f"{GROUP}/release-approval-"
APPROVALS_KEPT = 20
RELEASE_LOG_KEPT = 100
# On the Lease: the holding store's own token, so two stores of one process never share it.
TOKEN_ANNOTATION = f"{GROUP}/holder-token"
ARCHIVE_KEY = "history.jsonl.gz.base64"

ACTIONS = ("approve", "promote", "abort")
HISTORY_LIMIT = 20
# Serialized size of status.history at most; older entries go to the archive first.
HISTORY_BUDGET = 256 * 1024
# Compressed bytes per archive ConfigMap (base64 makes it 4/3 of that; the limit is 1 MiB).
ARCHIVE_SHARD_BUDGET = 512 * 1024
# status.requests keeps every request of the current rollout and at most this many others.
OTHER_REQUESTS_KEPT = 50

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HASHED = re.compile(r"-[0-9a-f]{10}$")


# -- names --------------------------------------------------------------------------------

def object_name(stack: str) -> str:
    """The CanaryRollout's name for a stack: the stack name itself when it is a plain DNS
    label, else a slug of it and a hash of the real name (`org/shop/Prod.eu` ->
    `org-shop-prod-eu-<10 hex>`), so names stay readable, valid and distinct."""
    if len(stack) <= 63 and _DNS_LABEL.match(stack) and not _HASHED.search(stack):
        return stack
    slug = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-")[:40].rstrip("-") or "stack"
    return f"{slug}-{hashlib.sha256(stack.encode()).hexdigest()[:10]}"


def lease_name(name: str) -> str:
    return f"canaryrollout-{name}"


def archive_name(name: str, shard: int) -> str:
    return f"canaryrollout-{name}-history-{shard:04d}"


# -- the CRD ------------------------------------------------------------------------------

def _column(name: str, kind: str, path: str, description: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, "description": description}


def _open_object(description: str) -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "description": description}


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition of CanaryRollout, as `rollout install` applies it."""
    text = {"type": "string"}
    status = {
        "type": "object",
        "description": "Written only by the rollout driver (rollout.adapters.cluster_store).",
        "properties": {
            "phase": text, "step": text, "weight": {"type": "integer"},
            "candidate": text, "stable": text, "lastVerdict": text, "outcome": text,
            "reason": text, "rolloutId": text,
            "startedAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "lockToken": {**text, "description": "The lock holder that may write the journal."},
            "journal": _open_object("The current (or last) rollout's whole state."),
            "history": {"type": "array", "description": "The last finished rollouts, oldest "
                        "first; older ones are in the ConfigMaps canaryrollout-<name>-history-*",
                        "items": _open_object("A finished rollout.")},
            "archived": {"type": "integer", "description": "Rollouts moved to the archive."},
            "releases": {"type": "array", "description": "Audit records of the latest releases "
                         "onto this stack (`rollout release`): gates, outcome, forced",
                         "items": _open_object("A release")},
            "requests": {"type": "array", "description": "approve / promote / abort requests",
                         "items": {**_open_object("A request"), "required": ["id", "action"],
                                   "properties": {"id": text, "action": text,
                                                  "rollout_id": text, "by": text,
                                                  "reason": text, "at": {"type": "number"}}}},
        },
    }
    schema = {
        "type": "object",
        "description": "The canary rollouts of one service of a stack: journal, history and "
                       "requests. "
                       "Request one with `kubectl annotate canaryrollout <name> "
                       f"{REQUEST_ANNOTATION}=approve` (or promote, abort).",
        "properties": {
            "apiVersion": text, "kind": text, "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["stack"],
                     "properties": {"stack": {"type": "string", "minLength": 1,
                                              "description": "The Pulumi stack's name."},
                                    "service": {"type": "string",
                                                "description": "The canary service (its "
                                                               "config namespace)."}}},
            "status": status,
        },
    }
    columns = [
        _column("Stack", "string", ".spec.stack", "The Pulumi stack"),
        _column("Service", "string", ".spec.service", "The canary service"),
        _column("Phase", "string", ".status.phase", "Phase of the current or last rollout"),
        _column("Step", "string", ".status.step", "Step reached, of all steps"),
        _column("Weight", "integer", ".status.weight", "Canary traffic weight, percent"),
        _column("Candidate", "string", ".status.candidate", "The version rolled out"),
        _column("Stable", "string", ".status.stable", "The version before the rollout"),
        _column("Last Verdict", "string", ".status.lastVerdict", "The last analysis"),
        _column("Age", "date", ".status.startedAt", "Since the rollout started"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {MANAGED_BY: MANAGER}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": KIND.lower(), "shortNames": ["cro"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


def new_object(*, stack: str, name: str, namespace: str,
               service: str | None = None) -> dict[str, Any]:
    spec = {"stack": stack, **({"service": service} if service else {})}
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: MANAGER},
                     "annotations": {STACK_ANNOTATION: stack}},
        "spec": spec,
    }


# -- wire encoding ------------------------------------------------------------------------

_FLOAT_TAG = "$float"


def to_wire(value: Any) -> Any:
    """JSON the API server accepts: NaN and infinities (which JSON cannot spell) tagged."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {str(key): to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value


def from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_FLOAT_TAG}:
            return float(value[_FLOAT_TAG])
        return {key: from_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    return value


def state_to_wire(state: RolloutState) -> dict[str, Any]:
    wire: dict[str, Any] = to_wire(state.to_dict())
    return wire


def state_from_wire(entry: Any) -> RolloutState:
    """Raises ValueError, TypeError or KeyError for an entry that is not a rollout's state."""
    if not isinstance(entry, dict):
        raise TypeError(f"expected an object, found {type(entry).__name__}")
    return RolloutState.from_dict(from_wire(entry))


# -- status -------------------------------------------------------------------------------

def _timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def last_verdict(state: RolloutState) -> str:
    if not state.analyses:
        return ""
    last = state.analyses[-1]
    word = {True: "Pass", False: "Fail", None: "Inconclusive"}.get(last.get("passed"), "?")
    weight = last.get("weight")
    return f"{word} at {weight}%" if weight is not None else word


def summary(state: RolloutState) -> dict[str, Any]:
    """The status fields people read (printer columns), from the journaled state."""
    return {
        "phase": str(state.phase),
        "step": f"{max(state.step + 1, 0)}/{state.total_steps}",
        "weight": state.weight,
        "candidate": state.candidate,
        "stable": state.stable,
        "lastVerdict": last_verdict(state),
        "outcome": str(state.outcome) if state.outcome else "",
        "reason": state.reason[:1024],
        "rolloutId": state.rollout_id,
        "startedAt": _timestamp(state.started_at),
        "updatedAt": _timestamp(state.updated_at),
    }


def with_journal(status: dict[str, Any], state: RolloutState) -> dict[str, Any]:
    return {**status, **summary(state), "journal": state_to_wire(state)}


def journal_of(status: dict[str, Any]) -> RolloutState | None:
    entry = status.get("journal")
    return None if not entry else state_from_wire(entry)


# -- history ------------------------------------------------------------------------------

def split_history(entries: list[dict[str, Any]], *, limit: int = HISTORY_LIMIT,
                  budget: int = HISTORY_BUDGET) -> tuple[list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
    """(kept, overflow): the newest `limit` entries that fit in `budget` bytes stay in the
    status (at least the newest one); the older ones, oldest first, go to the archive."""
    kept: list[dict[str, Any]] = []
    size = 0
    for entry in reversed(entries):
        size += len(json.dumps(entry, separators=(",", ":")))
        if kept and (len(kept) >= limit or size > budget):
            break
        kept.append(entry)
    kept.reverse()
    return kept, entries[:len(entries) - len(kept)]


def encode_archive(entries: Iterable[dict[str, Any]]) -> str:
    """gzip'd JSON lines, base64: the text a ConfigMap's data holds."""
    lines = "".join(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
                    for entry in entries)
    return base64.b64encode(gzip.compress(lines.encode(), mtime=0)).decode()


def decode_archive(data: str, *, where: str = "the archive") -> list[dict[str, Any]]:
    """The entries of one archive value; a line that cannot be read is skipped and logged."""
    try:
        text = gzip.decompress(base64.b64decode(data)).decode()
    except (ValueError, OSError, EOFError) as err:
        _log.warning("skipping %s: it is not gzip'd JSON lines (%s)", where, err)
        return []
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as err:
            _log.warning("skipping unreadable line %d of %s (%s)", number, where, err)
            continue
        if isinstance(entry, dict):
            found.append(entry)
    return found


def rollouts_in(entries: Iterable[dict[str, Any]], *, where: str) -> list[RolloutState]:
    """The readable rollouts among `entries`, each once (by id, the first kept)."""
    seen: set[str] = set()
    found = []
    for entry in entries:
        try:
            state = state_from_wire(entry)
        except (ValueError, TypeError, KeyError) as err:
            _log.warning("skipping an unreadable rollout in %s (%s)", where, err)
            continue
        if state.rollout_id not in seen:
            seen.add(state.rollout_id)
            found.append(state)
    return found


def ids_in(entries: Iterable[dict[str, Any]]) -> set[str]:
    return {str(entry.get("rollout_id")) for entry in entries}


# -- requests -----------------------------------------------------------------------------

def _json_annotations(annotations: dict[str, str], prefix: str, what: str
                      ) -> list[tuple[str, Any]]:
    """(key, decoded value) of each annotation under `prefix`; an unreadable one is skipped
    with a warning naming `what` it should have been."""
    found = []
    for key, value in annotations.items():
        if key.startswith(prefix):
            try:
                found.append((key, json.loads(value)))
            except ValueError:
                _log.warning("skipping the unreadable %s %s", what, key)
    return found


def release_approvals_in(annotations: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(annotation key, approval) of each recorded release approval, oldest first."""
    found = [(key, entry) for key, entry in
             _json_annotations(annotations, APPROVAL_PREFIX, "release approval")
             if is_release_approval(entry)]
    return sorted(found, key=lambda pair: float(pair[1]["at"]))



def queued_key(request_id: str) -> str:
    return f"{QUEUED_PREFIX}{request_id}"


def queued_requests(annotations: dict[str, str]) -> list[dict[str, Any]]:
    """The requests waiting in annotations, oldest first; unreadable ones are skipped."""
    found = [entry for _, entry in
             _json_annotations(annotations, QUEUED_PREFIX, "queued request")
             if isinstance(entry, dict) and {"id", "rollout_id", "action"} <= set(entry)]
    return sorted(found, key=lambda entry: (entry.get("at", 0), entry["id"]))


def annotated_request(annotations: dict[str, str]) -> tuple[str, str, str] | None:
    """(action, by, reason) of a `kubectl annotate ... rollouts.canary.dev/request=<action>`,
    or None when there is none. The action is lower-cased and may not be valid."""
    action = annotations.get(REQUEST_ANNOTATION)
    if action is None:
        return None
    by = annotations.get(BY_ANNOTATION, "").strip() or "kubectl annotate"
    return action.strip().lower(), by, annotations.get(REASON_ANNOTATION, "").strip()


def merged_requests(listed: list[dict[str, Any]], queued: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """status.requests in their order, then the queued ones not moved there yet."""
    ids = {entry["id"] for entry in listed}
    return [*listed, *(entry for entry in queued if entry["id"] not in ids)]


def bounded_requests(entries: list[dict[str, Any]], *, current: str | None
                     ) -> list[dict[str, Any]]:
    """Every request of the current rollout, and the newest others up to a bound: another
    rollout's requests are only ever ignored by the driver."""
    others = [entry for entry in entries if entry.get("rollout_id") != current]
    dropped = {entry["id"] for entry in others[:-OTHER_REQUESTS_KEPT]} if len(
        others) > OTHER_REQUESTS_KEPT else set()
    return [entry for entry in entries if entry["id"] not in dropped]


# -- events -------------------------------------------------------------------------------

def phase_event(state: RolloutState) -> tuple[str, str, bool]:
    """(reason, message, warning) of the Event for the phase `state` entered."""
    message = state.events[-1]["message"] if state.events else (state.reason or str(state.phase))
    return str(state.phase), str(message), state.phase in (Phase.ROLLING_BACK, Phase.FAILED)


def verdict_event(analysis: dict[str, Any]) -> tuple[str, str, bool]:
    """(reason, message, warning) of the Event for one analysis: its verdict at its weight,
    with each metric's canary and primary values (the queries are in the journal)."""
    word = {True: "Passed", False: "Failed", None: "Inconclusive"}.get(
        analysis.get("passed"), "Inconclusive")
    values = metrics_line(analysis.get("metrics") or []) or str(analysis.get("reason") or "")
    where = f"at {analysis['weight']}%: " if analysis.get("weight") is not None else ""
    return f"Analysis{word}", f"{where}{values}", analysis.get("passed") is not True


def save_events(previous: RolloutState | None,
                state: RolloutState) -> list[tuple[str, str, bool]]:
    """The Events a journal save tells, oldest first: each verdict it adds to `previous` (the
    journal it replaces), then the phase it enters."""
    same = previous is not None and previous.rollout_id == state.rollout_id
    known = len(previous.analyses) if previous is not None and same else 0
    told = [verdict_event(a) for a in state.analyses[known:]]
    if not same or previous is None or previous.phase is not state.phase:
        told.append(phase_event(state))
    return told


def event_body(obj: dict[str, Any], *, reason: str, message: str, warning: bool, now: float,
               instance: str) -> dict[str, Any]:
    """An events.k8s.io/v1 Event about the CanaryRollout `obj`, as `kubectl describe
    canaryrollout` and `kubectl get events` show it."""
    meta = obj["metadata"]
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    note = message.encode()[:1024].decode(errors="ignore")  # the API's limit is 1 kB
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{int(now * 1e9):x}",
                     "namespace": meta["namespace"], "labels": {MANAGED_BY: MANAGER}},
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": f"{GROUP}/{MANAGER}",
        "reportingInstance": instance[:128],
        "action": "Rollout",
        "reason": reason[:128],
        "note": note,
        "type": "Warning" if warning else "Normal",
        "regarding": {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                      "namespace": meta["namespace"], "uid": meta.get("uid"),
                      "resourceVersion": meta.get("resourceVersion")},
    }


# -- errors from the API -----------------------------------------------------------------

INSTALL_HINT = "run `rollout install` once per cluster (it needs the right to create CRDs)"
RBAC_HINT = ("apply the canary-rollout-driver Role and RoleBinding in this namespace "
             "(`rollout rbac` prints them)")


def _status_of(err: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(err.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) and body.get("kind") == "Status" else {}


def resource_missing(err: ApiException) -> bool:
    """A 404 for the resource type itself (plain "404 page not found", no Status): the
    CanaryRollout CRD is not installed, as opposed to one object not existing."""
    return err.status == 404 and not _status_of(err)


def api_error(err: Exception, *, doing: str, server: str) -> InfrastructureError:
    """The project's error for a failed call to the API server at `server`."""
    if isinstance(err, ApiException):
        status = _status_of(err)
        said = status.get("message") or (err.body or "").strip()[:300] or err.reason or ""
        code = err.status or 0
        if code == 401:
            return InfrastructureError(
                f"the API server at {server} did not accept the credentials while {doing}: "
                f"{said}", hint="check the kubeconfig and its context (an expired token or "
                "certificate?)")
        if code == 403:
            return InfrastructureError(f"the API server at {server} forbade {doing}: {said}",
                                       hint=RBAC_HINT)
        if resource_missing(err):
            return InfrastructureError(
                f"the cluster at {server} has no {KIND} resource ({CRD_NAME}), needed for "
                f"{doing}", hint=INSTALL_HINT)
        if code == 413 or "too large" in said:
            return InfrastructureError(
                f"the API server at {server} refused {doing}: the object is too large ({said})",
                hint="the rollout's journal outgrew what one object holds (about 1.5 MiB); "
                     "report it, with `rollout status --output json`")
        if code == 429 or code >= 500:
            return InfrastructureError(
                f"the API server at {server} failed while {doing}: {code} {said}",
                hint="check the API server's health and retry (`rollout resume` continues a "
                     "rollout)")
        return InfrastructureError(f"the API server at {server} refused {doing}: {code} {said}")
    reason = getattr(err, "reason", None) or err
    return InfrastructureError(
        f"could not reach the API server at {server} while {doing}: {reason}",
        hint="check that it is up, and the server address and context in the kubeconfig")


def transient(err: Exception) -> bool:
    """Worth one more try: no answer, or an answer that says to try again."""
    if isinstance(err, ApiException):
        too_large = "too large" in (err.body or "")  # etcd's answer, a 500, never changes
        return (err.status or 0) in (429, 500, 502, 503, 504) and not too_large
    return isinstance(err, urllib3.exceptions.HTTPError | OSError)


# -- RBAC ---------------------------------------------------------------------------------

_SUBJECT_KINDS = {"user": "User", "group": "Group", "serviceaccount": "ServiceAccount"}


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _subject(text: str, namespace: str, *, flag: str) -> dict[str, str]:
    kind, _, rest = text.partition(":")
    canonical = _SUBJECT_KINDS.get(kind.lower())
    if canonical is None or not rest:
        raise InvalidInput(
            f"{flag} {text!r} is not a subject",
            hint="write user:<name>, group:<name> or serviceaccount:[<namespace>:]<name>")
    if canonical != "ServiceAccount":
        return {"kind": canonical, "apiGroup": "rbac.authorization.k8s.io", "name": rest}
    account_namespace, _, account = rest.rpartition(":")
    return {"kind": canonical, "name": account, "namespace": account_namespace or namespace}


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]
          ) -> dict[str, list[str]]:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def rbac_yaml(namespace: str, *, drivers: Sequence[str] = ("serviceaccount:canary-rollout",),
              approvers: Sequence[str] = ("group:canary-rollout-approvers",)) -> str:
    """The least a driver and an approver need in `namespace`, as YAML for `kubectl apply`.

    Drivers read and write the CanaryRollouts with their status, hold the Leases, write
    Events and the history archive ConfigMaps. Approvers read a CanaryRollout and patch its
    annotations (a request), and read its Lease (whether a driver runs, for `rollout abort`).
    """
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidInput(f"{namespace!r} is not a namespace name",
                           hint="use lowercase letters, digits and '-', at most 63, e.g. staging")
    driver_rules = [
        _rule([GROUP], [PLURAL], ["get", "list", "watch", "create", "update", "patch"]),
        _rule([GROUP], [f"{PLURAL}/status"], ["get", "update", "patch"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "update"]),
        _rule(["events.k8s.io"], ["events"], ["create"]),
        _rule([""], ["configmaps"], ["get", "list", "create", "update"]),
    ]
    approver_rules = [
        _rule([GROUP], [PLURAL], ["get", "list", "watch", "patch"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get"]),
    ]
    documents: list[dict[str, Any]] = []
    for role, rules, subjects, flag in (
        ("canary-rollout-driver", driver_rules, drivers, "driver"),
        ("canary-rollout-approver", approver_rules, approvers, "approver"),
    ):
        labels = {MANAGED_BY: MANAGER}
        documents.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": role, "namespace": namespace, "labels": labels},
                          "rules": rules})
        documents.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": namespace, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [_subject(subject, namespace, flag=flag) for subject in subjects],
        })
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text
