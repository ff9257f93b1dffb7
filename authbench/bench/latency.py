"""Client-side latency with microsecond resolution: HdrHistograms merged across processes.

Locust keeps response times in buckets of 1 ms (coarser above 100 ms), so every mode reads
"p50 1 ms" at moderate load. `loadtests/hdr_listener.py` records each request's time, in
µs, into an HdrHistogram (3 significant digits: values below 2,048 µs are exact, larger
ones within 0.1%) in every Locust process, standalone or worker (`--processes` children
and remote `authbench loadgen` workers alike). A standalone runner writes its encoded
histograms to `<dir>/hdr-<pid>.json` when its test stops; a worker sends them, with the
CPU it spent, to the master once the window closes, and the master writes them (a remote
worker's host has no `<dir>`, and the bench cannot sample its CPU). This
module is the one definition of the histogram's range and of how the files are merged
and read:

    merged = merge_dir(cell_dir / "hdr")        # {"reads": HdrHistogram, "all": ...}
    percentiles_us(merged["reads"])             # {"p50": 412, "p90": 655, ...}

Only what finished inside the capture window is recorded (the master tells the workers
when the window opens and closes), so the warm-up never leaks in, not even from workers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: far beyond any timeout of the system
SIGNIFICANT_DIGITS = 3
# The percentiles reported, by the name of their column suffix.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
SERIES = ("reads", "all")  # the authenticated reads (GET /api/...), and every request
FILE_GLOB = "hdr-*.json"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ms(histogram: HdrHistogram, response_time_ms: float) -> None:
    """Record one response time given in ms (Locust's unit, a float) as whole µs."""
    us = min(HIGHEST_US, max(LOWEST_US, round(response_time_ms * 1000.0)))
    histogram.record_value(us)


def encode(histogram: HdrHistogram) -> str:
    """The standard compressed, base64 text form (readable by every HdrHistogram port)."""
    raw = histogram.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode(text: str) -> HdrHistogram:
    histogram: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    return histogram


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every recorded value of all of them."""
    merged = new_histogram()
    for histogram in histograms:
        if histogram.get_total_count():
            merged.add(histogram)
    return merged


def write_process_file(
    directory: Path,
    key: int | str,
    role: str,
    histograms: Mapping[str, HdrHistogram],
    cpu: ProcessCpu | None = None,
) -> Path:
    """What one Locust process leaves behind (one file each: no locking). A standalone
    runner writes its own; a worker's arrive by message at the master, which writes them
    (`key`: the pid, or the worker's Locust client id)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"hdr-{_file_safe(str(key))}.json"
    payload: dict[str, Any] = {
        "pid": key,
        "role": role,
        "unit": "us",
        "counts": {name: int(h.get_total_count()) for name, h in histograms.items()},
        "histograms": {name: encode(h) for name, h in histograms.items()},
    }
    if cpu is not None:
        payload["cpu"] = {"host": cpu.host, "cpu_s": cpu.cpu_s, "window_s": cpu.window_s}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)  # a reader never sees half a file
    return path


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


@dataclass(frozen=True)
class ProcessCpu:
    """CPU a Locust process spent over the capture window, measured by itself: the one way
    to know a remote worker's, whose host the bench cannot sample."""

    host: str
    cpu_s: float
    window_s: float

    @property
    def pct(self) -> float:
        return 100.0 * self.cpu_s / self.window_s if self.window_s > 0 else math.nan


def workers_cpu(directory: Path) -> tuple[float, int]:
    """The workers' own CPU over the capture window, summed (% of a core), and how many
    reported it (NaN, 0: no worker did, e.g. a standalone run)."""
    total, count = 0.0, 0
    for path in sorted(directory.glob(FILE_GLOB)):
        try:
            payload: dict[str, Any] = json.loads(path.read_text())
            cpu = payload.get("cpu")
            if payload.get("role") != "worker" or not isinstance(cpu, dict):
                continue
            pct = ProcessCpu(str(cpu["host"]), float(cpu["cpu_s"]), float(cpu["window_s"])).pct
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not math.isnan(pct):
            total, count = total + pct, count + 1
    return (total if count else math.nan), count


def merge_dir(directory: Path) -> dict[str, HdrHistogram]:
    """Every process file of a cell merged, per series (empty histograms when none)."""
    parts: dict[str, list[HdrHistogram]] = {name: [] for name in SERIES}
    for path in sorted(directory.glob(FILE_GLOB)):
        try:
            payload: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, text in payload.get("histograms", {}).items():
            parts.setdefault(name, []).append(decode(str(text)))
    return {name: merge(histograms) for name, histograms in parts.items()}


def process_files(directory: Path) -> int:
    return len(list(directory.glob(FILE_GLOB)))


def percentiles_us(histogram: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9 in µs (NaN for an empty histogram: nothing was measured)."""
    if not histogram.get_total_count():
        return {name: math.nan for name in PERCENTILES}
    return {name: float(histogram.get_value_at_percentile(q)) for name, q in PERCENTILES.items()}


def row_figures(directory: Path) -> dict[str, float]:
    """The summary columns of a cell: `read_p50_us`, ..., `p999_us`, `hdr_reads`."""
    merged = merge_dir(directory)
    figures: dict[str, float] = {}
    for series, prefix in (("reads", "read_"), ("all", "")):
        histogram = merged.get(series, new_histogram())
        for name, value in percentiles_us(histogram).items():
            figures[f"{prefix}{name}_us"] = value
    figures["hdr_reads"] = float(merged.get("reads", new_histogram()).get_total_count())
    return figures


def merge_encoded(texts: Iterable[str]) -> HdrHistogram:
    """Merge histograms kept as encoded text (e.g. the repeats of one cell)."""
    return merge(decode(text) for text in texts)
