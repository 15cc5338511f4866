#!/bin/sh
# Run once by the postgres image on an empty data directory: one database and one owner per
# service (drama: dramas, episode: episodes); passwords from the postgres-credentials Secret.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
  -v drama_pw="$DRAMA_DB_PASSWORD" -v episode_pw="$EPISODE_DB_PASSWORD" <<'SQL'
CREATE ROLE drama LOGIN PASSWORD :'drama_pw';
CREATE DATABASE dramas OWNER drama;
CREATE ROLE episode LOGIN PASSWORD :'episode_pw';
CREATE DATABASE episodes OWNER episode;
REVOKE ALL ON DATABASE dramas FROM PUBLIC;
REVOKE ALL ON DATABASE episodes FROM PUBLIC;
SQL
