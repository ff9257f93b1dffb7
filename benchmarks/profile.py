"""Profile the gateway or a replica under wrk load with py-spy, and summarise it.

`python benchmarks/profile.py gateway` : the gateway (1 worker) in front of a hello replica;
`python benchmarks/profile.py replica --mode session|jwt [--alg HS256]` : a resource replica
  with a private Redis and auth service, GET /api/me with a real credential.
wrk runs for --duration + 2 s; py-spy samples the process for --duration s. Writes the raw
samples and a flame graph (SVG) to --out and prints where the time goes: the functions
with the most samples of their own, and the most inclusive ones. py-spy is in the dev
extra (`pip install -e .[dev]`).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR, PYTHON, Processes, check_ports, say, wait_http


def summarise(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples", "", "own time (where the CPU actually is):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (what it is spent under):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["gateway", "replica"])
    parser.add_argument("--mode", choices=["session", "jwt"], default="jwt")
    parser.add_argument("--alg", default="EdDSA")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--base-port", type=int, default=30780)
    parser.add_argument("--out", type=Path, default=Path("profiles"))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    base = args.base_port
    check_ports([base, base + 1, base + 2, base + 10])
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.target if args.target == "gateway" else f"replica-{args.mode}-{args.alg}"
    header: list[str] = []
    with Processes() as procs:
        if args.target == "gateway":
            procs.spawn("replica", [PYTHON, str(BENCH_DIR / "hello_replica.py"), str(base)])
            wait_http(f"http://127.0.0.1:{base}/healthz")
            upstream = f"http://127.0.0.1:{base}"
            victim = procs.spawn(
                "gateway", [PYTHON, "-m", "gateway"],
                {"PORT": str(base + 2), "HOST": "127.0.0.1", "AUTH_URL": upstream,
                 "RESOURCE_URLS": upstream, "GATEWAY_WORKERS": "1", "LOG_LEVEL": "WARNING"},
            )  # fmt: skip
            wait_http(f"http://127.0.0.1:{base + 2}/readyz")
            url = f"http://127.0.0.1:{base + 2}/api/hello"
        else:
            env = {
                "HOST": "127.0.0.1", "REDIS_URL": f"redis://127.0.0.1:{base + 10}/0",
                "AUTH_URL": f"http://127.0.0.1:{base + 1}", "LOG_LEVEL": "WARNING",
                "AUTH_SEED_USERS": "5", "JWT_ALG": args.alg, "JWT_REVOCATION": "none",
                "JWT_HS256_SECRET": "profile-secret-" + "x" * 40,
            }  # fmt: skip
            procs.spawn("redis", ["redis-server", "--port", str(base + 10), "--save", "",
                                  "--appendonly", "no"])  # fmt: skip
            time.sleep(0.3)
            procs.spawn("auth", [PYTHON, "-m", "auth_service"], {**env, "PORT": str(base + 1)})
            wait_http(f"http://127.0.0.1:{base + 1}/readyz")
            victim = procs.spawn(
                "replica", [PYTHON, "-m", "resource_service"], {**env, "PORT": str(base + 2)}
            )
            wait_http(f"http://127.0.0.1:{base + 2}/readyz")
            login = urllib.request.Request(
                f"http://127.0.0.1:{base + 1}/auth/login",
                data=json.dumps({"username": "user1", "password": "password1",
                                 "mode": args.mode}).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(login, timeout=10) as resp:  # noqa: S310 - loopback
                body = json.loads(resp.read())
                cookies = resp.headers.get_all("Set-Cookie") or []
            header = (
                ["-H", f"Authorization: Bearer {body['access_token']}"] if args.mode == "jwt"
                else ["-H", "Cookie: " + cookies[0].split(";", 1)[0]]
            )  # fmt: skip
            url = f"http://127.0.0.1:{base + 2}/api/me"
        load = procs.spawn(
            "wrk",
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration + 2:g}s", *header, url],
        )
        time.sleep(1)
        raw = args.out / f"{name}.txt"
        for fmt, path in (("raw", raw), ("flamegraph", args.out / f"{name}.svg")):
            subprocess.run(
                [spy, "record", "-p", str(victim.pid), "-d", str(max(1, int(args.duration // 2))),
                 "-r", str(args.rate), "-f", fmt, "-o", str(path), "--nonblocking"],
                capture_output=True, check=True, timeout=args.duration + 30,
            )  # fmt: skip
        load.wait(timeout=args.duration + 30)
        out = (procs.logdir / "wrk.log").read_text()
    rps = next((line for line in out.splitlines() if "Requests/sec" in line), "").strip()
    say(f"{name}: {rps}; samples in {raw}, flame graph in {raw.with_suffix('.svg')}")
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
