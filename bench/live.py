"""Judge benchmark through the live measurement path: simulated Istio traffic, scraped, written
as OpenMetrics, backfilled into real Prometheus TSDBs (15 s and 30 s scrapes), and judged by
the driver's own MetricAnalysis / PrometheusProvider / failed-check code.

Run: .venv/bin/python -m bench.live [--quick] (--help for every knob). Seeded: same seed, same
table. Needs Debian's prometheus package (prometheus and promtool).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench import dataset, scrapes, tsdb
from bench.dataset import Run, Setting
from bench.live_report import Results, render
from bench.replay import RunTask, judge_run, prepare_worker


def tasks(setting: Setting, runs: Sequence[Run], urls: dict[int, str], *,
          shared_answers: bool) -> list[RunTask]:
    return [
        RunTask(
            url=url, scrape_s=scrape_s, cell=run.cell.key, index=run.index,
            namespace=run.namespace, app=dataset.APP, start=run.start,
            intervals=setting.intervals, interval_s=setting.interval_s,
            weight=round(100 * setting.weight), alpha=setting.alpha, slow_ms=setting.slow_ms,
            shared_answers=shared_answers,
        )
        for run in runs
        for scrape_s, url in urls.items()
    ]


def judge_all(setting: Setting, runs: Sequence[Run], urls: dict[int, str], workers: int, *,
              shared_answers: bool) -> tuple[Results, int]:
    """Every run judged in every TSDB by `workers` processes; results in run order."""
    todo = tasks(setting, runs, urls, shared_answers=shared_answers)
    results: Results = {s: {} for s in urls}
    calls = 0
    step = max(len(todo) // 10, 1)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=prepare_worker) as pool:
        for done, (task, (outcomes, made)) in enumerate(
            zip(todo, pool.map(judge_run, todo, chunksize=8), strict=True), 1
        ):
            calls += made
            by_row = results[task.scrape_s].setdefault(task.cell, {})
            for row, outcome in outcomes.items():
                by_row.setdefault(row, []).append(outcome)
            if done % step == 0:
                _log(f"judged {done}/{len(todo)} runs ({calls} analyze calls) in "
                     f"{time.perf_counter() - started:.0f}s")
    return results, calls


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Setting()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 40 identical runs, 10 per regression and at 200 rps")
    parser.add_argument("--identical", type=int, default=1000, help="runs without regression")
    parser.add_argument("--regressed", type=int, default=200, help="runs per regression")
    parser.add_argument("--high-rps-runs", type=int, default=200, help="runs at --high-rps, +1pp")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rps", type=float, default=defaults.rps)
    parser.add_argument("--high-rps", type=float, default=defaults.high_rps)
    parser.add_argument("--weight", type=float, default=defaults.weight,
                        help="canary share of traffic")
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate,
                        help="base 5xx share")
    parser.add_argument("--intervals", type=int, default=defaults.intervals,
                        help="analysis intervals per run")
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--slow-ms", type=float, default=defaults.slow_ms,
                        help="an Istio bucket bound")
    parser.add_argument("--scrapes", default="15,30", help="scrape intervals, seconds")
    parser.add_argument("--restarts", type=float, default=defaults.restarts,
                        help="share of runs whose canary restarts (half a new pod, half in place)")
    parser.add_argument("--missed", type=float, default=defaults.missed,
                        help="share of scrapes missed")
    parser.add_argument("--workers", type=int, default=3, help="judging processes")
    parser.add_argument("--no-shared-answers", action="store_true",
                        help="ask Prometheus again for a query another judge of the same run "
                        "already asked at the same instant (slower; the same table)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the OpenMetrics files")
    args = parser.parse_args(argv)
    if args.quick:
        args.identical, args.regressed, args.high_rps_runs = 40, 10, 10
    args.scrapes = tuple(int(s) for s in args.scrapes.split(","))
    if any(s % scrapes.GRID_S for s in args.scrapes):
        parser.error(f"scrape intervals must be multiples of {scrapes.GRID_S:g}s")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = _arguments(argv)
    setting = Setting(
        seed=args.seed, rps=args.rps, high_rps=args.high_rps, weight=args.weight,
        error_rate=args.error_rate, intervals=args.intervals, alpha=args.alpha,
        slow_ms=args.slow_ms, scrapes=args.scrapes, restarts=args.restarts, missed=args.missed,
    )
    cells = dataset.cells(setting, identical=args.identical, regressed=args.regressed,
                          high_rps=args.high_rps_runs)
    runs = dataset.runs(cells, now=time.time())
    with ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-live-")))
        work.mkdir(parents=True, exist_ok=True)
        built = dataset.build(setting, runs, work, processes=min(2, os.cpu_count() or 1),
                              keep=args.keep, log=_log)
        urls = {s: stack.enter_context(tsdb.serving(work / f"tsdb-{s}s")) for s in setting.scrapes}
        _log("prometheus ready: " + ", ".join(f"{s}s at {u}" for s, u in urls.items()))
        judging = time.perf_counter()
        results, calls = judge_all(setting, runs, urls, args.workers,
                                   shared_answers=not args.no_shared_answers)
        judged_s = time.perf_counter() - judging
    print(render(setting, results, runs={c.key: c.runs for c in cells}, built=built,
                 calls=calls, judged_s=judged_s, wall_s=time.perf_counter() - started,
                 prometheus=tsdb.version()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
