-- The client API in a schema of its own (issue 24, part 5).
--
-- What a client login may call now lives in schema flotilla_api, apart from the tables and the
-- fleet's functions in public: `client` calls flotilla_api.api_request(…) and the others by
-- their qualified names, so no search_path (a login's, or one planted in a session) decides
-- which function runs. Each keeps its grants, and its SECURITY DEFINER search_path of
-- pg_catalog first, then public (its tables and helpers), then pg_temp (0019). Nobody but the
-- owner creates anything in flotilla_api. cost_report stays in public: the fleet's page and
-- /metrics read it too.

CREATE SCHEMA flotilla_api;
REVOKE ALL ON SCHEMA flotilla_api FROM PUBLIC;
GRANT USAGE ON SCHEMA flotilla_api TO flotilla_client, flotilla_worker, flotilla_operator;

ALTER FUNCTION api_clusters(text, text, text, int) SET SCHEMA flotilla_api;
ALTER FUNCTION api_events(text, bigint) SET SCHEMA flotilla_api;
ALTER FUNCTION api_extend(text, text, float8) SET SCHEMA flotilla_api;
ALTER FUNCTION api_heartbeat(text, text, float8) SET SCHEMA flotilla_api;
ALTER FUNCTION api_job_counts() SET SCHEMA flotilla_api;
ALTER FUNCTION api_jobs() SET SCHEMA flotilla_api;
ALTER FUNCTION api_key(text, text) SET SCHEMA flotilla_api;
ALTER FUNCTION api_logs(text, text) SET SCHEMA flotilla_api;
ALTER FUNCTION api_nodes(text) SET SCHEMA flotilla_api;
ALTER FUNCTION api_release(text, text) SET SCHEMA flotilla_api;
ALTER FUNCTION api_request(text, text, jsonb, float8, text) SET SCHEMA flotilla_api;
ALTER FUNCTION api_wait_info(text) SET SCHEMA flotilla_api;
