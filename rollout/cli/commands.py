"""The `rollout` command line: thin wrappers that print results and map errors to exit codes."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from rollout.cli import views
from rollout.core.errors import Aborted, RolloutError

console = Console(stderr=True)
out = Console()


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def fail(err: RolloutError) -> typer.Exit:
    console.print(f"[red]error:[/red] {err.message}")
    if err.hint:
        console.print(f"  [bold]fix:[/bold] {err.hint}")
    return typer.Exit(err.exit_code)


class _ErrorBoundary(TyperGroup):
    """The one error boundary: whatever a command raises leaves with the README's exit code
    and a message, never a traceback: a project error its own code and fix, Ctrl-C 4, anything
    unexpected 3. Click's own exits (usage errors, --help) pass through."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise
        except RolloutError as err:
            raise fail(err) from err
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]")
            raise typer.Exit(Aborted.exit_code) from None
        except Exception as err:
            console.print(f"[red]error:[/red] unexpected {type(err).__name__}: {err}")
            console.print("  [bold]fix:[/bold] this is a bug or an environment problem the "
                          "tool does not name yet; the message above says what failed")
            raise typer.Exit(3) from err


app = typer.Typer(cls=_ErrorBoundary, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Canary releases for Kubernetes on the Pulumi Automation API.")
lab_app = typer.Typer(no_args_is_help=True, help="The local lab: a real cluster and Prometheus.")
app.add_typer(lab_app, name="lab")
fleet_app = typer.Typer(no_args_is_help=True, help="Rollouts of many stacks at once.")
app.add_typer(fleet_app, name="fleet")


@lab_app.command("up")
def lab_up(
    output: OutputOption = Output.text,
    pod_ready_delay: Annotated[float | None, typer.Option(
        help="seconds a new pod takes to become Ready (plus up to 0.5 s at random); kept "
             "until changed [default: 1]", min=0, max=300)] = None,
) -> None:
    """Build the tools if needed and start the lab (a no-op when it is already up)."""
    from rollout.lab.lab import Lab

    lab = Lab()
    statuses = lab.up(progress=lambda msg: console.print(f"[cyan]lab[/cyan] {msg}"),
                      pod_ready_delay=pod_ready_delay)
    if output is Output.json:
        out.print_json(json.dumps(views.lab_json(statuses, env=lab.environment()), default=str))
        return
    out.print(views.lab_table(statuses))
    out.print(f"Kubernetes API: {lab.api_server_url}   Prometheus: {lab.prometheus_url}")
    out.print('Point kubectl and pulumi at it with:  eval "$(rollout lab env)"')


@lab_app.command("down")
def lab_down(
    wipe: Annotated[bool, typer.Option(help="also delete the lab's state directory")] = False,
) -> None:
    """Stop every process the lab started (by PID), optionally wiping its state."""
    from rollout.lab.lab import Lab

    stopped = Lab().down(wipe=wipe, progress=lambda msg: console.print(f"[cyan]lab[/cyan] {msg}"))
    if not stopped:
        console.print("lab: nothing was running")


@lab_app.command("status")
def lab_status(output: OutputOption = Output.text) -> None:
    """Report each lab component; exits 3 when any is not healthy."""
    from rollout.lab.components import UNSAFE_NO_FSYNC
    from rollout.lab.lab import Lab
    from rollout.lab.traffic import running_traffic

    lab = Lab()
    statuses = lab.status()
    traffic = [t.status() for t in running_traffic(lab.layout)]
    if output is Output.json:
        out.print_json(json.dumps({**views.lab_json(statuses, traffic=traffic),
                                   "pod_ready_delay_seconds": lab.pod_ready_delay(),
                                   "notes": [UNSAFE_NO_FSYNC]}, default=str))
    else:
        out.print(views.lab_table(statuses))
        for t in traffic:
            out.print(f"traffic {t.name}: {t.state} at {t.url}, weights {t.weights}, "
                      f"versions {t.backends}")
        out.print(f"pods become Ready {lab.pod_ready_delay():g}s after they start (kwok; "
                  "rollout lab up --pod-ready-delay changes it)", highlight=False)
        out.print(f"note: {UNSAFE_NO_FSYNC}", highlight=False)
    if not statuses or not all(s.healthy for s in statuses):
        raise typer.Exit(3)


@lab_app.command("traffic")
def lab_traffic(
    app_name: Annotated[str, typer.Option("--app", help="the service's app name")] = "demo",
    namespace: Annotated[str, typer.Option(help="its namespace")] = "lab",
    router: Annotated[str, typer.Option(help="istio or gateway-api")] = "istio",
    rps: Annotated[float, typer.Option(help="load generator rate (0: none)")] = 20.0,
    stop: Annotated[bool, typer.Option(help="stop this service's traffic")] = False,
) -> None:
    """Live traffic for a lab service: a data plane that follows its route's weights, exports
    Istio telemetry to the lab's Prometheus, and a steady load generator."""
    from rollout.lab.lab import Lab
    from rollout.lab.traffic import Traffic

    lab = Lab()
    traffic = Traffic(lab.layout, lab.ports, app=app_name, namespace=namespace,
                      router=router, rps=rps)
    if stop:
        traffic.stop()
        console.print(f"traffic for {namespace}/{app_name} stopped")
        return
    status = traffic.start()
    out.print(f"traffic for {namespace}/{app_name}: {status.state} at {traffic.url} "
              f"({rps:g} requests/s); stop with `rollout lab traffic --stop`")


@lab_app.command("env")
def lab_env() -> None:
    """Print shell exports for kubectl and pulumi (use with eval)."""
    from rollout.lab.lab import Lab

    env = Lab().environment()
    for key, value in env.items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")


StackOption = Annotated[str, typer.Option("--stack", "-s", help="the stack (environment)")]
ServiceOption = Annotated[str | None, typer.Option(
    "--service", help="the canary service (its config namespace); default: the stack's only one")]
ProjectOption = Annotated[Path | None, typer.Option(
    "--project-dir", envvar="CANARY_PROJECT_DIR", file_okay=False, exists=True,
    help="the Pulumi project's directory (default: the one holding the current directory)")]


ProgramOption = Annotated[str | None, typer.Option(
    "--program", envvar="CANARY_PROGRAM", help="module:function to run as the Pulumi program "
    "instead of the project's main (in the language host, fresh for every update)")]


EventsOption = Annotated[bool, typer.Option(
    "--json-events", hidden=True,
    help="progress as one JSON object per line on stderr (for `rollout fleet run`)")]


def _rollouts(stack: str, service: str | None = None, project_dir: Path | None = None, *,
              progress: bool = True, program: str | None = None, json_events: bool = False):
    from rollout.app.api import Rollouts
    from rollout.cli.progress import JsonProgress, ProgressPrinter

    printer = (JsonProgress() if json_events else ProgressPrinter(console)) if progress else None
    return Rollouts(stack=stack, service=service, project_dir=project_dir, on_progress=printer,
                    program=program)


def _finish(result, output: Output) -> None:
    if output is Output.json:
        out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        colour = "green" if result.exit_code == 0 else "red"
        out.print(f"[{colour}]{result.outcome}[/{colour}]: {result.reason}")
    raise typer.Exit(result.exit_code)


@app.command()
def run(
    stack: StackOption,
    version: Annotated[str, typer.Option("--version", "-v", help="image tag to roll out")],
    leave_paused: Annotated[bool, typer.Option(
        help="on SIGINT/SIGTERM leave the rollout where it is instead of reverting")] = False,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    program: ProgramOption = None,
    output: OutputOption = Output.text,
    json_events: EventsOption = False,
) -> None:
    """Roll VERSION out on STACK: canary, analysis between steps, promote or revert. Only the
    service's own resources are updated."""
    result = _rollouts(stack, service, project_dir, program=program,
                       json_events=json_events).run(version, leave_paused=leave_paused)
    _finish(result, output)


@fleet_app.command("run")
def fleet_run(
    stacks: Annotated[str | None, typer.Option(
        help="comma-separated stacks to roll VERSION out on, e.g. shop-eu,shop-us")] = None,
    version: Annotated[str | None, typer.Option(
        "--version", "-v", help="the image tag for every stack of --stacks")] = None,
    service: ServiceOption = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", dir_okay=False, exists=True,
        help="a YAML plan: `rollouts:` a list of {stack, version, service?}")] = None,
    max_parallel: Annotated[int, typer.Option(
        min=1, help="at most N rollouts at a time; the others wait their turn")] = 4,
    stop_on_failure: Annotated[bool, typer.Option(
        help="start no new rollout once one has failed (running ones finish)")] = False,
    project_dir: ProjectOption = None,
    program: ProgramOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Roll out several stacks at once, each with its own driver, state and lock; exits with
    the worst rollout's code (3 > 2 > 4 > 1 > 0)."""
    import yaml

    from rollout.app.fleet import Fleet
    from rollout.cli.fleet_view import FleetDisplay, summary_table
    from rollout.core.errors import InvalidInput
    from rollout.core.fleet import plan_from_file, plan_from_flags

    if (file is None) == (stacks is None):
        raise InvalidInput("give either --stacks (with --version) or --file",
                           hint="e.g. rollout fleet run --stacks a,b --version v2")
    if file is not None:
        if version is not None or service is not None:
            raise InvalidInput("--version and --service go with --stacks; a --file plan "
                               "names them per rollout", hint="drop them, or drop --file")
        try:
            data = yaml.safe_load(file.read_text())
        except yaml.YAMLError as err:
            raise InvalidInput(f"{file} is not YAML: {err}", hint="fix the file") from None
        entries = plan_from_file(data, source=str(file))
    else:
        if version is None:
            raise InvalidInput("--stacks needs --version", hint="add --version v2")
        entries = plan_from_flags(stacks or "", version, service)
    with FleetDisplay(console) as display:
        fleet = Fleet(entries, project_dir=project_dir, program=program,
                      max_parallel=max_parallel, stop_on_failure=stop_on_failure,
                      on_update=display)
        result = fleet.run()
    if output is Output.json:
        out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        out.print(summary_table(result))
    raise typer.Exit(result.exit_code)


