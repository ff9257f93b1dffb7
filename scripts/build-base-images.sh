#!/usr/bin/env bash
# Build authbench's base images without a container registry (air-gapped hosts, and CI).
#
#   authbench/base-python:local  Debian bookworm + python3 + a venv in /opt/venv holding the
#                                project's pinned dependencies (so `docker compose build`
#                                needs no network at all)
#   authbench/redis:local        Debian bookworm + redis-server, running as user `redis`
#
# Both come from the host's own Debian mirror through debootstrap and are loaded with
# `docker import`. Each image is also tagged with a hash of its inputs (the code that builds
# it, and for the Python image the dependency list of pyproject.toml); when that tag already
# exists the image is reused and only the :local tag is moved: a second run takes a second.
#
# Then use them:  BASE_IMAGE=authbench/base-python:local REDIS_IMAGE=authbench/redis:local \
#                 docker compose up -d --wait
#
# Environment: MIRROR (default: the host's Debian URIs from /etc/apt), SUITE (bookworm),
# FORCE=1 rebuilds even when the hashed tag exists. Needs root (debootstrap), docker,
# debootstrap, and for the Python image's dependencies a reachable PyPI (pip honours the
# host's CA bundle, which also covers a TLS-inspecting proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${SUITE:-bookworm}"
PY_REPO="authbench/base-python"
REDIS_REPO="authbench/redis"

say() { echo "base-images: $*"; }
die() { echo "base-images: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run with sudo"
command -v docker >/dev/null || die "docker is not installed"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"

host_mirror() {
  # deb822 sources first (URIs: line of a Debian archive), then the one-line format.
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://[^ ]+/debian/? ' /etc/apt/sources.list \
      /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/^deb +(\[[^]]*\] +)?//' |
      awk '{print $1}' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${MIRROR:-$(host_mirror)}"

# The Python image carries the project's pinned dependencies plus its build backend.
PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python # tomllib needs 3.11+
requirements() {
  "$PYTHON" - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
for line in project["build-system"]["requires"] + project["project"]["dependencies"]:
    print(line)
EOF
}

work=""
cleanup() {
  # Never follow a mount out of the root we made (there should be none: no bind mounts).
  [ -n "$work" ] && [ -d "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
work=$(mktemp -d /var/tmp/authbench-base.XXXXXX)

bootstrap() { # bootstrap ROOT PACKAGES
  local root=$1 packages=$2 log="$work/$(basename "$1").debootstrap.log"
  if ! debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR" \
    >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "debootstrap of $root from $MIRROR failed"
  fi
}

slim() { # drop what a runtime image never reads
  local root=$1
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/root/.cache
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

build_python() {
  local root="$work/python"
  say "bootstrapping $SUITE with python3 from $MIRROR"
  bootstrap "$root" python3,python3-venv,python3-pip,ca-certificates
  # pip inside the root reaches PyPI with the host's resolver and CA bundle (which holds
  # any TLS-inspecting proxy's CA); neither stays in the image.
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/tmp/host-ca.crt"
  requirements >"$root/tmp/requirements.txt"
  say "installing the pinned dependencies into /opt/venv"
  chroot "$root" /usr/bin/python3 -m venv /opt/venv
  # A clean environment: the host's REQUESTS_CA_BUNDLE, PIP_* and the like name files of
  # the host, not of the root (requests lets REQUESTS_CA_BUNDLE win over pip's --cert).
  local proxies=()
  for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && proxies+=("$var=${!var}")
  done
  if ! chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    "${proxies[@]}" PIP_CERT=/tmp/host-ca.crt PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install -q -r /tmp/requirements.txt \
    >"$work/pip.log" 2>&1; then
    tail -n 30 "$work/pip.log" >&2
    die "pip install inside the root failed"
  fi
  rm -f "$root/tmp/host-ca.crt" "$root/tmp/requirements.txt"
  : >"$root/etc/resolv.conf"
  find "$root/opt/venv" -name __pycache__ -prune -exec rm -rf {} +
  slim "$root"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "authbench base-python ($SUITE, inputs $py_tag)" \
    - "$PY_REPO:$py_tag" >/dev/null
}

build_redis() {
  local root="$work/redis"
  say "bootstrapping $SUITE with redis-server from $MIRROR"
  bootstrap "$root" redis-server
  # Like the public redis image: data in /data, owned by the unprivileged redis user.
  mkdir -p "$root/data"
  chroot "$root" chown redis:redis /data
  slim "$root"
  tar -C "$root" -c . | docker import \
    --change 'USER redis' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server", "--protected-mode", "no"]' \
    --message "authbench redis ($SUITE, inputs $redis_tag)" \
    - "$REDIS_REPO:$redis_tag" >/dev/null
}

# An image's inputs: the bash that builds it (as bash itself prints the functions, so
# comments and the other image's code do not count), the suite and, for Python, the pins.
py_tag="$(
  {
    declare -f bootstrap slim build_python
    echo "$SUITE"
    requirements
  } | sha256sum | cut -c1-12
)"
redis_tag="$(
  {
    declare -f bootstrap slim build_redis
    echo "$SUITE"
  } | sha256sum | cut -c1-12
)"

pids=()
if [ "${FORCE:-0}" != 1 ] && have "$PY_REPO:$py_tag"; then
  say "$PY_REPO:$py_tag is up to date"
else
  build_python &
  pids+=($!)
fi
if [ "${FORCE:-0}" != 1 ] && have "$REDIS_REPO:$redis_tag"; then
  say "$REDIS_REPO:$redis_tag is up to date"
else
  build_redis &
  pids+=($!)
fi
for pid in "${pids[@]}"; do
  wait "$pid" || die "a base image failed to build"
done

docker tag "$PY_REPO:$py_tag" "$PY_REPO:local"
docker tag "$REDIS_REPO:$redis_tag" "$REDIS_REPO:local"
# Untag images made from older inputs (the layers go once nothing else uses them).
for pair in "$PY_REPO $py_tag" "$REDIS_REPO $redis_tag"; do
  set -- $pair
  docker images --format '{{.Repository}}:{{.Tag}}' "$1" | grep -vE ":($2|local)\$" |
    xargs -r docker rmi >/dev/null 2>&1 || true
done
say "ready: BASE_IMAGE=$PY_REPO:local ($py_tag)  REDIS_IMAGE=$REDIS_REPO:local ($redis_tag)"
