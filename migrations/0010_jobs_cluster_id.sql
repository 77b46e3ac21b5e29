-- Jobs get a cluster_id column of their own (issue 23).
--
-- The job queue is generic: it claims, leases, retries and finishes jobs of any kind, and
-- only the job's handler reads its payload. Until now the cluster lifecycle found a cluster's
-- jobs by reading `payload ->> 'cluster_id'`: an expression index, the outcome trigger and
-- eight functions depended on what a payload happens to hold. The column says it outright,
-- and the foreign key makes a job for a cluster that does not exist impossible.
--
-- The payload keeps its cluster_id: it is the handler's input, and during a rolling update
-- the workers built before this migration still read it there. The functions below write
-- both from the same value in the same statement.
--
-- The functions are the 0003-0005 ones with that one change; schema/current.sql shows them
-- whole as they now stand.

ALTER TABLE jobs ADD COLUMN cluster_id text REFERENCES clusters (id);
UPDATE jobs SET cluster_id = payload ->> 'cluster_id'
WHERE payload ? 'cluster_id' AND EXISTS (SELECT 1 FROM clusters c WHERE c.id = jobs.payload ->> 'cluster_id');
DROP INDEX jobs_cluster_idx;
CREATE INDEX jobs_cluster_idx ON jobs (cluster_id, kind) WHERE cluster_id IS NOT NULL;

CREATE OR REPLACE VIEW operator_jobs AS
SELECT j.id,
       j.kind,
       j.cluster_id,
       j.state,
       j.attempt,
       j.max_attempts,
       date_trunc('second', now() - j.created_at) AS age,
       j.lease_owner AS worker,
       CASE WHEN j.state = 'running' THEN date_trunc('millisecond', now() - j.heartbeat_at) END AS heartbeat_age,
       j.last_error,
       j.run_after,
       j.finished_at
FROM jobs j;

CREATE OR REPLACE FUNCTION api_jobs() RETURNS TABLE (id bigint, kind text, cluster_id text, state text, attempt int, worker text,
                                          heartbeat_age_seconds float8, last_error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    (SELECT j.id, j.kind, j.cluster_id, j.state, j.attempt, j.lease_owner,
            extract(epoch FROM now() - j.heartbeat_at)::float8, j.last_error
     FROM jobs j WHERE j.state = 'running' ORDER BY j.started_at LIMIT 50)
    UNION ALL
    (SELECT j.id, j.kind, j.cluster_id, j.state, j.attempt, j.lease_owner, NULL, j.last_error
     FROM jobs j WHERE j.state = 'failed' ORDER BY j.finished_at DESC LIMIT 50)
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
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority)
    VALUES ('provision', new_id, jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 5);
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (new_id, 'requested', jsonb_build_object('owner', who));
    PERFORM api_check_quota(who, rules, nodes);
    RETURN QUERY SELECT new_id, token, true, NULL::text;
END;
$$;

CREATE OR REPLACE FUNCTION api_wait_info(p_id text) RETURNS TABLE (job_state text, ahead int, median_seconds float8, sample int)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    j jobs;
BEGIN
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

