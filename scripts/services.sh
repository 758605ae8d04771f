#!/usr/bin/env bash
# Make sure the servers the tests talk to are up: PostgreSQL (127.0.0.1:5432, trust auth), Redis
# (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672, guest/guest). Starts whichever is down, with the
# commands this machine image uses, and installs the system packages the tests need when they are
# missing. Idempotent.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  log "nothing answers on 127.0.0.1:$1"; return 1
}

apt_updated=""
ensure_packages() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { log "cannot install ${missing[*]}: no apt-get"; return 1; }
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_postgres() {
  port_open 5432 && return 0
  ensure_packages postgresql
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  wait_port 5432
}

start_redis() {
  port_open 6379 && return 0
  ensure_packages redis-server
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379
}

start_rabbitmq() {
  port_open 5672 || {
    ensure_packages rabbitmq-server
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
    wait_port 5672
  }
  # The tests add a virtual host of their own with rabbitmqctl, and connect as guest.
  for _ in $(seq 1 60); do as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && return 0; sleep 1; done
  log "rabbitmqctl cannot reach RabbitMQ"; return 1
}

start_postgres
start_redis
start_rabbitmq
# Headless Chromium renders the pages for people and the digest in the rendering tests.
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || ensure_packages chromium
# The tests create (and drop) their own databases; they need a role that may do so over TCP.
psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1" >/dev/null \
  || { log "PostgreSQL does not accept the postgres role over TCP with trust auth"; exit 1; }
log "PostgreSQL, Redis and RabbitMQ are up"
