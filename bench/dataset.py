"""The live benchmark's data: which rollouts are simulated, and their backfilled TSDBs.

Every run gets its own namespace (`bench-<cell>-<i>`), so thousands share one TSDB per scrape
interval. Runs are spread over time slots, one 2 h block window each, with their data in the
recent past (at least an hour ago): a query opens only the block of its own time range, so the
per-query cost of Prometheus' index (postings lists it reads and checksums whole, e.g. every
series with reporter="destination") stays that of a few hundred runs, not of all of them. Each
slot is its own OpenMetrics file and its own block; the slots of one scrape interval fill one
TSDB directory.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import openmetrics, scrapes, tsdb
from bench.scrapes import MISSED_SCRAPES
from bench.simulation import Scenario, Traffic

APP = "demo"
IDENTICAL = "same"
HIGH_RPS = "rps200-err1"
SCENARIOS = (
    (IDENTICAL, Scenario("identical")),
    ("err05", Scenario("errors +0.5pp", extra_errors=0.005)),
    ("err1", Scenario("errors +1pp", extra_errors=0.01)),
    ("err5", Scenario("errors +5pp", extra_errors=0.05)),
    ("lat12", Scenario("latency x1.2", latency_factor=1.2)),
    ("lat15", Scenario("latency x1.5", latency_factor=1.5)),
    ("lat2", Scenario("latency x2", latency_factor=2.0)),
)
REGRESSIONS = SCENARIOS[1:]
BLOCK_S = 2 * 3600  # promtool's default block range; blocks are aligned to it
RUNS_PER_SLOT = 250
SLOT_OFFSET_S = 30 * 60  # where a slot's runs start inside their block window


@dataclass(frozen=True)
class Setting:
    """What is simulated and how it is judged."""

    seed: int = 20240611
    rps: float = 20.0
    high_rps: float = 200.0
    weight: float = 0.10
    error_rate: float = 0.005
    interval_s: float = 60.0
    intervals: int = 10
    alpha: float = 0.01
    slow_ms: float = 250.0
    scrapes: tuple[int, ...] = (15, 30)
    restarts: float = 0.2
    missed: float = MISSED_SCRAPES


@dataclass(frozen=True)
class Cell:
    """Runs of one scenario at one request rate; `key` names their namespaces."""

    no: int
    key: str
    scenario: Scenario
    runs: int
    rps: float


@dataclass(frozen=True)
class Run:
    cell: Cell
    index: int
    start: float  # t0: the canary gets its weight; analysis k ends at t0 + k * interval

    @property
    def namespace(self) -> str:
        return f"bench-{self.cell.key}-{self.index}"


@dataclass
class Built:
    """Per scrape interval: series, samples, OpenMetrics bytes, blocks; and the time taken."""

    stats: dict[int, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def cells(setting: Setting, *, identical: int, regressed: int, high_rps: int) -> list[Cell]:
    found = [(key, scenario, identical if key == IDENTICAL else regressed, setting.rps)
             for key, scenario in SCENARIOS]
    found.append((HIGH_RPS, Scenario("errors +1pp", extra_errors=0.01), high_rps,
                  setting.high_rps))
    return [Cell(no, key, scenario, runs, rps)
            for no, (key, scenario, runs, rps) in enumerate(found) if runs > 0]


def runs(all_cells: Sequence[Cell], *, now: float) -> list[Run]:
    """Every run, dealt round-robin over as many slots as hold RUNS_PER_SLOT each; the newest
    slot's data ends at least an hour before `now`."""
    ordered = [(cell, i) for i in range(max(c.runs for c in all_cells))
               for cell in all_cells if i < cell.runs]
    slots = max(1, math.ceil(len(ordered) / RUNS_PER_SLOT))
    newest = (now - 3 * 3600) // BLOCK_S * BLOCK_S
    return [Run(cell, i, newest - (n % slots) * BLOCK_S + SLOT_OFFSET_S)
            for n, (cell, i) in enumerate(ordered)]


def plan(setting: Setting, run: Run, rng: np.random.Generator) -> scrapes.RunPlan:
    draw = rng.random()
    restart = ("new-pod" if draw < setting.restarts / 2
               else "in-place" if draw < setting.restarts else None)
    traffic = Traffic(rps=run.cell.rps, weight=setting.weight, error_rate=setting.error_rate,
                      interval_s=setting.interval_s)
    return scrapes.RunPlan(
        namespace=run.namespace, app=APP, traffic=traffic, scenario=run.cell.scenario,
        start=run.start, intervals=setting.intervals, restart=restart,
    )


def write_slot(setting: Setting, work: Path, start: float, slot: Sequence[Run]
               ) -> dict[int, tuple[Path, int, int]]:
    """One slot's runs as one OpenMetrics file per scrape interval: path, series, samples."""
    name = f"slot-{int(start)}"
    parts = {s: openmetrics.FamilyParts(work / f"parts-{s}s-{name}") for s in setting.scrapes}
    try:
        for run in slot:
            rng = np.random.default_rng([setting.seed, run.cell.no, run.index])
            simulated = plan(setting, run, rng)
            pods = scrapes.simulate_run(rng, simulated)
            for scrape_s in setting.scrapes:
                missed = np.random.default_rng([setting.seed, run.cell.no, run.index, scrape_s])
                every = round(scrape_s / scrapes.GRID_S)
                for series in scrapes.scraped(pods, simulated, every=every, rng=missed,
                                              missed=setting.missed):
                    parts[scrape_s].write(series)
    finally:
        for writer in parts.values():
            writer.close()
    written = {}
    for scrape_s, part in parts.items():
        path = openmetrics.join([part.directory], work / f"{scrape_s}s-{name}.om")
        shutil.rmtree(part.directory)
        written[scrape_s] = (path, part.series, part.samples)
    return written


def build(setting: Setting, all_runs: Sequence[Run], work: Path, *, processes: int = 2,
          keep: bool = False, log: Callable[[str], None] = print) -> Built:
    """Simulates every run and backfills `work/tsdb-<scrape>s` for each scrape interval.
    Slots are simulated in `processes` processes while promtool backfills finished ones."""
    started = time.perf_counter()
    by_slot: dict[float, list[Run]] = {}
    for run in all_runs:
        by_slot.setdefault(run.start, []).append(run)
    built = Built({s: {"series": 0, "samples": 0, "bytes": 0, "blocks": 0}
                   for s in setting.scrapes})
    for scrape_s in setting.scrapes:
        # Blocks left by an earlier run would overlap these runs' series with other samples.
        shutil.rmtree(work / f"tsdb-{scrape_s}s", ignore_errors=True)

    def backfill(scrape_s: int, path: Path) -> None:
        tsdb.backfill(path, work / f"tsdb-{scrape_s}s")
        if not keep:
            path.unlink()

    with ProcessPoolExecutor(processes) as simulate, ThreadPoolExecutor(processes) as fill:
        pending = [simulate.submit(write_slot, setting, work, start, slot)
                   for start, slot in by_slot.items()]
        filling: list[Future[None]] = []
        for done in as_completed(pending):
            for scrape_s, (path, series, samples) in done.result().items():
                stats = built.stats[scrape_s]
                stats["series"] += series
                stats["samples"] += samples
                stats["bytes"] += path.stat().st_size
                stats["blocks"] += 1
                filling.append(fill.submit(backfill, scrape_s, path))
        for future in as_completed(filling):
            future.result()
    built.seconds = time.perf_counter() - started
    log(f"simulated {len(all_runs)} runs in {len(by_slot)} time slots and backfilled "
        f"{len(setting.scrapes)} TSDBs in {built.seconds:.0f}s")
    return built
