#!/bin/sh
# The managed-database counterpart of init-databases.sh (EKS: RDS), run by the seed Job's db-init
# step at every deploy: idempotent. One database per service, owned by the service's own role,
# nobody else may connect; the roles' passwords are (re)set from their secrets, so a rotated
# secret takes effect at the next deploy. The master user is not a superuser on RDS: it is granted
# the roles it creates so that it may make them database owners (PostgreSQL 16+).
# Connection from the environment: PGHOST, PGUSER, PGPASSWORD, PGSSLMODE=require.
set -eu
psql -v ON_ERROR_STOP=1 --dbname postgres \
  -v drama_password="$DRAMA_DB_PASSWORD" -v episode_password="$EPISODE_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['drama', 'episode']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE drama LOGIN PASSWORD :'drama_password';
ALTER ROLE episode LOGIN PASSWORD :'episode_password';
GRANT drama, episode TO CURRENT_USER;
SELECT format('CREATE DATABASE %I OWNER %I', d, d) FROM unnest(ARRAY['drama', 'episode']) AS d
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
REVOKE ALL ON DATABASE drama FROM PUBLIC;
REVOKE ALL ON DATABASE episode FROM PUBLIC;
SQL
