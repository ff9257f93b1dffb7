"""summary.csv's schema: one `SummaryRow` per cell, each column typed, with unit and meaning.

This dataclass is the only definition of the columns. A bench run writes summary.csv
through `write_summary` and the report reads it back through `read_summary`; the column
table in results/README.md is `markdown_table()` (a test keeps the two equal). A new
column is a new field here: the CSV, the reading, the README table and the cell.json
copy follow. Fields are written in declaration order: the contract's columns first.

Types: `str` (empty when there is nothing to say), `int` (always known: what the cell
is), `int | None` (a count, None when the cell was not measured), `float` (a figure, NaN
when not measured; written as an empty field). Reading is lenient on purpose: a column
missing from an older run's file reads as its default, and an unknown one is ignored.
"""

from __future__ import annotations

import csv
import math
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from authbench import modes

_UNIT = "unit"
_DOC = "doc"
NAN = math.nan


def _column(doc: str, unit: str = "", default: Any = MISSING) -> Any:
    """A column: what it means and its unit; `default` where a cell may lack it."""
    metadata = {_UNIT: unit, _DOC: doc}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def _figure(doc: str, unit: str) -> Any:
    return _column(doc, unit, NAN)


def _count(doc: str) -> Any:
    return _column(doc, "count", None)


def _text(doc: str) -> Any:
    return _column(doc, "", "")


