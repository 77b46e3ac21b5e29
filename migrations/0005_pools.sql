-- Warm pools, `client run`'s heartbeat, expiry warnings and the waiting line.
--
-- A pool is a cluster spec (the request minus its lifetime) kept ready ahead of demand. Its
-- clusters are ordinary clusters owned by 'pool:<name>' until a matching request takes one,
-- in one statement (FOR UPDATE SKIP LOCKED): the request's login becomes the owner, a fresh
-- lease token is issued and the lifetime starts then. Until then a pool cluster's lifetime is
-- the pool's maximum warm age, so the lifetime pass retires it like any expired cluster.
-- Only clusters that passed the janitor's health check recently (healthy_until) are handed
-- out; one that fails it is torn down.
--
-- The janitor keeps each pool at its target (pools_refill); the target follows demand:
-- requests that matched the pool within the last `cooldown`, between min_ready and max_ready
-- (up at once on a burst, down once the burst is older than the cooldown).

CREATE TABLE pools (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    -- The request every pool cluster is built from, without lifetimeSeconds.
    spec          jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    spec_hash     text NOT NULL UNIQUE,
    -- The region pool clusters are built in; NULL: the region of whichever worker builds them.
    region        text,
    min_ready     integer NOT NULL CHECK (min_ready >= 0),
    max_ready     integer NOT NULL CHECK (max_ready BETWEEN 0 AND 50),
    max_warm_age  interval NOT NULL DEFAULT interval '6 hours' CHECK (max_warm_age >= interval '5 minutes'),
    cooldown      interval NOT NULL DEFAULT interval '15 minutes' CHECK (cooldown > interval '0'),
    paused        boolean NOT NULL DEFAULT false,
    -- The last target pools_refill computed, for people and metrics.
    target        integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (min_ready <= max_ready)
);

-- Requests that matched a pool: hit (given a pool cluster) or miss (the pool had none ready).
CREATE TABLE pool_demand (
    pool text NOT NULL REFERENCES pools (name) ON DELETE CASCADE,
    at   timestamptz NOT NULL DEFAULT now(),
    hit  boolean NOT NULL
);
CREATE INDEX pool_demand_idx ON pool_demand (pool, at);

ALTER TABLE clusters
    ADD COLUMN pool          text,
    ADD COLUMN spec_hash     text,
    ADD COLUMN handed_out_at timestamptz,
    ADD COLUMN healthy_until timestamptz,
    -- `client run` beats; a holder whose beat stops for holder_timeout loses the cluster.
    ADD COLUMN holder_heartbeat_at timestamptz,
    ADD COLUMN holder_timeout      interval CHECK (holder_timeout BETWEEN interval '2 seconds' AND interval '1 hour');

-- A login's quota counts its clusters that are not destroyed: an index of those alone keeps
-- the count small however long the login's history grows.
CREATE INDEX clusters_owner_active_idx ON clusters (owner) WHERE state <> 'destroyed';

CREATE INDEX clusters_pool_idx ON clusters (pool, spec_hash, ready_at)
    WHERE pool IS NOT NULL AND handed_out_at IS NULL AND state IN ('requested', 'provisioning', 'ready');
CREATE INDEX clusters_heartbeat_idx ON clusters (holder_heartbeat_at)
    WHERE holder_heartbeat_at IS NOT NULL AND state IN ('requested', 'provisioning', 'ready');

-- The part of a request that decides which pool serves it.
CREATE FUNCTION pool_spec(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT p - 'lifetimeSeconds'
$$;

CREATE FUNCTION pool_spec_hash(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(pool_spec(p)::text, 'UTF8')), 'hex')
$$;

-- An unclaimed pool cluster: built for a pool, not yet anybody's.
CREATE FUNCTION cluster_is_spare(c clusters) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT c.pool IS NOT NULL AND c.handed_out_at IS NULL
$$;

