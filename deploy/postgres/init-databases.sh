#!/bin/sh
# Runs once, when the data volume is empty (docker-entrypoint-initdb.d): one database per
# service, each owned by the service's own role, and nobody else may connect to it.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v drama_password="$DRAMA_DB_PASSWORD" -v episode_password="$EPISODE_DB_PASSWORD" <<'SQL'
CREATE ROLE drama LOGIN PASSWORD :'drama_password';
CREATE ROLE episode LOGIN PASSWORD :'episode_password';
CREATE DATABASE drama OWNER drama;
CREATE DATABASE episode OWNER episode;
REVOKE ALL ON DATABASE drama FROM PUBLIC;
REVOKE ALL ON DATABASE episode FROM PUBLIC;
SQL
