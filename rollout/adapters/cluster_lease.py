"""A stack's one-driver lock as a coordination.k8s.io/v1 Lease, renewed as client-go does."""

from __future__ import annotations

import datetime
import getpass
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.adapters.cluster_resource import (
    MANAGED_BY,
    MANAGER,
    ROLLOUT_LABEL,
    STACK_ANNOTATION,
    TOKEN_ANNOTATION,
    api_error,
)
from rollout.core.errors import DriverBusy, InvalidInput, LockLost

_log = logging.getLogger(__name__)

_API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
_LEASES = ("coordination.k8s.io", "v1", "leases")
BUSY_HINT = "watch it with `rollout status`, or stop it with `rollout abort`"


@dataclass(frozen=True)
class LeaseTimings:
    """client-go's leader-election timings: a holder renews every `retry_period` and stops
    acting once it could not renew for `renew_deadline`; another driver takes over only a
    lease not renewed for `duration` (the Lease's leaseDurationSeconds)."""

    duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise InvalidInput(
                f"lease timings duration={self.duration}s renew_deadline="
                f"{self.renew_deadline}s retry_period={self.retry_period}s are not in order",
                hint="use 0 < retry_period < renew_deadline < duration (client-go's "
                     "defaults: 2 s, 10 s, 15 s)")


def driver_identity() -> str:
    """`<user>@<host>:<pid>`: who holds a lease, as people read it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def _micro_time(moment: datetime.datetime) -> str:
    """A MicroTime as the API server parses it (RFC 3339, exactly six fraction digits)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _parse_time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return None  # a time nobody can read: the claim counts as run out


@dataclass(frozen=True)
class _Seen:
    """A Lease as read: who holds it, whether that claim has run out, and its version."""

    holder: str
    token: str
    acquired: datetime.datetime | None
    expired: bool
    renewed_ago: float | None
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, lease: dict[str, Any], now: datetime.datetime) -> _Seen:
        spec, meta = lease.get("spec") or {}, lease.get("metadata") or {}
        acquired = _parse_time(spec.get("acquireTime"))
        renewed = _parse_time(spec.get("renewTime")) or acquired
        ago = (now - renewed).total_seconds() if renewed is not None else None
        duration = int(spec.get("leaseDurationSeconds") or 0)
        return cls(holder=str(spec.get("holderIdentity") or ""),
                   token=(meta.get("annotations") or {}).get(TOKEN_ANNOTATION, ""),
                   acquired=acquired, expired=ago is None or ago > duration,
                   renewed_ago=ago, transitions=int(spec.get("leaseTransitions") or 0),
                   resource_version=str(meta.get("resourceVersion") or ""))

    @property
    def free(self) -> bool:
        return not self.holder or self.expired


