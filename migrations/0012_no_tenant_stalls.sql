-- No tenant can stall the fleet (issue 24, part 3).
--
-- The lifetime pass (clusters_start_due_teardowns) was one loop that waited for each due
-- cluster's row lock. A client login that called api_heartbeat or api_extend inside a
-- transaction it left open (psycopg2 does not autocommit) held its cluster's row, and when
-- that cluster fell due, expiry, abandonment and the holder reaper stopped for every owner.
-- It also decided on the scan's snapshot, so an extend committed in between could be
-- followed by the teardown it was meant to prevent.
--
-- 1. Each due cluster is taken in a subtransaction: its row with SKIP LOCKED, the condition
--    decided again on the row as locked (READ COMMITTED gives the latest committed version),
--    and other locks (its provision job) waited for at most lock_timeout. A busy row is left
--    to the next pass; the others go on.
-- 2. A client's transaction that calls a token-checked function (api_holder: extend,
--    heartbeat, key, logs, release) is closed by the server once it sits idle for 15 s, and
--    waits at most 5 s for a lock. Set for the rest of that transaction only, from inside the
--    function, so it holds for every login however it was made (role settings do not pass
--    through IN ROLE) and costs a well-behaved client nothing. A call in a transaction that
--    began more than 15 s earlier is refused (a loop of calls is never idle).
-- 3. An extend of a cluster whose expiry has passed (by the clock, not the transaction's
--    start) is refused: its teardown is due. It locks the row FOR NO KEY UPDATE, so events
--    recorded meanwhile (a foreign key to the row) do not wait for it.

-- Why a cluster's teardown is due now, or NULL: the one statement of the rule. The pass's scan
-- below spells the same conditions out so that the partial indexes on expires_at, abandon_at
-- and holder_heartbeat_at serve it; the decision itself is this function's.
CREATE FUNCTION cluster_due_reason(c clusters) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN c.state = 'ready' AND c.expires_at <= now() THEN 'expired'
        WHEN c.state IN ('requested', 'provisioning', 'ready') AND c.holder_heartbeat_at + c.holder_timeout <= now()
            THEN 'holder-lost'
        WHEN c.state IN ('requested', 'provisioning', 'ready') AND c.collected_at IS NULL AND c.abandon_at <= now()
            THEN 'abandoned'
    END
$$;
REVOKE EXECUTE ON FUNCTION cluster_due_reason(clusters) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster_due_reason(clusters) TO flotilla_worker;

CREATE OR REPLACE FUNCTION clusters_start_due_teardowns() RETURNS TABLE (cluster_id text, reason text)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
#variable_conflict use_column
DECLARE
    candidate text;
    why text;
BEGIN
    FOR candidate IN
        SELECT c.id FROM clusters c
        WHERE (c.state = 'ready' AND c.expires_at <= now())
           OR (c.state IN ('requested', 'provisioning', 'ready') AND c.collected_at IS NULL AND c.abandon_at <= now())
           OR (c.state IN ('requested', 'provisioning', 'ready') AND c.holder_heartbeat_at + c.holder_timeout <= now())
        ORDER BY c.id
    LOOP
        BEGIN
            -- In the order every function locks: the provision job, then the cluster.
            PERFORM 1 FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = candidate
                                  AND state IN ('queued', 'running') FOR UPDATE;
            SELECT cluster_due_reason(c) INTO why FROM clusters c
            WHERE c.id = candidate AND cluster_due_reason(c) IS NOT NULL
            FOR NO KEY UPDATE SKIP LOCKED;
            -- Locked by another session, or no longer due (extended, released, heartbeat).
            CONTINUE WHEN NOT FOUND;
            IF cluster_begin_teardown(candidate, why) = 'tearing_down' THEN
                cluster_id := candidate;
                reason := why;
                RETURN NEXT;
            END IF;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Its provision job's row is busy: the next pass takes this cluster.
            NULL;
        END;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION api_holder(p_cluster text, p_token text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    -- For the rest of the caller's transaction (2. above). A transaction kept busy (calls in
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
    SELECT state INTO current FROM clusters WHERE id = p_cluster;
    IF current IS NULL THEN
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

CREATE OR REPLACE FUNCTION api_extend(p_id text, p_token text, p_seconds float8) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    current text := api_holder(p_id, p_token);
    c clusters;
    rules policy;
    expiry timestamptz;
BEGIN
    IF p_seconds IS NULL OR p_seconds <= 0 OR p_seconds > 366 * 86400 THEN
        PERFORM api_bad('an extension must be positive, like 30m or 1h');
    END IF;
    -- NO KEY: a foreign-key check (an event being recorded) does not wait for it.
    SELECT * INTO c FROM clusters WHERE id = p_id FOR NO KEY UPDATE;
    rules := policy_for(c.owner);
    IF c.state <> 'ready' THEN
        RAISE EXCEPTION 'cluster % is %, not ready: only a ready cluster can be extended', p_id, c.state USING ERRCODE = 'FLT03';
    END IF;
    IF c.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION 'cluster % expired at %: its teardown is due, so it can no longer be extended', p_id,
                        to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') USING ERRCODE = 'FLT03';
    END IF;
    IF c.expires_at + make_interval(secs => p_seconds) - greatest(c.ready_at, c.handed_out_at) > rules.max_total_lifetime THEN
        PERFORM api_refuse(format('extending by %s would pass the maximum total lifetime of %s (policy max_total_lifetime)',
                                  api_format_interval(make_interval(secs => p_seconds)), api_format_interval(rules.max_total_lifetime)));
    END IF;
    UPDATE clusters SET expires_at = expires_at + make_interval(secs => p_seconds), updated_at = now(),
                        collected_at = coalesce(collected_at, now())
    WHERE id = p_id RETURNING expires_at INTO expiry;
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (p_id, 'extended', jsonb_build_object('by_seconds', p_seconds::bigint, 'by', session_user));
    RETURN expiry;
END;
$$;
