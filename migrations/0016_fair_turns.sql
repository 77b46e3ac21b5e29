-- Fair turns between owners (issue 24, part 2).
--
-- The provision queue served requests in the order they came: when one team queued 100
-- requests, another team's single request started after the hundred. Now each request's
-- place in the line is its owner's turn, in the claim order every worker already uses
-- (priority, then run_after, then id: jobs_claim_idx), so the claim itself is unchanged:
--
-- - an owner with requests already queued gets the place just behind its own last one,
--   one microsecond later (so owners' queued requests interleave, round by round);
-- - an owner with nothing queued goes in front of the first queued request of the owners
--   with more than one request outstanding, one microsecond per cluster it already has
--   provisioning behind it (an owner being served waits for those that are not). Owners
--   who come this way with nothing being built all get the same place, and keep the order
--   they came in (ties go by id);
-- - with nothing queued at all, the place is now.
--
-- A place is never later than now(), so a request is runnable at once. The claim's "waited"
-- figure counts from created_at when run_after is earlier. Pool refills keep their lower
-- priority (1); teardowns stay first (10). A retried or snoozed job goes to the back, as
-- before, and does not drag its owner's new requests there. The owner's queued requests are
-- found through clusters_owner_active_idx (the quota bounds them) and the line through
-- jobs_claim_idx.

CREATE FUNCTION provision_turn(p_owner text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    own_last timestamptz;
    head timestamptz;
    serving int;
BEGIN
    -- Behind the owner's own last queued request (a snoozed or retried one, due later, aside).
    SELECT max(j.run_after) INTO own_last
    FROM clusters c JOIN jobs j ON j.cluster_id = c.id AND j.kind = 'provision'
    WHERE c.owner = p_owner AND c.state = 'requested' AND j.state = 'queued' AND j.priority = 5
      AND j.run_after <= now();
    IF own_last IS NOT NULL THEN
        RETURN least(own_last + interval '1 microsecond', now());
    END IF;
    -- The head of the line of owners with more than one request outstanding. Owners with a
    -- single request are passed over, so those who come with nothing queued keep their
    -- order among themselves: each goes to the same place, and ties go by id.
    SELECT j.run_after INTO head
    FROM jobs j JOIN clusters c ON c.id = j.cluster_id
    WHERE j.state = 'queued' AND j.priority = 5 AND j.kind = 'provision' AND j.run_after <= now()
      AND (SELECT count(*) FROM clusters o WHERE o.owner = c.owner AND o.state IN ('requested', 'provisioning')) > 1
    ORDER BY j.priority DESC, j.run_after, j.id LIMIT 1;
    IF head IS NULL THEN
        RETURN now();
    END IF;
    SELECT count(*) INTO serving FROM clusters c WHERE c.owner = p_owner AND c.state = 'provisioning';
    RETURN least(head + make_interval(secs => (serving - 1) / 1e6), now());
END;
$$;
REVOKE ALL ON FUNCTION provision_turn(text) FROM PUBLIC;

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
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority, run_after)
    VALUES ('provision', new_id, jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 5,
            provision_turn(who));
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (new_id, 'requested', jsonb_build_object('owner', who));
    PERFORM api_check_quota(who, rules, nodes);
    RETURN QUERY SELECT new_id, token, true, NULL::text;
END;
$$;