CREATE OR REPLACE FUNCTION cluster_begin_teardown(p_cluster text, p_reason text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    PERFORM 1 FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = p_cluster
                          AND state IN ('queued', 'running') FOR UPDATE;
    SELECT state INTO current FROM clusters WHERE id = p_cluster FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no cluster with id %', p_cluster USING ERRCODE = 'FLT04';
    END IF;
    IF current IN ('destroyed', 'tearing_down', 'teardown_failed') THEN
        RETURN current;
    END IF;
    UPDATE clusters SET state = 'tearing_down', phase = 'teardown queued', teardown_reason = p_reason,
                        release_requested_at = CASE WHEN p_reason = 'released' THEN coalesce(release_requested_at, now())
                                                    ELSE release_requested_at END
    WHERE id = p_cluster;
    UPDATE jobs SET
        state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
        cancel_requested = true,
        last_error = coalesce(last_error, 'cancelled: the cluster is being torn down (' || p_reason || ')'),
        updated_at = now()
    WHERE kind = 'provision' AND jobs.cluster_id = p_cluster AND state IN ('queued', 'running');
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (p_cluster, 'teardown-' || p_reason, jsonb_build_object('from', current));
    PERFORM cluster_queue_teardown(p_cluster);
    RETURN 'tearing_down';
END;
$$;

CREATE OR REPLACE FUNCTION cluster_begin_teardown_job(p_job bigint, p_token uuid, p_cluster text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    -- Job rows before the cluster row, as everywhere else (no deadlock with a job ending).
    PERFORM 1 FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = p_cluster
                          AND state IN ('queued', 'running') FOR UPDATE;
    IF EXISTS (SELECT 1 FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = p_cluster AND state = 'running') THEN
        RETURN 'wait';
    END IF;
    SELECT state INTO current FROM clusters WHERE id = p_cluster FOR UPDATE;
    IF current = 'destroyed' THEN
        RETURN 'destroyed';
    END IF;
    IF current IN ('requested', 'provisioning', 'ready') THEN
        -- Queued by reconcile for a cluster whose provision ended: take it over.
        PERFORM cluster_begin_teardown(p_cluster, 'reconciled');
    ELSIF current <> 'tearing_down' THEN
        UPDATE clusters SET state = 'tearing_down', phase = 'teardown started',
                            teardown_reason = coalesce(teardown_reason, current)
        WHERE id = p_cluster;
    END IF;
    RETURN 'tearing_down';
END;
$$;

CREATE OR REPLACE FUNCTION cluster_queue_teardown(p_cluster text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    job_id bigint;
BEGIN
    PERFORM 1 FROM clusters WHERE id = p_cluster FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no cluster with id %', p_cluster USING ERRCODE = 'FLT04';
    END IF;
    SELECT id INTO job_id FROM jobs
    WHERE kind = 'teardown' AND jobs.cluster_id = p_cluster AND state IN ('queued', 'running');
    IF FOUND THEN
        RETURN job_id;
    END IF;
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, priority)
    VALUES ('teardown', p_cluster, jsonb_build_object('cluster_id', p_cluster), 20, 10)
    RETURNING id INTO job_id;
    RETURN job_id;
END;
$$;

CREATE OR REPLACE FUNCTION cluster_require_lease(p_job bigint, p_token uuid, p_cluster text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs
    WHERE id = p_job AND lease_token = p_token AND state = 'running' AND lease_expires_at > now()
      AND jobs.cluster_id = p_cluster
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % no longer holds its lease on cluster %', p_job, p_cluster USING ERRCODE = 'FLT02';
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION clusters_reconcile(retry_after interval) RETURNS TABLE (cluster_id text, action text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.id, c.state FROM clusters c
        WHERE c.state IN ('requested', 'provisioning', 'failed', 'tearing_down', 'teardown_failed')
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind IN ('provision', 'teardown')
                                                 AND j.cluster_id = c.id AND j.state IN ('queued', 'running'))
          AND (c.state <> 'teardown_failed' OR c.updated_at <= now() - retry_after)
        ORDER BY c.id
        FOR UPDATE OF c SKIP LOCKED
    LOOP
        IF r.state IN ('requested', 'provisioning') THEN
            UPDATE clusters SET state = 'failed',
                   last_error = coalesce(last_error, 'its provision job ended without a result')
            WHERE id = r.id AND state = r.state;
            IF NOT FOUND THEN
                CONTINUE;
            END IF;
            INSERT INTO cluster_events (cluster_id, kind, detail)
            VALUES (r.id, 'failed', jsonb_build_object('error', 'reconciled: no provision job holds the cluster'));
        END IF;
        PERFORM cluster_queue_teardown(r.id);
        INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (r.id, 'reconciled', jsonb_build_object('from', r.state));
        cluster_id := r.id;
        action := 'teardown queued (was ' || r.state || ')';
        RETURN NEXT;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION jobs_cluster_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cluster text := NEW.cluster_id;
    reason text;
BEGIN
    IF cluster IS NULL OR NOT EXISTS (SELECT 1 FROM clusters WHERE id = cluster) THEN
        RETURN NULL;
    END IF;
    IF NEW.kind = 'provision' THEN
        reason := CASE WHEN NEW.state = 'cancelled'
                       THEN 'provisioning cancelled' || coalesce(': ' || NEW.last_error, '')
                       ELSE coalesce(NEW.last_error, 'provisioning failed') END;
        UPDATE clusters SET state = 'failed', last_error = left(reason, 4000)
        WHERE id = cluster AND state IN ('requested', 'provisioning');
        IF FOUND THEN
            INSERT INTO cluster_events (cluster_id, kind, detail)
            VALUES (cluster, 'failed', jsonb_build_object('error', left(reason, 4000), 'job', NEW.id, 'job_state', NEW.state));
        END IF;
        IF EXISTS (SELECT 1 FROM clusters WHERE id = cluster AND state NOT IN ('ready', 'destroyed')) THEN
            PERFORM cluster_queue_teardown(cluster);
        END IF;
    ELSIF NEW.kind = 'teardown' AND NEW.state = 'failed' THEN
        UPDATE clusters SET state = 'teardown_failed', phase = 'teardown failed',
                            last_error = left(coalesce(NEW.last_error, 'teardown failed'), 4000)
        WHERE id = cluster AND state = 'tearing_down';
        IF FOUND THEN
            INSERT INTO cluster_events (cluster_id, kind, detail)
            VALUES (cluster, 'teardown-failed', jsonb_build_object('error', left(coalesce(NEW.last_error, ''), 4000), 'job', NEW.id));
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pools_refill() RETURNS TABLE (pool text, action text, cluster_id text)
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
                INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority)
                VALUES ('provision', new_id, jsonb_build_object('cluster_id', new_id), 5, 'provision:' || new_id, 1);
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