-- `worker pool set`: creates or changes a pool. A changed spec gets a new hash; the clusters
-- built for the old one are replaced by pools_refill. Returns the spec's hash.
CREATE FUNCTION pool_set(p_name text, p_spec jsonb, p_region text, p_min int, p_max int,
                         p_max_warm_age interval, p_cooldown interval) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    hash text;
    other text;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[a-z0-9][a-z0-9-]{0,39}$' THEN
        PERFORM api_bad(format('pool name ''%s'' must be 1 to 40 lowercase letters, digits and dashes', left(coalesce(p_name, ''), 60)));
    END IF;
    IF p_min IS NULL OR p_max IS NULL OR p_min < 0 OR p_max < p_min OR p_max > 50 THEN
        PERFORM api_bad('pool sizes need 0 <= min <= max <= 50');
    END IF;
    -- The same rules as any request: a pool cluster is a request made ahead of time.
    PERFORM api_validate_request(p_spec || jsonb_build_object('lifetimeSeconds', 3600), '*');
    hash := pool_spec_hash(p_spec);
    SELECT name INTO other FROM pools WHERE spec_hash = hash AND name <> p_name;
    IF FOUND THEN
        PERFORM api_bad(format('pool %s already has this spec; one spec, one pool', other));
    END IF;
    INSERT INTO pools (name, spec, spec_hash, region, min_ready, max_ready, max_warm_age, cooldown)
    VALUES (p_name, pool_spec(p_spec), hash, p_region, p_min, p_max,
            coalesce(p_max_warm_age, interval '6 hours'), coalesce(p_cooldown, interval '15 minutes'))
    ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, spec_hash = EXCLUDED.spec_hash, region = EXCLUDED.region,
        min_ready = EXCLUDED.min_ready, max_ready = EXCLUDED.max_ready,
        max_warm_age = coalesce(p_max_warm_age, pools.max_warm_age), cooldown = coalesce(p_cooldown, pools.cooldown),
        updated_at = now();
    PERFORM pg_notify('flotilla_clusters', 'pool:' || p_name);
    RETURN hash;
END;
$$;

