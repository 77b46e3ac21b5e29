-- A harder tenant boundary (issue 24, part 5).
--
-- 1. Nobody but the owner creates anything in schema public. On PostgreSQL 14 or older, and on
--    a database upgraded from one, every login could: a client login could plant a function or
--    an operator there that a SECURITY DEFINER function then resolves and runs as the owner.
--    (`worker migrate` also refuses to run while any other role may create there.)
-- 2. Every SECURITY DEFINER function looks names up in pg_catalog first, then public, then
--    pg_temp: a built-in can no longer be shadowed from any schema, nor anything from a
--    session's temporary schema. A test checks every such function, later ones included.
-- 3. api_key refuses to send a private key over a connection that is neither encrypted nor
--    from a loopback address, unless the operator allows it for that owner
--    (policy.allow_cleartext_keys). A key that crossed a network in cleartext is a key others
--    may hold. api_request refuses such a session first, so no cluster is built in vain.

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

ALTER TABLE policy ADD COLUMN allow_cleartext_keys boolean NOT NULL DEFAULT false;

-- Whether this session may receive a secret: true over a Unix socket or loopback, else whether
-- it is encrypted; NULL when this role cannot tell (pg_stat_ssl shows another login's session
-- only to a superuser or a member of pg_read_all_stats, and the functions run as the owner).
CREATE FUNCTION session_private_enough() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN inet_client_addr() IS NULL OR inet_client_addr() <<= inet '127.0.0.0/8' OR inet_client_addr() = inet '::1'
            THEN true
        ELSE (SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid())
    END
$$;
REVOKE EXECUTE ON FUNCTION session_private_enough() FROM PUBLIC;

CREATE OR REPLACE FUNCTION api_key(p_id text, p_token text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    key text;
    is_private boolean;
BEGIN
    PERFORM api_holder(p_id, p_token);
    is_private := session_private_enough();
    IF is_private IS NOT TRUE AND NOT coalesce((policy_for(session_user)).allow_cleartext_keys, false) THEN
        IF is_private IS NULL THEN
            PERFORM api_refuse(format('cannot tell whether the connection from %s is encrypted, so the private key of %s '
                                      || 'is not sent: the database owner needs pg_read_all_stats (or allow_cleartext_keys '
                                      || 'in your policy)', host(inet_client_addr()), p_id));
        END IF;
        PERFORM api_refuse(format('the private key of %s is not sent in cleartext to %s: connect with sslmode=require '
                                  || '(or verify-full), or ask an operator to set allow_cleartext_keys in your policy',
                                  p_id, host(inet_client_addr())));
    END IF;
    SELECT private_key INTO key FROM cluster_secrets WHERE cluster_id = p_id;
    IF key IS NULL THEN
        RAISE EXCEPTION 'cluster % has no key yet (it is created when provisioning starts)', p_id USING ERRCODE = 'FLT04';
    END IF;
    UPDATE clusters SET collected_at = coalesce(collected_at, now()) WHERE id = p_id;
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (p_id, 'key-read', jsonb_build_object('by', session_user));
    RETURN key;
END;
$$;

-- The same rule at the request: a cluster is not built for a session that could not receive
-- its key.
CREATE OR REPLACE FUNCTION api_request(p_request_id text, p_label text, p_request jsonb, p_abandon_after_seconds float8,
                            p_pool_mode text DEFAULT 'auto')
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

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END;
$$;
