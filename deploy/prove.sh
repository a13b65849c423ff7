#!/usr/bin/env bash
# N processes proven together: 3 web processes behind Debian's nginx, a Celery worker and beat, on a fresh
# PostgreSQL database and Redis db (deploy/prove.py does the work and says what it asserts).
#   bash deploy/prove.sh [--quick] [--redis-db N] [--pg postgres://postgres@127.0.0.1:5432] [--keep]
# Needs PostgreSQL and Redis on 127.0.0.1; installs nginx with apt-get when it is missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/prove.sh: nginx is missing; apt-get install nginx (as root)" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
export PATH="$PATH:/usr/sbin"
[ -x .venv/bin/python ] || make install
exec .venv/bin/python deploy/prove.py "$@"
