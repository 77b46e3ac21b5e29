-- A tenant boundary for request ids and quotas (issue 24, part 5).
--
-- 1. A request id is unique per owner. Two CI systems that both pass --request-id "$CI_JOB_ID"
--    used to collide, and the refusal told one that the other had used the id. Now each
--    owner's ids are its own, and a retry finds only its own cluster.
-- 2. The quota holds under every isolation level. It counted the owner's clusters under the
--    caller's snapshot, so requests made inside REPEATABLE READ transactions (which keep the
--    snapshot of their first statement) all passed it: with max_clusters = 1, four such
--    sessions each got a cluster. Each request now writes its owner's row in owner_turns
--    before it counts. Under READ COMMITTED that write waits for a concurrent request of the
--    same owner to end, and the count (a new statement) then sees its cluster. Under
--    REPEATABLE READ or SERIALIZABLE, a request of the same owner that committed after the
--    caller's snapshot makes the write fail ("could not serialize access due to concurrent
--    update"): the request is refused, never counted short.

ALTER TABLE clusters DROP CONSTRAINT clusters_request_id_key;
ALTER TABLE clusters ADD CONSTRAINT clusters_owner_request_id_key UNIQUE (owner, request_id);

CREATE TABLE owner_turns (
    owner text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON owner_turns FROM PUBLIC;

CREATE OR REPLACE FUNCTION api_check_quota(p_owner text, p_rules policy, p_nodes int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    active_clusters int;
    active_nodes int;
BEGIN
    -- One turn at a time per owner, under every isolation level (2. above).
    INSERT INTO owner_turns (owner) VALUES (p_owner) ON CONFLICT (owner) DO UPDATE SET at = now();
    SELECT count(*), coalesce(sum(masters + agents + public_agents), 0) INTO active_clusters, active_nodes
    FROM clusters WHERE owner = p_owner AND state <> 'destroyed';
    IF active_clusters > p_rules.max_clusters THEN
        PERFORM api_refuse(format('%s already holds %s clusters: the quota is %s clusters at once (policy max_clusters)',
                                  p_owner, active_clusters - 1, p_rules.max_clusters));
    END IF;
    IF active_nodes > p_rules.max_total_nodes THEN
        PERFORM api_refuse(format('%s holds %s nodes and asks for %s more: the quota is %s nodes at once (policy max_total_nodes)',
                                  p_owner, active_nodes - p_nodes, p_nodes, p_rules.max_total_nodes));
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION api_request(p_request_id text, p_label text, p_request jsonb, p_abandon_after_seconds float8,
                            p_pool_mode text DEFAULT 'auto')
RETURNS TABLE (id text, lease_token text, created boolean, from_pool text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    who text := session_user;
    rules policy := policy_for(session_user);
    existing record;
    token text := api_new_token();
    new_id text := 'c-' || substr(md5(gen_random_uuid()::text), 1, 10);
    nodes int;
    matched pools;
    taken text;
    wanted_lifetime interval;
BEGIN
    IF p_request_id IS NOT NULL AND (length(p_request_id) NOT BETWEEN 1 AND 200 OR p_request_id ~ '[[:cntrl:]]') THEN
        PERFORM api_bad('a request id must be 1 to 200 printable characters');
    END IF;
    IF p_label IS NOT NULL AND (length(p_label) > 200 OR p_label ~ '[[:cntrl:]]') THEN
        PERFORM api_bad('a label must be at most 200 printable characters');
    END IF;
    IF p_abandon_after_seconds IS NULL OR p_abandon_after_seconds <= 0 OR p_abandon_after_seconds > 7 * 86400 THEN
        PERFORM api_bad('the wait deadline must be positive and at most 7 days');
    END IF;
    IF p_pool_mode IS NULL OR p_pool_mode NOT IN ('auto', 'wait', 'never') THEN
        PERFORM api_bad('the pool mode must be auto, wait or never');
    END IF;
    PERFORM api_validate_request(p_request, who);
    IF p_request_id IS NOT NULL THEN
        -- One request id at a time: concurrent retries of the same id wait for each other.
        PERFORM pg_advisory_xact_lock(hashtextextended('flotilla-request:' || who || ':' || p_request_id, 0));
        SELECT c.id, c.owner, c.state, c.pool INTO existing FROM clusters c
        WHERE c.owner = who AND c.request_id = p_request_id;
        IF FOUND THEN
            IF existing.state IN ('failed', 'tearing_down', 'teardown_failed', 'destroyed') THEN
                RAISE EXCEPTION 'request id % was used for cluster %, which is %: use a new request id', p_request_id, existing.id, existing.state
                    USING ERRCODE = 'FLT03';
            END IF;
            INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (existing.id, sha256(convert_to(token, 'UTF8')));
            UPDATE clusters SET abandon_at = greatest(abandon_at, now() + make_interval(secs => p_abandon_after_seconds))
            WHERE clusters.id = existing.id AND collected_at IS NULL;
            INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (existing.id, 'request-retried', jsonb_build_object('by', who));
            RETURN QUERY SELECT existing.id::text, token, false, existing.pool::text;
            RETURN;
        END IF;
    END IF;
    wanted_lifetime := make_interval(secs => (p_request ->> 'lifetimeSeconds')::float8);
    nodes := (p_request ->> 'masters')::int + (p_request ->> 'agents')::int + (p_request ->> 'publicAgents')::int;

    IF p_pool_mode <> 'never' THEN
        SELECT * INTO matched FROM pools WHERE spec_hash = pool_spec_hash(p_request);
    END IF;
    -- The cluster is taken (or recorded) first and the owner's quota checked last
    -- (api_check_quota), so the per-owner lock is held only for one count and the commit.
    IF matched.name IS NOT NULL THEN
        -- The oldest healthy ready one; with 'wait', else the one furthest along.
        SELECT c.id INTO taken FROM clusters c
        WHERE c.pool = matched.name AND c.spec_hash = matched.spec_hash AND c.handed_out_at IS NULL
          AND c.state = 'ready' AND c.healthy_until > now() AND c.expires_at > now() + interval '1 minute'
        ORDER BY c.ready_at LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF taken IS NULL AND p_pool_mode = 'wait' THEN
            SELECT c.id INTO taken FROM clusters c
            WHERE c.pool = matched.name AND c.spec_hash = matched.spec_hash AND c.handed_out_at IS NULL
              AND c.state IN ('requested', 'provisioning')
            ORDER BY c.state = 'provisioning' DESC, c.created_at LIMIT 1
            FOR UPDATE SKIP LOCKED;
        END IF;
        -- The janitor hears of it through the cluster's own notification (expires_at is set).
        INSERT INTO pool_demand (pool, hit) VALUES (matched.name, taken IS NOT NULL);
    END IF;

    IF taken IS NOT NULL THEN
        -- The lifetime starts now; a cluster still building starts it at ready.
        UPDATE clusters c SET owner = who, label = p_label, request_id = p_request_id, request = p_request,
               lifetime = wanted_lifetime, expires_at = CASE WHEN c.state = 'ready' THEN now() + wanted_lifetime END,
               handed_out_at = now(), abandon_at = now() + make_interval(secs => p_abandon_after_seconds), collected_at = NULL
        WHERE c.id = taken;
        INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (taken, sha256(convert_to(token, 'UTF8')));
        INSERT INTO cluster_events (cluster_id, kind, detail)
        VALUES (taken, 'handed-out', jsonb_build_object('owner', who, 'pool', matched.name));
        PERFORM api_check_quota(who, rules, nodes);
        RETURN QUERY SELECT taken, token, true, matched.name;
        RETURN;
    END IF;

    INSERT INTO clusters (id, request_id, owner, label, masters, agents, public_agents, instance_type, request, lifetime, abandon_at)
    VALUES (new_id, p_request_id, who, p_label, (p_request ->> 'masters')::int, (p_request ->> 'agents')::int,
            (p_request ->> 'publicAgents')::int, p_request ->> 'instanceType', p_request, wanted_lifetime,
            now() + make_interval(secs => p_abandon_after_seconds));
    INSERT INTO cluster_secrets (cluster_id) VALUES (new_id);
    INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (new_id, sha256(convert_to(token, 'UTF8')));
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority)
    VALUES ('provision', new_id, jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 5);
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (new_id, 'requested', jsonb_build_object('owner', who));
    PERFORM api_check_quota(who, rules, nodes);
    RETURN QUERY SELECT new_id, token, true, NULL::text;
END;
$$;
