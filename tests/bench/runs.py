"""Small bench run folders written from known rows, for the report and compare tests.

Only the files `authbench report` and `authbench compare` read: manifest.json and
summary.csv (cells without raw files read as not sampled). Every figure is derived from
the arguments, so a test knows what each chart and table must say.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from authbench.bench.summary import SummaryRow, write_summary


def row(
    mode: str,
    replicas: int,
    load: str,
    repeat: int,
    read_rps: float,
    p50_us: float,
    redis_per_req: float,
) -> SummaryRow:
    users, _, rate = load.partition("@")
    offered = int(users) * float(rate) if rate else 0.0
    rps = read_rps * 1.02  # logins and refreshes on top of the reads
    return SummaryRow(
        mode=mode,
        replicas=replicas,
        users=int(users),
        requests=int(rps * 10),
        failures=0,
        rps=rps,
        p50_ms=round(p50_us / 1000),
        p95_ms=round(2 * p50_us / 1000),
        p99_ms=round(3 * p50_us / 1000),
        max_ms=10 * p50_us / 1000,
        redis_ops_s=rps * redis_per_req,
        redis_cpu_pct=1.0 + rps * redis_per_req / 1000,
        cpu_replicas_pct=40.0,
        cpu_gateway_pct=20.0,
        cpu_auth_pct=5.0,
        cpu_loadgen_pct=30.0,
        cell_id=f"r{repeat}-{mode.replace('+', '-')}-x{replicas}-u{load.replace('@', 'at')}-EdDSA",
        repeat=repeat,
        load=load,
        offered_rps=offered,
        jwt_alg="EdDSA",
        revocation="denylist" if mode == "jwt+denylist" else "none",
        fail_pct=0.0,
        read_rps=read_rps,
        read_p50_ms=round(p50_us / 1000),
        read_p99_ms=round(3 * p50_us / 1000),
        redis_cmds_per_req=redis_per_req,
        read_p50_us=p50_us,
        read_p90_us=2 * p50_us,
        read_p99_us=3 * p50_us,
        read_p999_us=4 * p50_us,
        capture_s=10.0,
        after_logout_status=200 if mode == "jwt" else 401,
    )


def write_run(
    path: Path, rows: Sequence[SummaryRow], run_id: str = "", commit: str = "abc"
) -> Path:
    path.mkdir(parents=True)
    loads = sorted({r.load for r in rows})
    manifest = {
        "kind": "bench",
        "run_id": run_id or path.name,
        "started_utc": "2026-12-01T00:00:00+00:00",
        "git": {"commit": commit, "dirty": False},
        "versions": {"python": "3"},
        "machine": {"cpu_model": "test", "logical_cpus": 2},
        "settings": {
            "target": "local",
            "matrix": {
                "modes": sorted({r.mode for r in rows}),
                "replicas": sorted({r.replicas for r in rows}),
                "loads": loads,
                "jwt_algs": ["EdDSA"],
                "repeats": max(r.repeat for r in rows),
                "seed": 1,
            },
            "protocol": {"warmup_s": 3.0, "capture_s": 8.0, "rest_s": 1.0},
        },
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    write_summary(path / "summary.csv", rows)
    return path
