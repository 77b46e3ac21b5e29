-- Pools by name, why a request missed a pool, and pools a client can see (issue 27, part 4).
--
-- A warm pool answers a request only when the hash of its whole spec matches (installer URL,
-- configuration bytes, every copied file, admin CIDR): one changed byte meant a cold install
-- with no word about why. Now:
-- - api_request takes p_pool_name: the cluster comes from that pool whatever the rest of the
--   request says (only its lifetimeSeconds counts). A ready spare is handed out at once, else
--   one being built, else a cluster of the pool's spec is built for the caller (and the miss
--   counts as the pool's demand, so it grows). The pool's spec must pass the caller's own
--   policy, as any request does.
-- - api_pool_explain(request): the pools nearest to a request, each with the fields whose
--   values differ (names only). A pool's configuration is not secret from whoever may take its
--   clusters: the taker gets root on the nodes (genconf on the bootstrap node, the master files,
--   the node-setup script) and the cluster's stored request. Operators keep secrets out of pool
--   specs; a license or password belongs to the requester (issue 29).
-- - api_pools(): every pool's name, shape, ready spares and target, for any client.

DROP FUNCTION flotilla_api.api_request(text, text, jsonb, float8, text);

-- The region a new cluster is pinned to (NULL: whichever worker builds it). Migration 0022
-- adds the request's region and image.
CREATE FUNCTION request_region(p jsonb) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN NULL;
END;
$$;

CREATE FUNCTION flotilla_api.api_request(p_request_id text, p_label text, p_request jsonb,
                                         p_abandon_after_seconds float8, p_pool_mode text DEFAULT 'auto',
                                         p_pool_name text DEFAULT NULL)
RETURNS TABLE (id text, lease_token text, created boolean, from_pool text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
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
    mode text := p_pool_mode;
BEGIN
    -- A cluster whose key could not be sent to this session is not built in vain (api_key).
    IF session_private_enough() IS NOT TRUE AND NOT coalesce(rules.allow_cleartext_keys, false) THEN
        PERFORM api_refuse(format('this connection from %s is not encrypted, so the private key of a cluster could '
                                  || 'not be sent to it: connect with sslmode=require (or verify-full), or ask an '
                                  || 'operator to set allow_cleartext_keys in your policy; nothing was recorded',
                                  host(inet_client_addr())));
    END IF;
    IF p_request_id IS NOT NULL AND (length(p_request_id) NOT BETWEEN 1 AND 200 OR p_request_id ~ '[[:cntrl:]]') THEN
        PERFORM api_bad('a request id must be 1 to 200 printable characters');
    END IF;
    IF p_label IS NOT NULL AND (length(p_label) > 200 OR p_label ~ '[[:cntrl:]]') THEN
        PERFORM api_bad('a label must be at most 200 printable characters');
    END IF;
    IF p_abandon_after_seconds IS NULL OR p_abandon_after_seconds <= 0 OR p_abandon_after_seconds > 7 * 86400 THEN
        PERFORM api_bad('the wait deadline must be positive and at most 7 days');
    END IF;
    IF mode IS NULL OR mode NOT IN ('auto', 'wait', 'never') THEN
        PERFORM api_bad('the pool mode must be auto, wait or never');
    END IF;
    IF p_pool_name IS NOT NULL THEN
        IF mode = 'never' THEN
            PERFORM api_bad('a pool name and the pool mode never contradict each other: give one of them');
        END IF;
        IF jsonb_typeof(p_request) IS DISTINCT FROM 'object' THEN
            PERFORM api_bad('the request must be a JSON object');
        END IF;
        SELECT * INTO matched FROM pools WHERE name = p_pool_name;
        IF NOT FOUND THEN
            PERFORM api_bad(format('no pool named %s (pools: %s; `client pools` lists them)',
                                   left(p_pool_name, 60),
                                   coalesce((SELECT string_agg(name, ', ' ORDER BY name) FROM pools), 'none')));
        END IF;
        -- The pool's cluster, with the caller's lifetime (or the default one).
        p_request := matched.spec || jsonb_build_object('lifetimeSeconds', coalesce(p_request -> 'lifetimeSeconds', '7200'::jsonb));
        mode := 'wait';
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

    IF mode <> 'never' AND matched.name IS NULL THEN
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
        IF taken IS NULL AND mode = 'wait' THEN
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
        VALUES (taken, 'handed-out', jsonb_build_object('owner', who, 'pool', matched.name,
                                                        'by_name', p_pool_name IS NOT NULL));
        PERFORM api_check_quota(who, rules, nodes);
        RETURN QUERY SELECT taken, token, true, matched.name;
        RETURN;
    END IF;

    INSERT INTO clusters (id, request_id, owner, label, masters, agents, public_agents, instance_type, request, lifetime,
                          abandon_at, region)
    VALUES (new_id, p_request_id, who, p_label, (p_request ->> 'masters')::int, (p_request ->> 'agents')::int,
            (p_request ->> 'publicAgents')::int, p_request ->> 'instanceType', p_request, wanted_lifetime,
            now() + make_interval(secs => p_abandon_after_seconds),
            CASE WHEN p_pool_name IS NOT NULL THEN matched.region ELSE request_region(p_request) END);
    INSERT INTO cluster_secrets (cluster_id) VALUES (new_id);
    INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (new_id, sha256(convert_to(token, 'UTF8')));
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority, run_after)
    VALUES ('provision', new_id, jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 5,
            provision_turn(who));
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (new_id, 'requested', jsonb_build_object('owner', who) || CASE WHEN p_pool_name IS NULL THEN '{}'::jsonb
                                                                          ELSE jsonb_build_object('pool', p_pool_name) END);
    PERFORM api_check_quota(who, rules, nodes);
    RETURN QUERY SELECT new_id, token, true, NULL::text;
