#!/usr/bin/env bash
# README's setup-and-test command on a bare Debian, as a newcomer would run it:
#
#   bash scripts/setup.sh && .venv/bin/python -m pytest
#
# inside a container made from a minimal Debian root (debootstrap --variant=minbase plus
# python3, as a stock install has it): no redis-server, no venv module, no compiler. The
# tests are a small subset (one end-to-end test on a real cluster, one tiny benchmark run),
# so CI time stays small; what is proven is that setup.sh alone brings a bare system to a
# working install. The project's files are copied in as a fresh clone holds them.
#
# The root is made once and kept as the image authbench/debian-bare:SUITE (later runs reuse
# it; FORCE=1 makes it again). Needs root, docker and debootstrap (scripts/setup-docker.sh
# installs them). The container shares the host's network so that apt and pip reach their
# mirrors; the host's CA bundle is lent to pip (it holds any TLS-inspecting proxy's CA).
# apt's downloads are kept between runs in /var/cache/authbench/fresh-debian (downloads
# only: every run still installs into a bare root). pip's are not: through this machine's
# TLS proxy PyPI's answers were never stored in pip's cache, so it would only pretend.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-debian.sh
. scripts/lib-debian.sh

SUITE="${SUITE:-bookworm}"
IMAGE="authbench/debian-bare:$SUITE"
TESTS=(
  "tests/e2e/test_auth_flows.py::test_each_mode_reaches_items_with_its_credential"
  "tests/bench/test_bench_end_to_end.py::test_every_file_of_the_contract_appears"
)
say() { echo "fresh-debian: $*"; }
die() { echo "fresh-debian: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run it as root"
command -v docker >/dev/null || die "docker is not installed (bash scripts/setup-docker.sh)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"

started=$(date +%s)
if [ "${FORCE:-0}" = 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  MIRROR="${MIRROR:-$(host_mirror)}"
  root=$(mktemp -d /var/tmp/authbench-bare.XXXXXX)
  trap 'rm -rf --one-file-system "$root"' EXIT
  say "bootstrapping a bare $SUITE (minbase + python3) from $MIRROR"
  if ! debootstrap --variant=minbase --include=python3 "$SUITE" "$root" "$MIRROR" \
    >"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    die "debootstrap failed"
  fi
  rm -f "$root.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' \
    --message "authbench: a bare Debian $SUITE for fresh-debian-check.sh" - "$IMAGE" >/dev/null
fi
say "root ready ($IMAGE) after $(($(date +%s) - started)) s"

proxies=()
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!var:-}" ] && proxies+=(-e "$var")
done
# Inside: first prove the system is bare, then README's command, verbatim but for the
# test selection.
inside=$(
  cat <<EOF
set -eu
if command -v redis-server >/dev/null || python3 -c 'import ensurepip' 2>/dev/null; then
  echo "fresh-debian: the root is not bare (redis-server or the venv module is there)" >&2
  exit 1
fi
mkdir /authbench && tar -x -C /authbench && cd /authbench
bash scripts/setup.sh && .venv/bin/python -m pytest -q -p no:cacheprovider ${TESTS[*]}
.venv/bin/authbench --help >/dev/null
EOF
)
name="authbench-fresh-debian-$$"
CACHE=/var/cache/authbench/fresh-debian
mkdir -p "$CACHE/apt/partial"
# The checkout's files as git sees them (tracked, and new ones not ignored: in CI, a fresh
# clone holds exactly the tracked ones); no .venv, caches or results of this host.
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -c 2>/dev/null |
  timeout "${FRESH_DEBIAN_TIMEOUT_S:-900}" docker run --rm -i --name "$name" --network host \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro \
    -v "$CACHE/apt:/var/cache/apt/archives" \
    -e PIP_CERT=/etc/ssl/host-ca.crt "${proxies[@]}" \
    "$IMAGE" bash -c "$inside" || {
  docker rm -f "$name" >/dev/null 2>&1 || true
  die "README's setup-and-test command failed on a bare $SUITE (output above)"
}
say "README's setup-and-test command passed on a bare $SUITE in $(($(date +%s) - started)) s"
