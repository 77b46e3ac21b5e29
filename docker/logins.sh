#!/bin/bash
# Runs once, when the postgres service initialises its data folder (docker-entrypoint-initdb.d):
# one login per part. The owner (POSTGRES_USER) only migrates; the fleet logs in as
# flotilla_fleet (role flotilla_worker) and CI agents as their own flotilla_client logins,
# each with a CONNECTION LIMIT.
# The roles get their privileges from `worker migrate` (migrations/0004_security.sql).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v fleet_password="$FLEET_PASSWORD" -v ci_password="$CI_PASSWORD" <<'SQL'
DO $$ BEGIN CREATE ROLE flotilla_worker NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE flotilla_client NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE flotilla_operator NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE ROLE flotilla_fleet LOGIN PASSWORD :'fleet_password' IN ROLE flotilla_worker;
-- The agents' share of max_connections (100 by default): however many agents start at once,
-- the fleet keeps the rest. An agent refused for the limit tries again (for up to 2 minutes).
CREATE ROLE ci_agents LOGIN PASSWORD :'ci_password' IN ROLE flotilla_client CONNECTION LIMIT 50;
SQL