@dataclass(slots=True)
class SummaryRow:
    """One cell of a bench run, as summary.csv holds it."""

    # --- the contract's columns ---------------------------------------------------------
    mode: str = _column("the mode measured (authbench.modes)")
    replicas: int = _column("resource replicas behind the gateway", "count")
    users: int = _column("Locust users", "count")
    requests: int | None = _count("requests Locust made in the capture window (all kinds)")
    failures: int | None = _count("of those, failed (HTTP error or no answer)")
    rps: float = _figure("requests per second over the capture window", "req/s")
    p50_ms: float = _figure("median client-side latency, all requests (Locust)", "ms")
    p95_ms: float = _figure("95th percentile client-side latency, all requests", "ms")
    p99_ms: float = _figure("99th percentile client-side latency, all requests", "ms")
    max_ms: float = _figure("slowest request", "ms")
    redis_ops_s: float = _figure("Redis commands processed per second (INFO)", "ops/s")
    redis_cpu_pct: float = _figure("Redis CPU by INFO (used_cpu_user + sys)", "% of a core")
    cpu_redis_pct: float = _figure(
        "CPU of the redis-server process, or of every data node of the store together "
        "(Cluster shards; primary and read replicas) (psutil)",
        "% of a core",
    )
    cpu_auth_pct: float = _figure("CPU of the auth service", "% of a core")
    cpu_gateway_pct: float = _figure("CPU of the gateway", "% of a core")
    cpu_replicas_pct: float = _figure("CPU of all resource replicas together", "% of a core")
    cpu_each_replica_pct: str = _text("CPU of each replica, `;`-separated (% of a core)")
    cpu_loadgen_pct: float = _figure("CPU of the load generator (Locust)", "% of a core")
    cpu_workers_pct: float = _figure(
        "CPU the Locust workers spent in the capture window, each measured by itself and "
        "sent to the master, summed: local `--processes` children and remote `authbench "
        "loadgen` workers (whose hosts the bench cannot sample) alike (empty: no workers)",
        "% of a core",
    )
    loadgen_workers: int | None = _column(
        "Locust workers whose µs histograms and CPU reached the master (empty: standalone)",
        "count",
        None,
    )
    # --- what the cell is -----------------------------------------------------------------
    cell_id: str = _text("`r<repeat>-<mode>-x<replicas>-u<load>-<JWT alg>`: the cell's folder")
    repeat: int = _column("repeat number, from 1", "count", 1)
    load: str = _text("load level: `USERS` (closed loop) or `USERS@RATE` (tasks/s per user)")
    offered_rps: float = _figure("reads per second offered: users x rate (0: closed loop)", "req/s")
    jwt_alg: str = _text("JWT signature algorithm of the deployment")
    revocation: str = _text("`JWT_REVOCATION` of the deployment")
    validate_at: str = _text(
        "where the credential is checked (`--validate-at`, VALIDATE_AT): `replica` (each "
        "replica, on every read) or `gateway` (once at the gateway, which forwards a signed "
        "identity assertion); empty in runs before the column"
    )
    gateway: str = _text(
        "what answered at the gateway's address (`--gateway`): `ours` (gateway/) or `nginx` "
        "(Debian's nginx in its place, authbench.targets.nginx); empty in runs before the "
        "column"
    )
    # --- what was measured ----------------------------------------------------------------
    fail_pct: float = _figure("failures / requests", "%")
    read_rps: float = _figure("authenticated reads (GET /api/*) per second", "req/s")
    read_p50_ms: float = _figure("median latency of the authenticated reads", "ms")
    read_p95_ms: float = _figure("95th percentile latency of the authenticated reads", "ms")
    read_p99_ms: float = _figure("99th percentile latency of the authenticated reads", "ms")
    redis_cmds_per_req: float = _figure(
        "Redis commands per Locust request (logins, refreshes, logouts included)", "count"
    )
    validations: int | None = _count("credential validations the replicas counted (/metrics)")
    validation_mean_us: float = _figure("mean server-side validation time of a credential", "µs")
    validation_p50_us: float = _figure("median server-side validation time (histogram)", "µs")
    validation_p99_us: float = _figure("99th percentile server-side validation time", "µs")
    capture_s: float = _figure("length of the capture window", "s")
    after_logout_status: int | None = _column(
        "after the cell: the status of a logged-out credential (401: revoked at once)",
        "HTTP status",
        None,
    )
    revocation_window_ms: float = _figure(
        "after the cell: one logout, then every replica asked until each answers 401; from "
        "logout's response to the last replica's first 401 (authbench.bench.revocation_window;"
        " empty: not revoked within 1 s, e.g. a plain JWT, or not measured)",
        "ms",
    )
    flags: str = _text("`;`-separated reasons to read the cell with care (see below)")
    error: str = _text("why the cell was not measured at all")
    # --- µs client latency: every request in HdrHistograms, merged over Locust processes --
    read_p50_us: float = _figure("median latency of the authenticated reads (HdrHistogram)", "µs")
    read_p90_us: float = _figure("90th percentile latency of the authenticated reads", "µs")
    read_p99_us: float = _figure("99th percentile latency of the authenticated reads", "µs")
    read_p999_us: float = _figure("99.9th percentile latency of the authenticated reads", "µs")
    p50_us: float = _figure("median latency of all requests (HdrHistogram)", "µs")
    p90_us: float = _figure("90th percentile latency of all requests", "µs")
    p99_us: float = _figure("99th percentile latency of all requests", "µs")
    p999_us: float = _figure("99.9th percentile latency of all requests", "µs")
    # --- the store axes -------------------------------------------------------------------
    store_link: str = _text(
        "how the services reach Redis: `direct`, `proxy` (the userspace delay proxy) or "
        "`netem` (tc netem on lo, only Redis's port); the manifest's settings.store_link "
        "says why"
    )
    store_rtt_ms: float = _column(
        "round trip added between every service and Redis (half each way)", "ms", 0.0
    )
    store_ping_us: float = _figure(
        "median PING round trip over the services' own path to Redis (through the proxy "
        "when there is one), measured before the cell",
        "µs",
    )
    redis_cpus: float = _figure("CPU quota of redis-server (empty: uncapped)", "cores")
    redis_throttled_pct: float = _figure(
        "share of the quota's CFS periods in which Redis was held back (warm-up included)", "%"
    )
    cpu_proxy_pct: float = _figure("CPU of the delay proxy (empty: none)", "% of a core")
    store_topology: str = _text(
        "the store (--store): `single`, `sentinel`, `cluster:N` (N Redis Cluster shards) or "
        "`replicas:N` (a primary and N read replicas)"
    )
    redis_ops_each_shard: str = _text(
        "a store of several nodes: each node's commands per second (INFO), `;`-separated, "
        "Redis Cluster shards in order, or the primary then each read replica; "
        "redis_ops_s is their sum, a replicated write counted on every node that applies "
        "it (empty: one node)"
    )
    redis_cpu_each_shard: str = _text(
        "a store of several nodes: each node's CPU by INFO (% of a core), `;`-separated, "
        "in the order of redis_ops_each_shard; redis_cpu_pct is their sum (empty: one node)"
    )
    token_bytes: int = _column("padding in every access token (ACCESS_TOKEN_PAD_BYTES)", "bytes", 0)
    credential_bytes: int | None = _column(
        "size of the credential sent with every read: the access token, or the session "
        "cookie's value",
        "bytes",
        None,
    )
    pinned: str = _text("with --pin: the CPUs of the load generator and of the system")

    # --- conversions ----------------------------------------------------------------------
    def number(self, name: str) -> float:
        """A numeric column as a float (NaN when not measured)."""
        value = getattr(self, name)
        if value is None or value == "":
            return NAN
        return float(value)

    def as_dict(self) -> dict[str, Any]:
        """Column -> value (NaN as None: JSON has no NaN)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}

    def csv_values(self) -> dict[str, Any]:
        return {f.name: _csv_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_csv(cls, raw: dict[str, str]) -> SummaryRow:
        values = {
            f.name: _parse(f, raw[f.name]) for f in fields(cls) if raw.get(f.name) not in (None, "")
        }
        return cls(**{**_required_defaults(), **values})


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


_HINTS: dict[str, Any] = typing.get_type_hints(SummaryRow)


def _kind(f: Field[Any]) -> type:
    """The base type of a column: str, int or float (`int | None` is int)."""
    hint = _HINTS[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint not in (str, int, float):
        raise TypeError(f"summary column {f.name}: unsupported type {hint}")
    return typing.cast(type, hint)


def _parse(f: Field[Any], text: str) -> Any:
    kind = _kind(f)
    if kind is str:
        return text
    try:
        number = float(text)
    except ValueError:
        return NAN if kind is float else None
    return int(number) if kind is int else number


def _required_defaults() -> dict[str, Any]:
    """Values for the columns without a default, should an old file lack them."""
    blank: dict[type, Any] = {str: "", int: 0, float: NAN}
    return {
        f.name: blank[_kind(f)]
        for f in fields(SummaryRow)
        if f.default is MISSING and f.default_factory is MISSING
    }


READ_PREFIX = "GET /api/"  # the authenticated reads, which the read_* columns describe
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SummaryRow))
_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(SummaryRow)}


def write_summary(path: Path, rows: Iterable[SummaryRow], columns: Sequence[str] = COLUMNS) -> None:
    """Write the rows; `columns` (default: all) may name fewer, e.g. an older run's."""
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.csv_values())