END;
$$;

GRANT EXECUTE ON FUNCTION flotilla_api.api_request(text, text, jsonb, float8, text, text)
    TO flotilla_client, flotilla_worker;

-- The fields of two pool specs whose values differ, by name (lifetimeSeconds never counts).
CREATE FUNCTION pool_spec_difference(a jsonb, b jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k ORDER BY k), '{}')
    FROM (SELECT jsonb_object_keys(pool_spec(a)) AS k UNION SELECT jsonb_object_keys(pool_spec(b))) keys
    WHERE pool_spec(a) -> k IS DISTINCT FROM pool_spec(b) -> k
$$;

-- The pools nearest to a request (at most 5, fewest differences first), each with the fields
-- that differ. A request that is not a JSON object gets nothing.
CREATE FUNCTION flotilla_api.api_pool_explain(p_request jsonb)
RETURNS TABLE (pool text, differing text[], ready int)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT p.name, pool_spec_difference(p_request, p.spec),
           (SELECT count(*)::int FROM clusters c
            WHERE c.pool = p.name AND c.spec_hash = p.spec_hash AND c.handed_out_at IS NULL AND c.state = 'ready')
    FROM pools p
    WHERE jsonb_typeof(p_request) = 'object'
    ORDER BY cardinality(pool_spec_difference(p_request, p.spec)), p.name
    LIMIT 5
$$;

-- Every pool as a client sees it: its name and shape, not its configuration.
CREATE FUNCTION flotilla_api.api_pools()
RETURNS TABLE (name text, masters int, agents int, public_agents int, instance_type text, region text,
               ready int, building int, target int, min_ready int, max_ready int)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT p.name, (p.spec ->> 'masters')::int, (p.spec ->> 'agents')::int, (p.spec ->> 'publicAgents')::int,
           p.spec ->> 'instanceType', p.region,
           count(c.id) FILTER (WHERE c.state = 'ready')::int,
           count(c.id) FILTER (WHERE c.state IN ('requested', 'provisioning'))::int,
           p.target, p.min_ready, p.max_ready
    FROM pools p
    LEFT JOIN clusters c ON c.pool = p.name AND c.spec_hash = p.spec_hash AND c.handed_out_at IS NULL
                        AND c.state IN ('requested', 'provisioning', 'ready')
    GROUP BY p.name
    ORDER BY p.name
$$;

REVOKE EXECUTE ON FUNCTION pool_spec_difference(jsonb, jsonb), request_region(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION request_region(jsonb) TO flotilla_worker;
GRANT EXECUTE ON FUNCTION pool_spec_difference(jsonb, jsonb) TO flotilla_worker;
REVOKE EXECUTE ON FUNCTION flotilla_api.api_pool_explain(jsonb), flotilla_api.api_pools() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flotilla_api.api_pool_explain(jsonb), flotilla_api.api_pools()
    TO flotilla_client, flotilla_worker, flotilla_operator;