-- `worker pool delete`: the pool goes, and its unclaimed clusters are torn down. Returns how
-- many teardowns it started.
CREATE FUNCTION pool_delete(p_name text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n int := 0;
BEGIN
    PERFORM 1 FROM pools WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM api_bad(format('no pool named %s (see `worker pool list`)', left(coalesce(p_name, ''), 60)));
    END IF;
    FOR r IN SELECT c.id FROM clusters c WHERE c.pool = p_name AND c.handed_out_at IS NULL
                                            AND c.state IN ('requested', 'provisioning', 'ready', 'failed') ORDER BY c.id
    LOOP
        IF cluster_begin_teardown(r.id, 'pool-deleted') = 'tearing_down' THEN n := n + 1; END IF;
    END LOOP;
    DELETE FROM pools WHERE name = p_name;
    RETURN n;
END;
$$;

-- The janitor's pool pass, one transaction: for every pool, tear down the unclaimed clusters
-- of an old spec, compute the target from demand, and queue new pool clusters up to it (not
-- while paused), or retire spare ready ones above it once the cooldown passed. Returns one
-- row per action.
CREATE FUNCTION pools_refill() RETURNS TABLE (pool text, action text, cluster_id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p pools;
    r record;
    demand int;
    last_demand timestamptz;
    spare int;
    spare_ready int;
    want int;
    new_id text;
    recent_failures int;
BEGIN
    FOR p IN SELECT * FROM pools ORDER BY name FOR UPDATE LOOP
        DELETE FROM pool_demand d WHERE d.pool = p.name AND d.at < now() - interval '1 day';
        FOR r IN SELECT c.id FROM clusters c
                 WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.spec_hash <> p.spec_hash
                   AND c.state IN ('requested', 'provisioning', 'ready') ORDER BY c.id
        LOOP
            IF cluster_begin_teardown(r.id, 'pool-replaced') = 'tearing_down' THEN
                pool := p.name; action := 'replaced (spec changed)'; cluster_id := r.id; RETURN NEXT;
            END IF;
        END LOOP;
        SELECT count(*), max(d.at) INTO demand, last_demand FROM pool_demand d WHERE d.pool = p.name AND d.at > now() - p.cooldown;
        want := greatest(p.min_ready, least(p.max_ready, demand));
        UPDATE pools SET target = want WHERE name = p.name AND target IS DISTINCT FROM want;
        SELECT count(*), count(*) FILTER (WHERE c.state = 'ready') INTO spare, spare_ready FROM clusters c
        WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.spec_hash = p.spec_hash
          AND c.state IN ('requested', 'provisioning', 'ready');
        -- A pool whose builds keep failing (a bad installer URL, no capacity) is not refilled
        -- in a loop: after 3 failures within 10 minutes it waits for them to age out.
        SELECT count(*) INTO recent_failures FROM cluster_events e JOIN clusters c ON c.id = e.cluster_id
        WHERE c.pool = p.name AND c.handed_out_at IS NULL AND e.kind = 'failed' AND e.at > now() - interval '10 minutes';
        IF NOT p.paused AND spare < want AND recent_failures >= 3 THEN
            pool := p.name; action := 'held: ' || recent_failures || ' builds failed in the last 10 minutes'; cluster_id := NULL; RETURN NEXT;
        ELSIF NOT p.paused AND spare < want THEN
            FOR i IN 1 .. want - spare LOOP
                new_id := 'c-' || substr(md5(gen_random_uuid()::text), 1, 10);
                INSERT INTO clusters (id, owner, label, masters, agents, public_agents, instance_type, request, lifetime,
                                      pool, spec_hash, region)
                VALUES (new_id, 'pool:' || p.name, 'warm pool ' || p.name, (p.spec ->> 'masters')::int, (p.spec ->> 'agents')::int,
                        (p.spec ->> 'publicAgents')::int, p.spec ->> 'instanceType',
                        p.spec || jsonb_build_object('lifetimeSeconds', extract(epoch FROM p.max_warm_age)),
                        p.max_warm_age, p.name, p.spec_hash, p.region);
                INSERT INTO cluster_secrets (cluster_id) VALUES (new_id);
                -- Below a person's request (5), above nothing: a waiting CI job goes first.
                INSERT INTO jobs (kind, payload, max_attempts, idempotency_key, priority)
                VALUES ('provision', jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 1);
                INSERT INTO cluster_events (cluster_id, kind, detail)
                VALUES (new_id, 'requested', jsonb_build_object('owner', 'pool:' || p.name, 'pool', p.name, 'target', want));
                pool := p.name; action := 'refill'; cluster_id := new_id; RETURN NEXT;
            END LOOP;
        ELSIF spare_ready > want AND (last_demand IS NULL OR last_demand < now() - p.cooldown) THEN
            FOR r IN SELECT c.id FROM clusters c
                     WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.state = 'ready'
                     ORDER BY c.ready_at LIMIT spare_ready - want FOR UPDATE SKIP LOCKED
            LOOP
                IF cluster_begin_teardown(r.id, 'pool-shrunk') = 'tearing_down' THEN
                    pool := p.name; action := 'shrunk'; cluster_id := r.id; RETURN NEXT;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
END;
$$;

-- The health check's verdicts, written by the janitor. A cluster taken meanwhile is left to
-- its new holder.
CREATE FUNCTION pool_cluster_healthy(p_cluster text, p_valid_for interval) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE clusters SET healthy_until = now() + p_valid_for
    WHERE id = p_cluster AND pool IS NOT NULL AND handed_out_at IS NULL AND state = 'ready';
    RETURN FOUND;
END;
$$;

CREATE FUNCTION pool_cluster_unhealthy(p_cluster text, p_problem text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM clusters WHERE id = p_cluster AND pool IS NOT NULL AND handed_out_at IS NULL AND state = 'ready' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE clusters SET healthy_until = NULL, last_error = left(p_problem, 2000) WHERE id = p_cluster;
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (p_cluster, 'health-check-failed', jsonb_build_object('problem', left(p_problem, 2000)));
    RETURN cluster_begin_teardown(p_cluster, 'pool-unhealthy') = 'tearing_down';
END;
$$;

-- Ready unclaimed pool clusters whose health verdict is missing or runs out within p_ahead.
CREATE FUNCTION pool_clusters_to_check(p_ahead interval) RETURNS TABLE (cluster_id text)
LANGUAGE sql STABLE AS $$
    SELECT c.id FROM clusters c
    WHERE c.pool IS NOT NULL AND c.handed_out_at IS NULL AND c.state = 'ready'
      AND (c.healthy_until IS NULL OR c.healthy_until < now() + p_ahead)
    ORDER BY c.healthy_until NULLS FIRST, c.ready_at
$$;

-- The line a request waits in: queued provision jobs that will be claimed before this one,
-- and the median time recent clusters took from request to ready.
CREATE FUNCTION api_wait_info(p_id text) RETURNS TABLE (job_state text, ahead int, median_seconds float8, sample int)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    j jobs;
BEGIN
    SELECT * INTO j FROM jobs WHERE kind = 'provision' AND payload ->> 'cluster_id' = p_id ORDER BY id DESC LIMIT 1;
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

-- A cluster's story, for anyone (events carry no secrets: ids, logins, phases, reasons).
CREATE FUNCTION api_events(p_id text, p_after bigint) RETURNS TABLE (id bigint, at timestamptz, kind text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT e.id, e.at, e.kind, e.detail::text FROM cluster_events e
    WHERE e.cluster_id = p_id AND e.id > coalesce(p_after, 0)
    ORDER BY e.id LIMIT 1000
$$;

-- `client run`'s heartbeat: while it beats, the holder is alive; when the beats stop for
-- p_timeout_seconds, the janitor releases the cluster (reason holder-lost). Returns the expiry.
CREATE FUNCTION api_heartbeat(p_id text, p_token text, p_timeout_seconds float8) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    current text := api_holder(p_id, p_token);
    expiry timestamptz;
BEGIN
    IF p_timeout_seconds IS NULL OR p_timeout_seconds < 2 OR p_timeout_seconds > 3600 THEN
        PERFORM api_bad('a heartbeat timeout must be between 2 seconds and 1 hour');
    END IF;
    IF current NOT IN ('requested', 'provisioning', 'ready') THEN
        RAISE EXCEPTION 'cluster % is %: nothing to keep alive', p_id, current USING ERRCODE = 'FLT03';
    END IF;
    UPDATE clusters SET holder_heartbeat_at = now(), holder_timeout = make_interval(secs => p_timeout_seconds),
                        collected_at = coalesce(collected_at, now())
    WHERE id = p_id RETURNING expires_at INTO expiry;
    RETURN expiry;
END;
$$;

-- client request, with pools: a request whose spec matches a pool takes one of its ready,
-- healthy clusters (or, with p_pool_mode 'wait', one still being built) in this statement;
-- otherwise a new cluster is recorded as before. p_pool_mode: 'auto' (a pool if it has a
-- ready cluster, else new), 'wait' (a pool cluster even if still building), 'never'.
-- `from_pool` names the pool a cluster came from.
-- The owner's quota, checked after the request's cluster was taken or recorded (so it is
-- counted): serialised per owner by a lock held to commit, so two requests at once cannot
-- both take the last slot. Taken last, the lock is held for this count and the commit only.
CREATE FUNCTION api_check_quota(p_owner text, p_rules policy, p_nodes int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    active_clusters int;
    active_nodes int;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('flotilla-owner:' || p_owner, 0));
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

DROP FUNCTION api_request(text, text, jsonb, float8);
CREATE FUNCTION api_request(p_request_id text, p_label text, p_request jsonb, p_abandon_after_seconds float8,
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
        PERFORM pg_advisory_xact_lock(hashtextextended('flotilla-request:' || p_request_id, 0));
        SELECT c.id, c.owner, c.state, c.pool INTO existing FROM clusters c WHERE c.request_id = p_request_id;
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
    INSERT INTO jobs (kind, payload, max_attempts, idempotency_key, priority)
    VALUES ('provision', jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 5);
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (new_id, 'requested', jsonb_build_object('owner', who));
    PERFORM api_check_quota(who, rules, nodes);
    RETURN QUERY SELECT new_id, token, true, NULL::text;
END;
$$;

-- The whole lifetime is counted from hand-out for pool clusters, from ready for the rest.
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
    SELECT * INTO c FROM clusters WHERE id = p_id FOR UPDATE;
    rules := policy_for(c.owner);
    IF c.state <> 'ready' THEN
        RAISE EXCEPTION 'cluster % is %, not ready: only a ready cluster can be extended', p_id, c.state USING ERRCODE = 'FLT03';
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

-- The lifetime pass, now also: a holder whose heartbeat stopped loses its cluster
-- (holder-lost). Unclaimed pool clusters are never abandoned (nobody is to collect them).
CREATE OR REPLACE FUNCTION clusters_start_due_teardowns() RETURNS TABLE (cluster_id text, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.id, CASE WHEN c.state = 'ready' AND c.expires_at <= now() THEN 'expired'
                          WHEN c.holder_heartbeat_at + c.holder_timeout <= now() THEN 'holder-lost'
                          ELSE 'abandoned' END AS why
        FROM clusters c
        WHERE (c.state = 'ready' AND c.expires_at <= now())
           OR (c.state IN ('requested', 'provisioning', 'ready') AND c.collected_at IS NULL AND c.abandon_at <= now())
           OR (c.state IN ('requested', 'provisioning', 'ready') AND c.holder_heartbeat_at + c.holder_timeout <= now())
        ORDER BY c.id
    LOOP
        IF cluster_begin_teardown(r.id, r.why) = 'tearing_down' THEN
            cluster_id := r.id;
            reason := r.why;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

-- The next moment the lifetime pass has something to do: an expiry, a collection deadline,
-- a heartbeat deadline, or an expiry warning.
CREATE FUNCTION clusters_next_deadline() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(expires_at) FROM clusters WHERE state = 'ready'),
        (SELECT min(abandon_at) FROM clusters WHERE collected_at IS NULL AND state IN ('requested', 'provisioning', 'ready')),
        (SELECT min(holder_heartbeat_at + holder_timeout) FROM clusters
         WHERE holder_heartbeat_at IS NOT NULL AND state IN ('requested', 'provisioning', 'ready')),
        (SELECT min(w) FROM clusters c, LATERAL (VALUES (c.expires_at - interval '30 minutes'), (c.expires_at - interval '10 minutes')) v(w)
         WHERE c.state = 'ready' AND NOT cluster_is_spare(c) AND w > now()))
$$;

-- Warnings 30 and 10 minutes before a held cluster expires, as events: one per threshold
-- and expiry (an extension moves the expiry, and a later warning is given again). Only the
-- nearest threshold crossed is recorded. Returns the warnings it wrote.
CREATE FUNCTION clusters_expiry_warnings() RETURNS TABLE (cluster_id text, minutes int, expires_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.id, c.expires_at AS expiry, CASE WHEN c.expires_at - now() <= interval '10 minutes' THEN 10 ELSE 30 END AS m
        FROM clusters c
        WHERE c.state = 'ready' AND NOT cluster_is_spare(c) AND c.expires_at > now()
          AND c.expires_at - now() <= interval '30 minutes'
    LOOP
        IF NOT EXISTS (SELECT 1 FROM cluster_events e WHERE e.cluster_id = r.id AND e.kind = 'expiry-warning'
                          AND (e.detail ->> 'minutes')::int <= r.m AND (e.detail ->> 'expires_at')::timestamptz = r.expiry) THEN
            INSERT INTO cluster_events (cluster_id, kind, detail)
            VALUES (r.id, 'expiry-warning', jsonb_build_object('minutes', r.m, 'expires_at', r.expiry,
                                                               'expires_epoch', extract(epoch FROM r.expiry)));
            cluster_id := r.id; minutes := r.m; expires_at := r.expiry;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

-- Operators: pools with their counts (no secrets).
CREATE VIEW operator_pools AS
SELECT p.name, p.paused, p.min_ready, p.max_ready, p.target,
       (SELECT count(*) FROM clusters c WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.spec_hash = p.spec_hash
                                          AND c.state = 'ready')::int AS ready,
       (SELECT count(*) FROM clusters c WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.spec_hash = p.spec_hash
                                          AND c.state = 'ready' AND c.healthy_until > now())::int AS healthy,
       (SELECT count(*) FROM clusters c WHERE c.pool = p.name AND c.handed_out_at IS NULL AND c.spec_hash = p.spec_hash
                                          AND c.state IN ('requested', 'provisioning'))::int AS building,
       (SELECT count(*) FROM clusters c WHERE c.pool = p.name AND c.handed_out_at IS NOT NULL
                                          AND c.state NOT IN ('destroyed'))::int AS handed_out,
       p.region, p.spec ->> 'instanceType' AS instance_type,
       (p.spec ->> 'masters')::int + (p.spec ->> 'agents')::int + (p.spec ->> 'publicAgents')::int AS node_count,
       p.max_warm_age, p.cooldown, left(p.spec_hash, 12) AS spec_hash, p.updated_at
FROM pools p;

REVOKE ALL ON pools, pool_demand FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pools, pool_demand TO flotilla_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO flotilla_worker;
GRANT EXECUTE ON FUNCTION api_request(text, text, jsonb, float8, text), api_wait_info(text), api_events(text, bigint),
                          api_heartbeat(text, text, float8)
    TO flotilla_client;
GRANT SELECT ON operator_pools TO flotilla_operator, flotilla_worker;
