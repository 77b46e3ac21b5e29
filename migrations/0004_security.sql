-- The security boundary lives here. Three roles; nobody but the migrating owner runs as the
-- owner:
--   flotilla_worker    the fleet (`worker run`, `worker janitor`): the tables and functions;
--   flotilla_client    CI agents: no table at all, EXECUTE on the api_* functions below
--                      (SECURITY DEFINER, fixed search_path), which check the lease token,
--                      the policy and the caller's identity (session_user);
--   flotilla_operator  people: the operator views (no secrets), the policy, cancel_job.
-- Give a CI team a login with `CREATE ROLE ci_team_a LOGIN PASSWORD '…' IN ROLE flotilla_client`.
--
-- Errors raised by the API carry SQLSTATE 22023 (bad argument, nothing written) or FLT05
-- (refused by the policy, naming the limit and its value).

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['flotilla_worker', 'flotilla_client', 'flotilla_operator'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- roles belong to the server: another database made it already
        END;
    END LOOP;
END;
$$;

-- Nothing is anyone's by default.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
-- Global, not IN SCHEMA: a per-schema default can only add to the global EXECUTE-for-PUBLIC.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The limits, in the server. One row per owner overrides the default row ('*'); operators
-- write it, clients cannot read or write it.
CREATE TABLE policy (
    owner               text PRIMARY KEY CHECK (length(owner) BETWEEN 1 AND 200),
    max_lifetime        interval NOT NULL CHECK (max_lifetime > interval '0'),
    max_total_lifetime  interval NOT NULL CHECK (max_total_lifetime > interval '0'),
    max_nodes           integer NOT NULL CHECK (max_nodes BETWEEN 1 AND 100),
    max_clusters        integer NOT NULL CHECK (max_clusters >= 0),
    max_total_nodes     integer NOT NULL CHECK (max_total_nodes >= 0)
);
INSERT INTO policy VALUES ('*', interval '12 hours', interval '24 hours', 100, 10, 60);

-- Lease tokens are kept only as SHA-256 hashes; a retried request id adds a token.
CREATE TABLE cluster_tokens (
    cluster_id text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, token_hash)
);
INSERT INTO cluster_tokens (cluster_id, token_hash)
SELECT cluster_id, sha256(convert_to(lease_token, 'UTF8')) FROM cluster_secrets WHERE lease_token IS NOT NULL;
ALTER TABLE cluster_secrets DROP COLUMN lease_token;

ALTER TABLE clusters ADD COLUMN label text CHECK (length(label) <= 200);

-- Destroyed: the key and every token go.
CREATE OR REPLACE FUNCTION cluster_mark_destroyed(p_job bigint, p_token uuid, p_cluster text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    UPDATE clusters SET state = 'destroyed', phase = 'destroyed', destroyed_at = now()
    WHERE id = p_cluster AND state = 'tearing_down';
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'mark the cluster destroyed');
    END IF;
    UPDATE cluster_secrets SET private_key = NULL, public_key = NULL WHERE cluster_id = p_cluster;
    DELETE FROM cluster_tokens WHERE cluster_id = p_cluster;
    INSERT INTO cluster_events (cluster_id, kind) VALUES (p_cluster, 'destroyed');
END;
$$;

-- The policy row that applies to an owner.
CREATE FUNCTION policy_for(p_owner text) RETURNS policy LANGUAGE sql STABLE AS $$
    SELECT * FROM policy WHERE owner IN (p_owner, '*') ORDER BY owner = '*' LIMIT 1
$$;

