-- Clients see only their own (issue 24, part 5).
--
-- Any client login listed every cluster of every owner with its label, errors, node
-- addresses, host keys and event timeline, every job's error, and everyone's costs. Now the
-- client API shows a client login its own clusters, their nodes, events and jobs, and its own
-- costs; another owner's cluster is "no cluster with id" to it. The fleet and operators (and
-- the owner) see everything, as before; operators read the operator_* views anyway. Queue
-- depth (api_job_counts) and the median time to ready stay fleet-wide: they name no one.
-- The token-checked functions (api_holder) answer "no cluster with id" for another owner's
-- cluster too, not "the lease token does not match", which told that the id exists.

-- Called from the SECURITY DEFINER functions below, which fix the search_path; no SET clause
-- here, so the planner can inline it into their queries.
CREATE FUNCTION api_sees(p_owner text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_owner = session_user
        OR pg_has_role(session_user, 'flotilla_worker', 'MEMBER')
        OR pg_has_role(session_user, 'flotilla_operator', 'MEMBER')
$$;
REVOKE EXECUTE ON FUNCTION api_sees(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_sees(text) TO flotilla_worker;

CREATE OR REPLACE FUNCTION api_clusters(p_id text, p_owner text, p_state text, p_limit integer) RETURNS TABLE(id text, request_id text, owner text, label text, state text, phase text, masters integer, agents integer, public_agents integer, instance_type text, request text, lifetime_seconds double precision, ssh_user text, ssh_port integer, ready_at timestamp with time zone, expires_at timestamp with time zone, release_requested_at timestamp with time zone, last_error text, created_at timestamp with time zone, destroyed_at timestamp with time zone, region text, deployment text, teardown_reason text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    SELECT c.id, CASE WHEN c.owner = session_user THEN c.request_id END, c.owner, c.label, c.state, c.phase, c.masters, c.agents, c.public_agents, c.instance_type,
           CASE WHEN c.owner = session_user THEN c.request::text ELSE '{}' END,
           extract(epoch FROM c.lifetime)::float8, c.ssh_user, c.ssh_port, c.ready_at, c.expires_at,
           c.release_requested_at, c.last_error, c.created_at, c.destroyed_at, c.region, c.deployment, c.teardown_reason
    FROM clusters c
    WHERE (p_id IS NULL OR c.id = p_id) AND (p_owner IS NULL OR c.owner = p_owner)
      AND (p_state IS NULL OR c.state = p_state) AND api_sees(c.owner)
    ORDER BY c.created_at DESC
    LIMIT least(greatest(coalesce(p_limit, 200), 1), 1000)
$$;

CREATE OR REPLACE FUNCTION api_nodes(p_id text) RETURNS TABLE(role text, instance_id text, private_ip text, public_ip text, host_key text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    SELECT n.role, n.instance_id, n.private_ip, n.public_ip, n.host_key FROM nodes n
    WHERE n.cluster_id = p_id AND EXISTS (SELECT 1 FROM clusters c WHERE c.id = p_id AND api_sees(c.owner))
    ORDER BY array_position(ARRAY['bootstrap', 'master', 'slave', 'slave_public'], n.role), n.private_ip
$$;

CREATE OR REPLACE FUNCTION api_events(p_id text, p_after bigint) RETURNS TABLE(id bigint, at timestamp with time zone, kind text, detail text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    SELECT e.id, e.at, e.kind, e.detail::text FROM cluster_events e
    WHERE e.cluster_id = p_id AND e.id > coalesce(p_after, 0)
      AND EXISTS (SELECT 1 FROM clusters c WHERE c.id = p_id AND api_sees(c.owner))
    ORDER BY e.id LIMIT 1000
$$;

CREATE OR REPLACE FUNCTION api_jobs() RETURNS TABLE(id bigint, kind text, cluster_id text, state text, attempt integer, worker text, heartbeat_age_seconds double precision, last_error text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    (SELECT j.id, j.kind, j.cluster_id, j.state, j.attempt, j.lease_owner,
            extract(epoch FROM now() - j.heartbeat_at)::float8, j.last_error
     FROM jobs j LEFT JOIN clusters c ON c.id = j.cluster_id
     WHERE j.state = 'running' AND api_sees(coalesce(c.owner, '')) ORDER BY j.started_at LIMIT 50)
    UNION ALL
    (SELECT j.id, j.kind, j.cluster_id, j.state, j.attempt, j.lease_owner, NULL, j.last_error
     FROM jobs j LEFT JOIN clusters c ON c.id = j.cluster_id
     WHERE j.state = 'failed' AND api_sees(coalesce(c.owner, '')) ORDER BY j.finished_at DESC LIMIT 50)
$$;

CREATE OR REPLACE FUNCTION api_wait_info(p_id text) RETURNS TABLE(job_state text, ahead integer, median_seconds double precision, sample integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
#variable_conflict use_column
DECLARE
    j jobs;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = p_id AND api_sees(c.owner)) THEN
        RETURN;
    END IF;
    SELECT * INTO j FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = p_id ORDER BY id DESC LIMIT 1;
    job_state := j.state;
    ahead := 0;
    IF j.state = 'queued' THEN
        SELECT count(*)::int INTO ahead FROM jobs q
        WHERE q.state = 'queued' AND q.kind = 'provision' AND q.run_after <= now()
          AND (q.priority > j.priority OR (q.priority = j.priority AND (q.run_after, q.id) < (j.run_after, j.id)));
    END IF;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::float8, count(*)::int INTO median_seconds, sample
    FROM (SELECT extract(epoch FROM c.ready_at - c.created_at) AS s FROM clusters c
          WHERE c.ready_at IS NOT NULL AND c.ready_at > now() - interval '7 days'
          ORDER BY c.ready_at DESC LIMIT 20) recent;
    RETURN NEXT;
END;
$$;

CREATE OR REPLACE FUNCTION cost_report(p_since interval) RETURNS TABLE(owner text, instance_type text, clusters integer, nodes integer, instance_hours double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'public', 'pg_temp'
    AS $$
    WITH spans AS (
        SELECT c.id,
               CASE WHEN c.handed_out_at IS NOT NULL THEN 'pool:' || c.pool ELSE c.owner END AS owner,
               c.ready_at AS from_at,
               coalesce(least(c.handed_out_at, c.destroyed_at), now()) AS to_at  -- least() skips NULLs
        FROM clusters c
        WHERE c.ready_at IS NOT NULL AND coalesce(c.destroyed_at, now()) > now() - p_since
        UNION ALL
        SELECT c.id, c.owner, greatest(c.handed_out_at, c.ready_at), coalesce(c.destroyed_at, now())
        FROM clusters c
        WHERE c.ready_at IS NOT NULL AND c.handed_out_at IS NOT NULL AND coalesce(c.destroyed_at, now()) > now() - p_since
    ), clipped AS (
        SELECT id, owner, greatest(from_at, now() - p_since) AS from_at, to_at FROM spans
    )
    SELECT s.owner,
           coalesce(n.instance_type, CASE WHEN n.role = 'bootstrap' THEN 'unrecorded' ELSE c.instance_type END),
           count(DISTINCT s.id)::int,
           count(*)::int,
           sum(extract(epoch FROM s.to_at - s.from_at) / 3600)::float8
    FROM clipped s
    JOIN clusters c ON c.id = s.id
    JOIN nodes n ON n.cluster_id = s.id
    WHERE s.to_at > s.from_at AND api_sees(s.owner)
    GROUP BY 1, 2
    ORDER BY 1, 2;
$$;

CREATE OR REPLACE FUNCTION api_holder(p_cluster text, p_token text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    current text;
    holder text;
BEGIN
    -- For the rest of the caller's transaction (0012, 2.). A transaction kept busy (calls in
    -- a loop) is not idle: one older than 15 s is refused here instead.
    PERFORM set_config('idle_in_transaction_session_timeout', '15s', true);
    PERFORM set_config('lock_timeout', '5s', true);
    IF clock_timestamp() - now() > interval '15 seconds' THEN
        RAISE EXCEPTION 'this transaction began % s ago: call the client API in short transactions (autocommit), so no cluster stays locked',
                        round(extract(epoch FROM clock_timestamp() - now())) USING ERRCODE = 'FLT05';
    END IF;
    IF p_cluster IS NULL OR p_cluster !~ '^c-[0-9a-f]{10}$' THEN
        PERFORM api_bad(format('''%s'' is not a cluster id (cluster ids look like c-0123456789; see `client list`)', left(coalesce(p_cluster, ''), 40)));
    END IF;
    SELECT state, owner INTO current, holder FROM clusters WHERE id = p_cluster;
    -- Another owner's cluster does not exist for a client: no answer may tell otherwise.
    IF current IS NULL OR NOT api_sees(holder) THEN
        RAISE EXCEPTION 'no cluster with id % (see `client list`)', p_cluster USING ERRCODE = 'FLT04';
    END IF;
    IF current = 'destroyed' THEN
        RAISE EXCEPTION 'cluster % is destroyed; its key and token were erased', p_cluster USING ERRCODE = 'FLT03';
    END IF;
    IF NOT api_token_ok(p_cluster, p_token) THEN
        RAISE EXCEPTION 'the lease token does not match cluster %; nothing was changed', p_cluster USING ERRCODE = '22023';
    END IF;
    RETURN current;
END;
$$;
