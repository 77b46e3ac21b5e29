-- The migration history belongs to `worker migrate` alone, which runs as the database owner.
--
-- 0004 granted the fleet every table of the schema, and schema_migrations exists before the
-- first migration runs, so the grant reached it: a worker login could rewrite the history,
-- marking a pending file applied (it would never run) or changing a checksum (every later
-- `worker migrate` would stop). The fleet keeps reading it; only the owner writes it.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM flotilla_worker;
