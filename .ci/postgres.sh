#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries are installed for tests/store_postgres.rs (which starts
# its own throwaway cluster on a free port) and prints the directory that holds them.
#
# CI, before `cargo test`:
#   export LOOPC_PG_BIN="$(.ci/postgres.sh)"
#
# Installs Debian's postgresql-15 (or the distribution's default `postgresql`) when no
# `initdb` is found; the package's default cluster is not created, since the tests need none.
set -euo pipefail

find_bin() {
  for dir in "${LOOPC_PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/createdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if ! find_bin >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null
  $sudo apt-get update >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 >&2 \
    || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
fi

if ! find_bin; then
  echo "PostgreSQL server binaries are still missing after installing; set LOOPC_PG_BIN to the directory holding initdb and pg_ctl" >&2
  exit 1
fi