class LeaseLock:
    """One store's hold on one Lease. `token` (also on the Lease) tells this holder apart
    from another store of the same process, which has the same identity."""

    def __init__(self, api: client.ApiClient, *, namespace: str, name: str, stack: str,
                 rollout: str, timings: LeaseTimings, identity: str,
                 request_timeout: float, subject: str | None = None) -> None:
        # Leases as plain JSON (the typed client rewrites MicroTime in a form the API server
        # rejects for whole seconds).
        self._leases = client.CustomObjectsApi(api)
        self._server = api.configuration.host
        self.namespace, self.name, self.stack, self.rollout = namespace, name, stack, rollout
        self.subject = subject or f"stack {stack}"
        self.timings, self.identity = timings, identity
        # A renewal must not outlast the time it has to succeed in.
        self._timeout = min(request_timeout, max(timings.renew_deadline / 2, 0.5))
        self.token = ""
        self._guard = threading.Lock()
        self._renewed_at = 0.0  # time.monotonic() when the last successful renewal started
        self._lost = ""
        self._last_error = ""
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- reading ----------------------------------------------------------------------

    def seen(self) -> _Seen | None:
        try:
            lease: dict[str, Any] = self._leases.get_namespaced_custom_object(  # type: ignore[assignment]
                *_LEASES[:2], self.namespace, _LEASES[2], self.name,
                _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 404:
                return None
            raise api_error(err, doing=self._doing("reading"), server=self._server) from err
        except _API_ERRORS as err:
            raise api_error(err, doing=self._doing("reading"), server=self._server) from err
        return _Seen.of(lease, _now())

    def holder(self) -> str | None:
        if self.held:
            return self.identity
        seen = self.seen()
        return None if seen is None or seen.free else seen.holder

    def refuse_if_busy(self) -> None:
        if self.held:
            return
        seen = self.seen()
        if seen is not None and not seen.free:
            raise self._busy(seen)

    @property
    def held(self) -> bool:
        return bool(self.token)

    # -- taking and giving back ---------------------------------------------------------

    def acquire(self) -> str:
        """Takes the lease (a free or expired one) and starts renewing it; returns the
        token. Raises DriverBusy naming a live holder."""
        if self.held:
            return self.token
        token = uuid.uuid4().hex
        for _ in range(3):
            seen = self.seen()
            if seen is not None and not seen.free:
                raise self._busy(seen)
            started = time.monotonic()
            try:
                self._write(token, seen, transitions=0 if seen is None else seen.transitions + 1)
            except ApiException as err:
                if err.status in (404, 409):
                    continue  # another driver moved first: look again
                raise api_error(err, doing=self._doing("taking"), server=self._server) from err
            except _API_ERRORS as err:
                raise api_error(err, doing=self._doing("taking"), server=self._server) from err
            if seen is not None and seen.holder:
                _log.warning("took over the expired lock of stack %s from %s (not renewed "
                             "for %.0fs)", self.stack, seen.holder, seen.renewed_ago or 0)
            self._start(token, started)
            return token
        seen = self.seen()
        if seen is not None and not seen.free:
            raise self._busy(seen)
        raise LockLost(f"could not take the rollout lock of {self.subject}: other drivers "
                       "kept changing its Lease", hint="retry in a few seconds")

    def release(self) -> None:
        """Stops renewing and frees the Lease if this holder still has it; never raises (an
        unreleased lease expires after its duration anyway)."""
        if not self.held:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.timings.retry_period + self._timeout + 1)
        token, self.token = self.token, ""
        try:
            seen = self.seen()
            if seen is not None and (seen.holder, seen.token) == (self.identity, token):
                self._write("", seen, transitions=seen.transitions, releasing=True)
        except Exception as err:  # the lease runs out on its own; say so, stop nothing
            _log.warning("could not free the rollout lock of stack %s (it expires within "
                         "%ss): %s", self.stack, self.timings.duration, err)

    def check_held(self) -> None:
        if not self.held:
            raise LockLost(f"this driver does not hold the rollout lock of {self.subject}",
                           hint="take it first (`acquire`)")
        with self._guard:
            lost, silent = self._lost, time.monotonic() - self._renewed_at
            last_error = self._last_error
        if lost:
            raise LockLost(lost, hint="another driver may now be driving the stack: stop, "
                                      "and check `rollout status`")
        if silent > self.timings.renew_deadline:
            raise LockLost(
                f"the rollout lock of {self.subject} was not renewed for {silent:.1f}s, "
                f"past the renew deadline of {self.timings.renew_deadline:g}s"
                + (f" ({last_error})" if last_error else ""),
                hint="another driver may take it over: stop, check the API server, and "
                     "`rollout resume`")

    # -- renewing ---------------------------------------------------------------------

    def _start(self, token: str, started: float) -> None:
        with self._guard:
            self.token, self._renewed_at, self._lost, self._last_error = token, started, "", ""
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_stopped, args=(self._stop,),
                                         name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def _renew_until_stopped(self, stop: threading.Event) -> None:
        while not stop.wait(self.timings.retry_period):
            started = time.monotonic()
            try:
                taken = self._renew_once()
            except Exception as err:  # recorded; the renew deadline decides when to give up
                failure = api_error(err, doing="renewing it", server=self._server)
                with self._guard:
                    self._last_error = f"last renewal failed: {failure.message}"
                taken = ""
            else:
                if not taken:
                    with self._guard:
                        self._renewed_at, self._last_error = started, ""
            with self._guard:
                if taken:
                    self._lost = taken
                elif time.monotonic() - self._renewed_at > self.timings.renew_deadline:
                    self._lost = (f"the rollout lock of {self.subject} could not be "
                                  f"renewed within the renew deadline of "
                                  f"{self.timings.renew_deadline:g}s ({self._last_error})")
                if self._lost:
                    _log.warning("%s", self._lost)
                    return

    def _renew_once(self) -> str:
        """Renews the lease; returns why it is not ours any more ("" when renewed)."""
        token = self.token  # a release may clear it meanwhile; never renew without it
        if not token:
            return ""
        try:
            lease: dict[str, Any] = self._leases.get_namespaced_custom_object(  # type: ignore[assignment]
                *_LEASES[:2], self.namespace, _LEASES[2], self.name,
                _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 404:
                return f"the Lease {self.namespace}/{self.name} of {self.subject} was deleted"
            raise
        seen = _Seen.of(lease, _now())
        if (seen.holder, seen.token) != (self.identity, token):
            return (f"the rollout lock of {self.subject} was taken over by "
                    f"{seen.holder or 'nobody (it was freed by hand)'}")
        # A 409 (someone wrote in between) fails this round; the next one reads again.
        self._write(token, seen, transitions=seen.transitions, renewing=True)
        return ""

    # -- writing ----------------------------------------------------------------------

    def _write(self, token: str, seen: _Seen | None, *, transitions: int,
               renewing: bool = False, releasing: bool = False) -> None:
        now = _micro_time(_now())
        annotations = {STACK_ANNOTATION: self.stack}
        if token:
            annotations[TOKEN_ANNOTATION] = token
        acquired = now
        if renewing and seen is not None and seen.acquired is not None:
            acquired = _micro_time(seen.acquired)
        spec: dict[str, Any] = {
            "holderIdentity": None if releasing else self.identity,
            "leaseDurationSeconds": 1 if releasing else self.timings.duration,
            "acquireTime": acquired, "renewTime": now, "leaseTransitions": transitions,
        }
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "labels": {MANAGED_BY: MANAGER, ROLLOUT_LABEL: self.rollout},
                         "annotations": annotations},
            "spec": spec,
        }
        if seen is None:
            self._leases.create_namespaced_custom_object(
                *_LEASES[:2], self.namespace, _LEASES[2], body, _request_timeout=self._timeout)
            return
        body["metadata"]["resourceVersion"] = seen.resource_version
        self._leases.replace_namespaced_custom_object(
            *_LEASES[:2], self.namespace, _LEASES[2], self.name, body,
            _request_timeout=self._timeout)

    def _busy(self, seen: _Seen) -> DriverBusy:
        ago = f", renewed {seen.renewed_ago:.0f}s ago" if seen.renewed_ago is not None else ""
        return DriverBusy(
            f"another rollout driver is running on {self.subject} ({seen.holder}{ago}; "
            f"Lease {self.namespace}/{self.name})", hint=BUSY_HINT)

    def _doing(self, verb: str) -> str:
        return f"{verb} the rollout lock of {self.subject} (Lease {self.namespace}/" \
               f"{self.name})"