def read_summary(path: Path) -> list[SummaryRow]:
    with path.open(newline="") as f:
        return [SummaryRow.from_csv(raw) for raw in csv.DictReader(f)]


def unit(column: str) -> str:
    return str(_FIELDS[column].metadata[_UNIT])


def describe() -> list[tuple[str, str, str, str]]:
    """(column, type, unit, meaning) per column, in file order."""
    out = []
    for f in fields(SummaryRow):
        kind = _kind(f).__name__
        if isinstance(_HINTS[f.name], types.UnionType) or kind == "float":
            kind += " or empty"  # empty: not measured
        out.append((f.name, kind, f.metadata[_UNIT], f.metadata[_DOC]))
    return out


def markdown_table() -> str:
    """results/README.md's column table (tests/bench/test_summary.py keeps it current)."""
    lines = ["| column | type | unit | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {kind} | {unit} | {doc} |" for name, kind, unit, doc in describe()]
    return "\n".join(lines) + "\n"


def rows_in_order(rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """Rows as the report lists them: mode order, replicas, load, algorithm, repeat."""
    return sorted(rows, key=lambda r: (modes.rank(r.mode), r.replicas, r.load, r.jwt_alg, r.repeat))


if __name__ == "__main__":  # print the README table: python -m authbench.bench.summary
    print(markdown_table(), end="")
