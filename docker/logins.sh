#!/bin/bash
# Runs once, when the postgres service initialises its data folder (docker-entrypoint-initdb.d):
# one login per part. The owner (POSTGRES_USER) only migrates; the fleet logs in as
# flotilla_fleet (role flotilla_worker) and CI agents as their own flotilla_client logins.
# The roles get their privileges from `worker migrate` (migrations/0004_security.sql).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v fleet_password="$FLEET_PASSWORD" -v ci_password="$CI_PASSWORD" <<'SQL'
DO $$ BEGIN CREATE ROLE flotilla_worker NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE flotilla_client NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE flotilla_operator NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE ROLE flotilla_fleet LOGIN PASSWORD :'fleet_password' IN ROLE flotilla_worker;
CREATE ROLE ci_agents LOGIN PASSWORD :'ci_password' IN ROLE flotilla_client;
SQL
