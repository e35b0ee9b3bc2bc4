#!/usr/bin/env bash
# Make sure the real services the tests talk to are up on loopback: PostgreSQL on
# 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379; and that the etcd binary is
# installed (its tests start their own). Starts a server that is
# installed but stopped; installs it from Debian's packages when running as root;
# otherwise stops with one line saying what to install. Never skips.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

postgres() {
  port_open 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql || {
      echo "services: PostgreSQL is not running on 127.0.0.1:5432 and cannot be installed here; install it (apt-get install postgresql) and start it" >&2
      exit 1
    }
  fi
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  wait_port 5432 || { echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
}

redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server || {
    echo "services: Redis is not running on 127.0.0.1:6379 and cannot be installed here; install it (apt-get install redis-server) and start it" >&2
    exit 1
  }
  echo "services: starting Redis" >&2
  mkdir -p /tmp/aether-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/aether-redis --logfile /tmp/aether-redis/redis.log
  wait_port 6379 || { echo "services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
}

# The etcd storage tests (contrib/aether-etcd) start their own etcd on free ports; they
# only need the binary (Debian's etcd-server).
etcd_binary() {
  command -v etcd >/dev/null 2>&1 && return 0
  # A fresh machine may not have the package lists yet.
  apt_install etcd-server || { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 &&
    apt_install etcd-server; } || {
    echo "services: the etcd binary is missing and cannot be installed here; install it (apt-get install etcd-server)" >&2
    exit 1
  }
}

postgres
redis
etcd_binary
