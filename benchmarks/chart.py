"""Draw benchmarks/out/<run>/summary.png from the JSON files run_all.sh wrote.

`python benchmarks/chart.py benchmarks/out/<run>`: left, requests/s direct, through nginx
and through the gateway (with the 0.6 x nginx target); right, credential check cost over
raw library cost per mode (with the 1.2 target), in-process and end to end in situ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    run = Path(args[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    gateway = run / "gateway.json"
    if gateway.exists():
        data = json.loads(gateway.read_text())
        names = list(data["rps"])
        left.bar(names, [data["rps"][n] for n in names], color=["#999", "#4a8", "#37c"])
        left.axhline(0.6 * data["rps"]["nginx"], color="#c33", ls="--", label="0.6 x nginx")
        left.set_title(f"requests/s (gateway/nginx {data['ratio']:.2f})")
        left.legend()
    modes: list[str] = []
    series: dict[str, list[float]] = {}
    check = run / "check_costs.json"
    if check.exists():
        rows = json.loads(check.read_text())
        modes = [r["mode"] for r in rows]
        series["in-process"] = [r["ratio"] for r in rows]
    for name in ("replica_costs_insitu.json", "replica_costs.json"):
        path = run / name
        if path.exists():
            rows = json.loads(path.read_text())["rows"]
            if rows and "ratio_insitu" in rows[0]:
                by_mode = {r["mode"]: r["ratio_insitu"] for r in rows}
                modes = modes or list(by_mode)
                series["end to end, in situ"] = [by_mode.get(m, float("nan")) for m in modes]
                break
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        right.bar([x + i * width for x in range(len(modes))], values, width, label=label)
    right.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(modes))], modes)
    right.axhline(1.2, color="#c33", ls="--", label="target 1.2")
    right.set_title("credential check cost / raw library cost")
    right.legend(fontsize=8)
    fig.tight_layout()
    out = run / "summary.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
