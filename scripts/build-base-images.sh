#!/usr/bin/env bash
# Build authbench's base images without a container registry (air-gapped hosts, and CI).
#
#   authbench/base-python:local       Debian bookworm + python3 + a venv in /opt/venv holding
#                                     the services' runtime pins only (the slim service
#                                     image's base: no apt, pip, docs or locales)
#   authbench/base-python-load:local  the same root + the harness pins (Locust, matplotlib,
#                                     ...) and pip: the load image's base
#   authbench/redis:local             Debian bookworm + redis-server, running as user `redis`
#   authbench/nginx:local             Debian bookworm + Debian's nginx (nginx-light): the
#                                     compose service gateway-nginx (profile nginx)
#
# With these, `docker compose build` needs no network at all.
#
# Both come from the host's own Debian mirror through debootstrap and are loaded with
# `docker import`. Each image is also tagged with a hash of its inputs (the code that builds
# it, and for the Python image the dependency list of pyproject.toml); when that tag already
# exists the image is reused and only the :local tag is moved: a second run takes a second.
#
# scripts/setup-docker.sh writes their names into .env, so plain `docker compose up` uses
# them; by hand: BASE_IMAGE=authbench/base-python:local
# LOAD_BASE_IMAGE=authbench/base-python-load:local REDIS_IMAGE=authbench/redis:local
# NGINX_IMAGE=authbench/nginx:local.
#
# Environment: MIRROR (default: the host's Debian URIs from /etc/apt), SUITE (bookworm),
# FORCE=1 rebuilds even when the hashed tag exists. Needs root (debootstrap), docker,
# debootstrap, and for the Python image's dependencies a reachable PyPI (pip honours the
# host's CA bundle, which also covers a TLS-inspecting proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${SUITE:-bookworm}"
PY_REPO="authbench/base-python"
LOAD_REPO="authbench/base-python-load"
REDIS_REPO="authbench/redis"
NGINX_REPO="authbench/nginx"

