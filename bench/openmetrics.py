"""Writes scraped series as one OpenMetrics file that `promtool tsdb create-blocks-from` reads.

What promtool holds the text to: a `# TYPE` line per metric family, named without the sample
suffix (`istio_requests` for `istio_requests_total`, the histogram's family name for its
`_bucket` samples); every series of a family together; each series' samples in time order
(promtool silently drops a sample older than the one before it); timestamps in seconds; `# EOF`
last. Series are streamed into one part file per family (several writers may fill parts in
parallel), and `join` writes the file from the parts.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from bench.scrapes import Series

# Sample name -> (family name, type), in the order the families are written.
FAMILIES = {
    "istio_requests_total": ("istio_requests", "counter"),
    "istio_request_duration_milliseconds_bucket": (
        "istio_request_duration_milliseconds", "histogram"
    ),
}


def render(series: Series) -> str:
    """The series' sample lines: `name{labels} value timestamp`."""
    labels = ",".join(f'{key}="{value}"' for key, value in series.labels)
    prefix = f"{series.name}{{{labels}}} "
    return "".join(
        f"{prefix}{value} {at:.3f}\n"
        for value, at in zip(series.values.tolist(), series.times.tolist(), strict=True)
    )


class FamilyParts:
    """Series sorted into one part file per family under `directory`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.series = 0
        self.samples = 0
        self._files: dict[str, IO[str]] = {
            name: (directory / f"{family}.part").open("w")
            for name, (family, _) in FAMILIES.items()
        }

    def write(self, series: Series) -> None:
        part = self._files.get(series.name)
        if part is None:
            raise ValueError(f"no metric family for {series.name!r}; known: {list(FAMILIES)}")
        part.write(render(series))
        self.series += 1
        self.samples += len(series.values)

    def close(self) -> None:
        for part in self._files.values():
            part.close()

    def __enter__(self) -> FamilyParts:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def join(parts: Sequence[Path], path: Path) -> Path:
    """One OpenMetrics file from part directories written by FamilyParts, family by family."""
    with path.open("w") as out:
        for family, kind in FAMILIES.values():
            out.write(f"# TYPE {family} {kind}\n")
            for directory in parts:
                with (directory / f"{family}.part").open() as text:
                    shutil.copyfileobj(text, out, 1 << 20)
        out.write("# EOF\n")
    return path