@app.command()
def resume(stack: StackOption, service: ServiceOption = None, project_dir: ProjectOption = None,
           program: ProgramOption = None, output: OutputOption = Output.text) -> None:
    """Continue an unfinished rollout (after a crash, a kill or a paused signal)."""
    result = _rollouts(stack, service, project_dir, program=program).resume()
    _finish(result, output)


@app.command()
def abort(
    stack: StackOption,
    reason: Annotated[str, typer.Option(help="why; shown in the outcome")] = "aborted by a person",
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    program: ProgramOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Revert the rollout now (asks the running driver, or reverts an orphaned one)."""
    result = _rollouts(stack, service, project_dir, program=program).abort(reason)
    if result is None:
        console.print("abort requested; the running driver reverts the stack now")
        return
    _finish(result, output)


@app.command()
def approve(stack: StackOption, service: ServiceOption = None,
            project_dir: ProjectOption = None) -> None:
    """Pass a manual pause of the running rollout."""
    rollout_id = _rollouts(stack, service, project_dir, progress=False).approve()
    console.print(f"approval queued for rollout {rollout_id}; the driver passes the pause "
                  "when it reaches it")


@app.command()
def promote(stack: StackOption, service: ServiceOption = None,
            project_dir: ProjectOption = None) -> None:
    """Promote the canary now, skipping the remaining steps."""
    rollout_id = _rollouts(stack, service, project_dir, progress=False).promote_now()
    console.print(f"promotion requested for rollout {rollout_id}")


@app.command()
def status(
    stack: StackOption,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="redraw live until the rollout ends; exit with its exit code")
    ] = False,
    every: Annotated[float, typer.Option(
        "--every", min=0.2, help="with --watch: seconds between reads of the state")] = 1.0,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Phase, step, weight, last analysis and history of the stack's rollout, read from its
    state store (so from any machine with access to it)."""
    rollouts = _rollouts(stack, service, project_dir, progress=False)
    if watch:
        _watch(rollouts, stack, every=every, output=output)
        return
    state = rollouts.status()
    history = rollouts.history()
    if output is Output.json:
        out.print_json(json.dumps(views.status_json(state, history[-10:]), default=str))
        return
    if state is None:
        out.print(f"no rollout has run on stack {stack}")
        return
    out.print(views.status_table(state))
    if history:
        out.print(views.history_table(history[-10:],
                                      reports_dir=rollouts.project_dir / "reports"))


def _watch(rollouts: Any, stack: str, *, every: float, output: Output) -> None:
    import time

    from rich.live import Live

    from rollout.app.api import RolloutResult

    where = rollouts.journal.where
    state = rollouts.status()
    # With --output json the live view goes to stderr, leaving stdout to the result.
    screen = console if output is Output.json else out
    with Live(views.watch_view(state, stack=stack, where=where), console=screen,
              auto_refresh=False) as live:
        while state is None or not state.phase.terminal:
            time.sleep(every)
            state = rollouts.status()
            live.update(views.watch_view(state, stack=stack, where=where), refresh=True)
    if output is Output.json:
        out.print_json(json.dumps(views.status_json(state, []), default=str))
    raise typer.Exit(RolloutResult.of(state).exit_code)


@app.command()
def history(
    stack: StackOption,
    limit: Annotated[int, typer.Option(min=1, help="the latest N rollouts")] = 20,
    reports_dir: Annotated[Path | None, typer.Option(
        "--reports-dir", help="where the rollouts' HTML reports are (default: the project's "
                              "reports/)")] = None,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Finished rollouts of the stack, oldest first: id, version, outcome, reason, start,
    duration and the path of the rollout's report when one was written; read from its state
    store."""
    rollouts = _rollouts(stack, service, project_dir, progress=False)
    past = rollouts.history()[-limit:]
    reports = reports_dir or rollouts.project_dir / "reports"
    if output is Output.json:
        out.print_json(json.dumps(views.history_json(past, reports_dir=reports)))
        return
    if not past:
        out.print(f"no finished rollout on stack {stack}")
        return
    out.print(views.history_table(past, reports_dir=reports))


@app.command()
def init(
    stack: StackOption,
    service: Annotated[str, typer.Option(
        "--service", help="the new service's name: its config namespace and default app")],
    version: Annotated[str, typer.Option(
        "--version", "-v", help="the version running today (stableVersion)")],
    image: Annotated[str | None, typer.Option(
        help="image repository without tag (leave out if the program sets it in code)")] = None,
    router: Annotated[str | None, typer.Option(
        help="istio or gateway-api (default: istio, or what the program sets)")] = None,
    namespace: Annotated[str | None, typer.Option(
        help="its namespace (default: default, or what the program sets)")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Add a canary service's config to the stack file of an existing project: its keys and
    a first analysis policy, each with a comment. Declare it in the program with
    `CanaryService("<service>")`, then `pulumi up`."""
    from rollout.app.scaffolding import init_service

    path, lines = init_service(stack, service, version=version, image=image, router=router,
                               namespace=namespace, project_dir=project_dir)
    out.print(f"added to {path}:", highlight=False)
    out.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    console.print(f"next: declare CanaryService({service!r}) in your program (from "
                  "rollout.pulumi import CanaryService), then `pulumi up` and "
                  f"`rollout run --stack {stack} --service {service} --version <new>`")


@app.command()
def install(
    kubeconfig: Annotated[str | None, typer.Option(
        help="the cluster's kubeconfig (default: $KUBECONFIG, else the lab's)")] = None,
    context: Annotated[str | None, typer.Option(help="its context (default: current)")] = None,
) -> None:
    """Install the CanaryRollout resource definition that stateStore: cluster keeps rollout
    state in (idempotent: run it again after an upgrade)."""
    from rollout.adapters.cluster_resource import CRD_NAME
    from rollout.adapters.cluster_store import api_client, install_crd
    from rollout.adapters.lab_layout import default_kubeconfig

    path = kubeconfig or default_kubeconfig()
    install_crd(api_client(path, context))
    console.print(f"{CRD_NAME} is installed and established; `rollout rbac --namespace N` "
                  "prints the roles drivers and approvers need")


@app.command()
def rbac(
    namespace: Annotated[str, typer.Option(help="the namespace the stack deploys to")],
    driver: Annotated[list[str] | None, typer.Option(
        help="who drives rollouts, e.g. serviceaccount:ci (repeatable)")] = None,
    approver: Annotated[list[str] | None, typer.Option(
        help="who may approve, promote or abort, e.g. group:release-managers")] = None,
) -> None:
    """Print a minimal Role and RoleBinding for drivers (read/write rollout state) and for
    approvers (requests only), for `kubectl apply -f -`."""
    from rollout.adapters.cluster_resource import rbac_yaml

    options = {k: tuple(v) for k, v in (("drivers", driver), ("approvers", approver)) if v}
    sys.stdout.write(rbac_yaml(namespace, **options))


@app.command()
def demo(
    rps: Annotated[float, typer.Option(help="load generator rate")] = 20.0,
    output: OutputOption = Output.text,
) -> None:
    """Lab up, deploy demo v1, roll out v2 (promoted) and v3 (caught, reverted), report."""
    import time as _time

    from rollout.cli.demo import run_demo
    from rollout.cli.progress import ProgressPrinter

    started = _time.monotonic()
    runs = run_demo(progress=ProgressPrinter(console), rps=rps,
                    say=lambda msg: console.print(f"[bold cyan]demo[/bold cyan] {msg}"))
    total = _time.monotonic() - started
    ok = all(r.as_expected for r in runs)
    if output is Output.json:
        out.print_json(json.dumps(views.demo_json(runs, total, ok=ok), default=str))
    else:
        views.show_demo(out, runs, total)
    raise typer.Exit(0 if ok else 1)


# -- environments: release what one stack proved onto the next (rollout.app.promotion) ----------


@app.command("release")
def release_env(
    target: Annotated[str, typer.Option("--to", help="the stack (environment) to release onto")],
    source: Annotated[str | None, typer.Option(
        "--from", help="the stack that proved the version "
        "(default: <service>:promotion.from of the target)")] = None,
    approve: Annotated[bool, typer.Option(
        "--approve", help="the manual approval, when the target requires one")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="release even a version the target has rolled back before")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="only evaluate the gates: exit 0 ready, 5 not")] = False,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Roll the version SOURCE runs out on TARGET, with TARGET's policy, once every gate is met."""
    from rollout.app.promotion import Release
    from rollout.cli.progress import ProgressPrinter
    from rollout.core.errors import GateNotMet

    try:
        release = Release(target=target, source=source, service=service, project_dir=project_dir,
                          on_progress=ProgressPrinter(console))
        check = release.check(approve=approve, force=force)
        if dry_run:
            _dry_run(check, output)
        console.print(views.gates_table(check))
        result = release.apply(check, force=force)
    except GateNotMet as err:
        if output is Output.json:
            out.print_json(json.dumps(err.check.to_dict()))
        raise
    _finish(result, output)


def _dry_run(check, output: Output) -> None:
    if output is Output.json:
        out.print_json(json.dumps(check.to_dict()))
    else:
        out.print(views.gates_table(check))
        verdict = "up to date" if check.up_to_date else "ready" if check.ready else "blocked"
        out.print(f"{check.target}: {verdict}")
    raise typer.Exit(0 if check.ready or check.up_to_date else 5)


@app.command("approve-release")
def approve_release_cmd(
    target: Annotated[str, typer.Option("--to", help="the stack the release goes to")],
    version: Annotated[str, typer.Option("--version", "-v", help="the version approved")],
    by: Annotated[str | None, typer.Option(help="who approves (default: $USER)")] = None,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
) -> None:
    """Record a manual approval of releasing VERSION onto TARGET (for requireApproval)."""
    import os

    from rollout.app.promotion import approve_release

    who = by or os.environ.get("USER") or "unknown"
    approve_release(target, version, by=who, service=service, project_dir=project_dir)
    console.print(f"release of {version} to {target} approved by {who}")


@app.command()
def envs(
    stacks: Annotated[str | None, typer.Option(
        help="comma-separated stacks in pipeline order, e.g. dev,staging,prod "
        "(default: every stacks/Pulumi.<name>.yaml)")] = None,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Each environment's stable version, last rollout, and what is ready to release into it."""
    from rollout.app.environments import pipeline

    names = [s.strip() for s in stacks.split(",") if s.strip()] if stacks else None
    found = pipeline(names, service=service, project_dir=project_dir)
    if output is Output.json:
        out.print_json(json.dumps([v.to_dict() for v in found]))
        return
    out.print(views.envs_table(found))


@app.command()
def analyze(
    stack: StackOption,
    start: Annotated[str, typer.Option(
        help="ISO 8601 time (UTC without a zone) or a duration before now, e.g. -15m")] = "-15m",
    end: Annotated[str, typer.Option(help="ISO 8601 time, a duration before now, or now")] = "now",
    step: Annotated[str | None, typer.Option(
        help="time between analyses, e.g. 1m (default: the analysis interval)")] = None,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Backtest: replay the stack's analysis over past metrics; changes nothing."""
    from rollout.app.backtest import backtest_stack, table

    result, workloads = backtest_stack(stack, start=start, end=end, step=step, service=service,
                                       project_dir=project_dir)
    if output is Output.json:
        out.print_json(json.dumps(views.backtest_json(stack, result, workloads)))
        return
    header, rows = table(result)
    views.show_backtest(out, result, workloads, header, rows)


@app.command("plan")
def plan_cmd(
    stack: StackOption,
    rps: Annotated[float | None, typer.Option(
        help="the service's requests/s, primary + canary (default: Prometheus, last 5m)")] = None,
    base_error_rate: Annotated[float | None, typer.Option(
        "--base-error-rate", help="the primary's 5xx share in percent, e.g. 0.5 "
        "(default: Prometheus, last 5m)")] = None,
    runs: Annotated[int | None, typer.Option(
        help="simulated rollouts per candidate effect (default: 200 threshold, "
        "100 sequential, 50 comparative)")] = None,
    service: ServiceOption = None,
    project_dir: ProjectOption = None,
    output: OutputOption = Output.text,
) -> None:
    """Pre-flight: the schedule, its duration, and the smallest regression the stack's judge
    catches by each step at today's traffic; changes nothing."""
    from rollout.app.preflight import plan_stack

    found = plan_stack(stack, rps=rps, base_error_percent=base_error_rate, runs=runs,
                       service=service, project_dir=project_dir)
    if output is Output.json:
        out.print_json(json.dumps(found.to_dict()))
        return
    views.show_plan(out, found)


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(
        help="the address to listen on; anything but loopback exposes rollout state (and, "
             "with --allow-actions, the actions) to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 takes a free one")] = 8040,
    allow_actions: Annotated[bool, typer.Option(
        "--allow-actions", help="show approve, promote and abort buttons (read-only without)")
    ] = False,
    every: Annotated[float, typer.Option(
        "--every", min=0.2, help="seconds between reads for the live views")] = 1.0,
    reports_dir: Annotated[Path | None, typer.Option(
        "--reports-dir", help="where the rollouts' reports are (default: the project's "
                              "reports/)")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """A local web page of every stack's canary services: versions, live weights, the current
    rollout's chart and verdicts, history; live over server-sent events. Ctrl-C stops it."""
    from rollout.adapters.paths import project_root
    from rollout.app.board import Board
    from rollout.web.server import LOOPBACK, bind, create_app, uvicorn_server

    folder = project_dir or project_root()
    board = Board(folder, reports_dir=reports_dir)
    board.services()  # a folder that is not a Pulumi project fails here, with its fix
    sock = bind(host, port)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/yellow] listening on {host}, not loopback: anyone "
                      "who can reach it sees the rollouts" + (" and can approve, promote and "
                      "abort them" if allow_actions else ""))
    mode = "actions allowed" if allow_actions else "read-only"
    console.print(f"dashboard of {folder} at {where} ({mode}); Ctrl-C stops it")
    server = uvicorn_server(create_app(board, allow_actions=allow_actions, every=every,
                                       host=host))
    # Ctrl-C is how a dashboard stops: uvicorn shuts down, then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    console.print("dashboard stopped")


def main() -> None:
    """The console entry point; errors are mapped to exit codes by `_ErrorBoundary`."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