CREATE FUNCTION api_bad(p_message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', p_message USING ERRCODE = '22023';
END;
$$;

CREATE FUNCTION api_refuse(p_message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', p_message USING ERRCODE = 'FLT05';
END;
$$;

CREATE FUNCTION api_format_interval(p interval) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN extract(epoch FROM p) >= 3600 AND extract(epoch FROM p)::bigint % 3600 = 0
                THEN (extract(epoch FROM p)::bigint / 3600) || 'h'
                ELSE (extract(epoch FROM p)::bigint / 60) || 'm' END
$$;

-- Every rule the client applies, applied again here: the only door is this one.
CREATE FUNCTION api_validate_request(p jsonb, p_owner text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rules policy := policy_for(p_owner);
    masters int;
    agents int;
    public_agents int;
    nodes int;
    lifetime float8;
    file jsonb;
    admin text;
BEGIN
    IF rules.owner IS NULL THEN
        PERFORM api_refuse('no policy applies (the policy table has no row for this owner and no default row ''*'')');
    END IF;
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        PERFORM api_bad('the request must be a JSON object');
    END IF;
    IF length(p::text) > 1048576 THEN
        PERFORM api_bad('the request is larger than 1 MiB (installer files included)');
    END IF;
    BEGIN
        masters := (p ->> 'masters')::int;
        agents := (p ->> 'agents')::int;
        public_agents := (p ->> 'publicAgents')::int;
        lifetime := (p ->> 'lifetimeSeconds')::float8;
    EXCEPTION WHEN others THEN
        PERFORM api_bad('masters, agents and publicAgents must be whole numbers and lifetimeSeconds a number');
    END;
    IF masters IS NULL OR agents IS NULL OR public_agents IS NULL OR lifetime IS NULL THEN
        PERFORM api_bad('the request needs masters, agents, publicAgents and lifetimeSeconds');
    END IF;
    nodes := masters + agents + public_agents;
    IF nodes < 1 THEN
        PERFORM api_bad('a cluster needs at least 1 node (--nodes 1 or more)');
    END IF;
    IF masters NOT IN (1, 3, 5, 7, 9) THEN
        PERFORM api_bad(format('%s masters is not a DC/OS cluster shape: use 1, 3, 5, 7 or 9 masters', masters));
    END IF;
    IF agents < 0 OR public_agents < 0 THEN
        PERFORM api_bad('agent counts cannot be negative');
    END IF;
    IF nodes > rules.max_nodes THEN
        PERFORM api_refuse(format('%s nodes is more than one cluster may have: use 1 to %s (policy max_nodes)', nodes, rules.max_nodes));
    END IF;
    IF coalesce(p ->> 'instanceType', '') !~ '^[a-z][a-z0-9-]*\.[a-z0-9]+$' THEN
        PERFORM api_bad(format('instance type ''%s'' is not an EC2 instance type like m4.large', left(coalesce(p ->> 'instanceType', ''), 40)));
    END IF;
    admin := coalesce(p ->> 'adminLocation', '');
    IF admin !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$' OR NOT api_is_ipv4_cidr(admin) THEN
        PERFORM api_bad(format('admin location ''%s'' is not an IPv4 CIDR block like 203.0.113.0/24 (0.0.0.0/0 allows everyone)', left(admin, 40)));
    END IF;
    IF coalesce(p ->> 'installerURL', '') !~* '^https?://[^/\s:]+' OR length(p ->> 'installerURL') > 2000 THEN
        PERFORM api_bad('installer URL must be an http:// or https:// URL of dcos_generate_config.sh');
    END IF;
    IF lifetime <= 0 THEN
        PERFORM api_bad('a lifetime must be positive, like 2h or 90m');
    END IF;
    IF make_interval(secs => lifetime) > rules.max_lifetime THEN
        PERFORM api_refuse(format('a lifetime of %s is beyond the maximum of %s (policy max_lifetime)',
                                  api_format_interval(make_interval(secs => lifetime)), api_format_interval(rules.max_lifetime)));
    END IF;
    IF p ? 'genconfFiles' AND jsonb_typeof(p -> 'genconfFiles') <> 'array' THEN
        PERFORM api_bad('genconfFiles must be a list');
    END IF;
    FOR file IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'genconfFiles', '[]'))
    LOOP
        IF coalesce(file ->> 'path', '') !~ '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$' OR (file ->> 'path') ~ '(^|/)\.\.(/|$)' THEN
            PERFORM api_bad(format('installer file path ''%s'' must be relative to genconf/, without ''..''', left(coalesce(file ->> 'path', ''), 80)));
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION api_is_ipv4_cidr(p text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN family(p::cidr) = 4 AND masklen(p::cidr) <= 32;
EXCEPTION WHEN others THEN
    -- Host bits set ('10.1.2.3/8') are not a cidr value but are a CIDR block people write.
    BEGIN
        RETURN family(p::inet) = 4;
    EXCEPTION WHEN others THEN
        RETURN false;
    END;
END;
$$;

CREATE FUNCTION api_new_token() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
$$;

CREATE FUNCTION api_token_ok(p_cluster text, p_token text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_token IS NOT NULL AND length(p_token) <= 200
       AND EXISTS (SELECT 1 FROM cluster_tokens WHERE cluster_id = p_cluster AND token_hash = sha256(convert_to(p_token, 'UTF8')))
$$;

-- Throws unless the cluster exists and the token is one of its tokens. Returns its state.
CREATE FUNCTION api_holder(p_cluster text, p_token text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
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

-- client request: records the cluster and its provision job for the caller (session_user),
-- within the policy and the caller's quota. A request id used before by the same owner returns
-- that cluster with a new working token (only hashes are kept) and moves its deadline on.
CREATE FUNCTION api_request(p_request_id text, p_label text, p_request jsonb, p_abandon_after_seconds float8)
RETURNS TABLE (id text, lease_token text, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    who text := session_user;
    rules policy := policy_for(session_user);
    existing record;
    token text := api_new_token();
    new_id text := 'c-' || substr(md5(gen_random_uuid()::text), 1, 10);
    active_clusters int;
    active_nodes int;
    nodes int;
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
    PERFORM api_validate_request(p_request, who);
    IF p_request_id IS NOT NULL THEN
        -- One request id at a time: concurrent retries of the same id wait for each other.
        PERFORM pg_advisory_xact_lock(hashtextextended('flotilla-request:' || p_request_id, 0));
        SELECT c.id, c.owner, c.state INTO existing FROM clusters c WHERE c.request_id = p_request_id;
        IF FOUND THEN
            IF existing.owner <> who THEN
                PERFORM api_bad(format('request id %s belongs to another owner', p_request_id));
            END IF;
            IF existing.state IN ('failed', 'tearing_down', 'teardown_failed', 'destroyed') THEN
                RAISE EXCEPTION 'request id % was used for cluster %, which is %: use a new request id', p_request_id, existing.id, existing.state
                    USING ERRCODE = 'FLT03';
            END IF;
            INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (existing.id, sha256(convert_to(token, 'UTF8')));
            UPDATE clusters SET abandon_at = greatest(abandon_at, now() + make_interval(secs => p_abandon_after_seconds))
            WHERE clusters.id = existing.id AND collected_at IS NULL;
            INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (existing.id, 'request-retried', jsonb_build_object('by', who));
            RETURN QUERY SELECT existing.id::text, token, false;
            RETURN;
        END IF;
    END IF;
    -- Quotas: serialised per owner, so two requests at once cannot both pass the last slot.
    PERFORM pg_advisory_xact_lock(hashtextextended('flotilla-owner:' || who, 0));
    nodes := (p_request ->> 'masters')::int + (p_request ->> 'agents')::int + (p_request ->> 'publicAgents')::int;
    SELECT count(*), coalesce(sum(masters + agents + public_agents), 0) INTO active_clusters, active_nodes
    FROM clusters WHERE owner = who AND state NOT IN ('destroyed');
    IF active_clusters + 1 > rules.max_clusters THEN
        PERFORM api_refuse(format('%s already holds %s clusters: the quota is %s clusters at once (policy max_clusters)', who, active_clusters, rules.max_clusters));
    END IF;
    IF active_nodes + nodes > rules.max_total_nodes THEN
        PERFORM api_refuse(format('%s holds %s nodes and asks for %s more: the quota is %s nodes at once (policy max_total_nodes)', who, active_nodes, nodes, rules.max_total_nodes));
    END IF;
    INSERT INTO clusters (id, request_id, owner, label, masters, agents, public_agents, instance_type, request, lifetime, abandon_at)
    VALUES (new_id, p_request_id, who, p_label, (p_request ->> 'masters')::int, (p_request ->> 'agents')::int,
            (p_request ->> 'publicAgents')::int, p_request ->> 'instanceType', p_request,
            make_interval(secs => (p_request ->> 'lifetimeSeconds')::float8),
            now() + make_interval(secs => p_abandon_after_seconds));
    INSERT INTO cluster_secrets (cluster_id) VALUES (new_id);
    INSERT INTO cluster_tokens (cluster_id, token_hash) VALUES (new_id, sha256(convert_to(token, 'UTF8')));
    INSERT INTO jobs (kind, payload, max_attempts, idempotency_key)
    VALUES ('provision', jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id);
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (new_id, 'requested', jsonb_build_object('owner', who));
    RETURN QUERY SELECT new_id, token, true;
END;
$$;

-- What anyone may see of clusters (no secrets; the request and its id only to its owner).
CREATE FUNCTION api_clusters(p_id text, p_owner text, p_state text, p_limit int)
RETURNS TABLE (id text, request_id text, owner text, label text, state text, phase text, masters int, agents int,
               public_agents int, instance_type text, request text, lifetime_seconds float8, ssh_user text,
               ssh_port int, ready_at timestamptz, expires_at timestamptz, release_requested_at timestamptz,
               last_error text, created_at timestamptz, destroyed_at timestamptz, region text, deployment text,
               teardown_reason text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT c.id, CASE WHEN c.owner = session_user THEN c.request_id END, c.owner, c.label, c.state, c.phase, c.masters, c.agents, c.public_agents, c.instance_type,
           CASE WHEN c.owner = session_user THEN c.request::text ELSE '{}' END,
           extract(epoch FROM c.lifetime)::float8, c.ssh_user, c.ssh_port, c.ready_at, c.expires_at,
           c.release_requested_at, c.last_error, c.created_at, c.destroyed_at, c.region, c.deployment, c.teardown_reason
    FROM clusters c
    WHERE (p_id IS NULL OR c.id = p_id) AND (p_owner IS NULL OR c.owner = p_owner)
      AND (p_state IS NULL OR c.state = p_state)
    ORDER BY c.created_at DESC
    LIMIT least(greatest(coalesce(p_limit, 200), 1), 1000)
$$;

CREATE FUNCTION api_nodes(p_id text)
RETURNS TABLE (role text, instance_id text, private_ip text, public_ip text, host_key text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT n.role, n.instance_id, n.private_ip, n.public_ip, n.host_key FROM nodes n
    WHERE n.cluster_id = p_id
    ORDER BY array_position(ARRAY['bootstrap', 'master', 'slave', 'slave_public'], n.role), n.private_ip
$$;

-- The key, for the lease holder only; each read is an event (who, when) and collects the cluster.
CREATE FUNCTION api_key(p_id text, p_token text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    key text;
BEGIN
    PERFORM api_holder(p_id, p_token);
    SELECT private_key INTO key FROM cluster_secrets WHERE cluster_id = p_id;
    IF key IS NULL THEN
        RAISE EXCEPTION 'cluster % has no key yet (it is created when provisioning starts)', p_id USING ERRCODE = 'FLT04';
    END IF;
    UPDATE clusters SET collected_at = coalesce(collected_at, now()) WHERE id = p_id;
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (p_id, 'key-read', jsonb_build_object('by', session_user));
    RETURN key;
END;
$$;

-- Extends a ready cluster within the policy's whole-lifetime maximum. Returns the new expiry.
CREATE FUNCTION api_extend(p_id text, p_token text, p_seconds float8) RETURNS timestamptz
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
    SELECT * INTO c FROM clusters WHERE id = p_id FOR UPDATE;
    rules := policy_for(c.owner);
    IF c.state <> 'ready' THEN
        RAISE EXCEPTION 'cluster % is %, not ready: only a ready cluster can be extended', p_id, c.state USING ERRCODE = 'FLT03';
    END IF;
    IF c.expires_at + make_interval(secs => p_seconds) - c.ready_at > rules.max_total_lifetime THEN
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

-- Tears the cluster down now (the holder's release). Returns the state afterwards.
CREATE FUNCTION api_release(p_id text, p_token text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM api_holder(p_id, p_token);
    RETURN cluster_begin_teardown(p_id, 'released');
END;
$$;

-- Install logs of a failed cluster, for the holder.
CREATE FUNCTION api_logs(p_id text, p_token text) RETURNS TABLE (name text, contents text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM api_holder(p_id, p_token);
    RETURN QUERY SELECT l.name, l.contents FROM cluster_logs l WHERE l.cluster_id = p_id ORDER BY l.name;
END;
$$;

-- Queue depth for `client jobs`: jobs by state and the oldest runnable job's age.
CREATE FUNCTION api_job_counts() RETURNS TABLE (state text, jobs int, oldest_runnable_seconds float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT j.state, count(*)::int,
           CASE WHEN j.state = 'queued' THEN extract(epoch FROM now() - min(j.run_after) FILTER (WHERE j.run_after <= now()))::float8 END
    FROM jobs j GROUP BY j.state
$$;

-- Running jobs (with their worker and heartbeat age) and the latest failed ones; payloads
-- hold no secrets, errors are the jobs' own.
CREATE FUNCTION api_jobs() RETURNS TABLE (id bigint, kind text, cluster_id text, state text, attempt int, worker text,
                                          heartbeat_age_seconds float8, last_error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    (SELECT j.id, j.kind, j.payload ->> 'cluster_id', j.state, j.attempt, j.lease_owner,
            extract(epoch FROM now() - j.heartbeat_at)::float8, j.last_error
     FROM jobs j WHERE j.state = 'running' ORDER BY j.started_at LIMIT 50)
    UNION ALL
    (SELECT j.id, j.kind, j.payload ->> 'cluster_id', j.state, j.attempt, j.lease_owner, NULL, j.last_error
     FROM jobs j WHERE j.state = 'failed' ORDER BY j.finished_at DESC LIMIT 50)
$$;

-- cancel_job is for operators and the fleet, with the owner's rights.
ALTER FUNCTION cancel_job(bigint) SECURITY DEFINER SET search_path = public, pg_temp;

-- Who may do what. First nothing for anybody, the functions made above included.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO flotilla_worker, flotilla_client, flotilla_operator;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO flotilla_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO flotilla_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO flotilla_worker;

GRANT EXECUTE ON FUNCTION api_request(text, text, jsonb, float8), api_clusters(text, text, text, int), api_nodes(text),
                          api_key(text, text), api_extend(text, text, float8), api_release(text, text), api_logs(text, text),
                          api_job_counts(), api_jobs()
    TO flotilla_client, flotilla_worker;

GRANT SELECT ON operator_clusters, operator_jobs, operator_nodes, operator_key_pair_deletions TO flotilla_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON policy TO flotilla_operator;
GRANT EXECUTE ON FUNCTION cancel_job(bigint) TO flotilla_operator;