say() { echo "base-images: $*"; }
die() { echo "base-images: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run it as root (sudo bash $0)"
command -v docker >/dev/null || die "docker is not installed"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"

# shellcheck source=scripts/lib-debian.sh
. scripts/lib-debian.sh
MIRROR="${MIRROR:-$(host_mirror)}"

# Each Python image carries its image's pins (scripts/image_requirements.py, as the
# Dockerfile reads them): `service` for the runtime, `load` for the harness.
PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python # tomllib needs 3.11+
requirements() { # requirements service|load
  "$PYTHON" scripts/image_requirements.py list pyproject.toml "$1"
}

work=""
cleanup() {
  # Never follow a mount out of the root we made (there should be none: no bind mounts).
  [ -n "$work" ] && [ -d "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
work=$(mktemp -d /var/tmp/authbench-base.XXXXXX)

bootstrap() { # bootstrap ROOT PACKAGES [EXCLUDED]
  local root=$1 packages=$2 log="$work/$(basename "$1").debootstrap.log"
  if ! debootstrap --variant=minbase --include="$packages" ${3:+--exclude="$3"} "$SUITE" \
    "$root" "$MIRROR" >"$log" 2>&1; then
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

python_pins() { # python_pins ROOT service|load: install that image's pins into /opt/venv
  local root=$1 image=$2
  requirements "$image" >"$root/tmp/requirements.txt"
  # A clean environment: the host's REQUESTS_CA_BUNDLE, PIP_* and the like name files of
  # the host, not of the root (requests lets REQUESTS_CA_BUNDLE win over pip's --cert).
  local proxies=()
  for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && proxies+=("$var=${!var}")
  done
  if ! chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    "${proxies[@]}" PIP_CERT=/tmp/host-ca.crt PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install -q -r /tmp/requirements.txt \
    >"$work/pip-$image.log" 2>&1; then
    tail -n 30 "$work/pip-$image.log" >&2
    die "pip install of the $image pins inside the root failed"
  fi
  rm -f "$root/tmp/host-ca.crt" "$root/tmp/requirements.txt"
  : >"$root/etc/resolv.conf"
  find "$root/opt/venv" -name __pycache__ -prune -exec rm -rf {} +
}

import_python() { # import_python ROOT IMAGE:TAG DESCRIPTION
  tar -C "$1" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "authbench $3 ($SUITE, inputs $py_tag)" \
    - "$2" >/dev/null
}

build_python() {
  local root="$work/python" load="$work/python-load"
  # No apt (nor its TLS and keyring libraries) and no e2fsprogs: neither image installs
  # Debian packages after this. python3-venv makes /opt/venv (its wheels go afterwards);
  # libstdc++6 came with apt, and gevent, greenlet and zmq (Locust) need it.
  say "bootstrapping $SUITE with python3 from $MIRROR"
  bootstrap "$root" python3,python3-venv,libstdc++6 apt,e2fsprogs
  # pip inside the root reaches PyPI with the host's resolver and CA bundle (which holds
  # any TLS-inspecting proxy's CA); neither stays in the image.
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/tmp/host-ca.crt"
  chroot "$root" /usr/bin/python3 -m venv /opt/venv
  slim "$root"
  rm -rf "$root"/usr/share/locale/* "$root"/usr/share/python-wheels \
    "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/share/lintian \
    "$root"/usr/share/bash-completion
  # One bootstrap, two roots: the load image's is a copy that also gets the harness pins.
  cp -a "$root" "$load"
  say "installing the runtime pins (service) and the harness pins (load) into /opt/venv"
  python_pins "$root" service &
  local runtime=$!
  python_pins "$load" load
  wait "$runtime" || die "installing the service root's pins failed"
  # The service image runs code and never installs any: no pip, no setuptools.
  chroot "$root" /opt/venv/bin/python -m pip uninstall -q -y pip setuptools >/dev/null
  import_python "$root" "$PY_REPO:$py_tag" "base-python" &
  local first=$!
  import_python "$load" "$LOAD_REPO:$py_tag" "base-python-load"
  wait "$first" || die "docker import of $PY_REPO failed"
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

build_nginx() {
  local root="$work/nginx"
  say "bootstrapping $SUITE with nginx-light from $MIRROR"
  # debootstrap runs the packages' scripts with a fake start-stop-daemon: nothing starts.
  bootstrap "$root" nginx-light
  slim "$root"
  # The config comes from the compose file (deploy/nginx/, mounted); this is only a default.
  tar -C "$root" -c . | docker import \
    --change 'EXPOSE 8080' \
    --change 'CMD ["nginx", "-g", "daemon off;"]' \
    --message "authbench nginx ($SUITE, inputs $nginx_tag)" \
    - "$NGINX_REPO:$nginx_tag" >/dev/null
}

# An image's inputs: the bash that builds it (as bash itself prints the functions, so
# comments and the other image's code do not count), the suite and, for Python, the pins
# of both images (the two Python bases come from one bootstrap and share the tag).
py_tag="$(
  {
    declare -f bootstrap slim python_pins import_python build_python
    echo "$SUITE"
    requirements service
    requirements load
  } | sha256sum | cut -c1-12
)"
redis_tag="$(
  {
    declare -f bootstrap slim build_redis
    echo "$SUITE"
  } | sha256sum | cut -c1-12
)"
nginx_tag="$(
  {
    declare -f bootstrap slim build_nginx
    echo "$SUITE"
  } | sha256sum | cut -c1-12
)"

pids=()
if [ "${FORCE:-0}" != 1 ] && have "$PY_REPO:$py_tag" && have "$LOAD_REPO:$py_tag"; then
  say "$PY_REPO:$py_tag and $LOAD_REPO:$py_tag are up to date"
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
if [ "${FORCE:-0}" != 1 ] && have "$NGINX_REPO:$nginx_tag"; then
  say "$NGINX_REPO:$nginx_tag is up to date"
else
  build_nginx &
  pids+=($!)
fi
for pid in "${pids[@]}"; do
  wait "$pid" || die "a base image failed to build"
done

docker tag "$PY_REPO:$py_tag" "$PY_REPO:local"
docker tag "$LOAD_REPO:$py_tag" "$LOAD_REPO:local"
docker tag "$REDIS_REPO:$redis_tag" "$REDIS_REPO:local"
docker tag "$NGINX_REPO:$nginx_tag" "$NGINX_REPO:local"
# Untag images made from older inputs (the layers go once nothing else uses them).
for pair in "$PY_REPO $py_tag" "$LOAD_REPO $py_tag" "$REDIS_REPO $redis_tag" \
  "$NGINX_REPO $nginx_tag"; do
  set -- $pair
  docker images --format '{{.Repository}}:{{.Tag}}' "$1" | grep -vE ":($2|local)\$" |
    xargs -r docker rmi >/dev/null 2>&1 || true
done
say "ready: BASE_IMAGE=$PY_REPO:local LOAD_BASE_IMAGE=$LOAD_REPO:local ($py_tag)" \
  "REDIS_IMAGE=$REDIS_REPO:local ($redis_tag) NGINX_IMAGE=$NGINX_REPO:local ($nginx_tag)"
