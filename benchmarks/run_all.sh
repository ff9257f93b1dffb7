#!/usr/bin/env bash
# Every issue-7 benchmark, one after the other, each side by side and bounded (wrk -d).
# Prints the ratio tables and keeps them (Markdown + JSON) in benchmarks/out/<UTC time>/.
#   ROUNDS=3 DURATION=3 benchmarks/run_all.sh
# Needs: .venv (scripts/setup.sh), wrk, nginx (apt nginx-light), redis-server, taskset.
# Ports: 30740-30999 on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
for tool in wrk nginx redis-server redis-cli taskset; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "run_all: $tool is missing (apt-get install wrk nginx-light redis-server util-linux)" >&2
    exit 1
  }
done
OUT=benchmarks/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
echo "== 1/4 load generator ceilings (wrk, Locust) -> $OUT" >&2
$PY benchmarks/generator_ceiling.py --rounds 2 --duration "$DURATION" \
  --json "$OUT/generator.json" | tee "$OUT/generator.md"
echo "== 2/4 gateway vs nginx in front of the same replica" >&2
$PY benchmarks/gateway_vs_nginx.py --rounds "$ROUNDS" --duration "$DURATION" \
  --json "$OUT/gateway.json" | tee "$OUT/gateway.md"
echo "== 3/4 credential check vs raw library, in one pinned process" >&2
$PY benchmarks/check_costs.py --rounds $((ROUNDS + 2)) \
  --json "$OUT/check_costs.json" | tee "$OUT/check_costs.md"
echo "== 4/4 replica cost per request (1/rps with - without, pinned core), Redis per request" >&2
$PY benchmarks/replica_costs.py --rounds "$ROUNDS" --duration "$DURATION" \
  --json "$OUT/replica_costs.json" | tee "$OUT/replica_costs.md"
$PY benchmarks/chart.py "$OUT" >/dev/null
echo "== done: $OUT (tables *.md, data *.json, chart summary.png)" >&2
