#!/usr/bin/env bash
# Builds a PostgreSQL image into the local Docker engine without a registry: a Debian rootfs made
# by debootstrap from the machine's own apt mirror, plus an entrypoint that behaves like the official
# image's for what the tests use (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, port 5432).
#
#   bash .ci/postgres-image.sh [NAME:TAG]     # default local/postgres:15
#
# Needs root, debootstrap and a running Docker engine. See ../shared/notes/field-notes.md.
set -euo pipefail

image=${1:-local/postgres:15}
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /tmp/postgres-rootfs.XXXXXX)
trap 'rm -rf --one-file-system "$rootfs"' EXIT

debootstrap --variant=minbase --include=postgresql bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/usr/share/{doc,man,info,locale} "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
# Debian's packaged cluster is not used: the entrypoint makes its own on first start.
rm -rf "$rootfs"/var/lib/postgresql/15/main "$rootfs"/etc/postgresql/15/main

cat > "$rootfs/entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
if [ ! -s "$data/PG_VERSION" ]; then
  password_file=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$password_file"
  chown postgres "$password_file"
  # Unlike the official image, no password means trust rather than a refusal to start: these
  # containers serve tests on the local engine only.
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then auth=scram-sha-256; else auth=trust; fi
  runuser -u postgres -- "$bin/initdb" -D "$data" -U "$user" --pwfile="$password_file" \
    --auth-local=trust --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$password_file"
  echo "host all all all $auth" >> "$data/pg_hba.conf"
  if [ "$database" != postgres ]; then
    quoted_database=$(printf '%s' "$database" | sed 's/"/""/g')
    quoted_user=$(printf '%s' "$user" | sed 's/"/""/g')
    runuser -u postgres -- "$bin/postgres" --single -D "$data" -j postgres >/dev/null <<SQL
CREATE DATABASE "$quoted_database" OWNER "$quoted_user";
SQL
  fi
fi
# The testcontainers postgres module waits for the ready line on stdout and on stderr: write the
# server's log to both. PID 1 stays this shell, which ignores SIGTERM, so `docker stop` ends the
# server only after its timeout; the tests remove containers with `docker rm --force`.
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*' -c port=5432 "$@" 2>&1 \
  | tee /dev/stderr
ENTRYPOINT
chmod 755 "$rootfs/entrypoint.sh"

tar -C "$rootfs" -c . | docker import \
  --change 'ENTRYPOINT ["/entrypoint.sh"]' \
  --change 'EXPOSE 5432/tcp' \
  - "$image" >/dev/null
echo "built $image"
