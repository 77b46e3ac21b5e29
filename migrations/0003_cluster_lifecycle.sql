-- The cluster owns its life: a state machine enforced here, and every way a provision job
-- can end converging on a teardown.
--
--   requested ──► provisioning ──► ready ──► tearing_down ──► destroyed
--       │              │             ▲            │  ▲
--       ├──────────────┴──► failed ──┼────────────┘  │ (teardown queued again)
--       └──────────────────────────► tearing_down    └── teardown_failed
--
-- * `ready` only from `provisioning`; nothing leaves `tearing_down` but `destroyed` or a
--   visible `teardown_failed`, which the janitor's reconcile pass retries later.
-- * A provision job that ends failed or cancelled, for any reason (an error of any type on
--   its last attempt, its lease lost on the last attempt, an operator's cancel), marks its
--   cluster failed and queues the teardown in the same transaction (trigger below).
-- * Worker writes go through functions that check the job's lease and the cluster's state
--   together and raise when either does not hold: a guarded update that matches nothing is
--   an error the caller sees.
--
-- Errors raised here carry their own SQLSTATEs, which the Swift side maps:
--   FLT01  a transition the state machine does not allow
--   FLT02  the caller no longer holds the job's lease
--   FLT03  the cluster is not in a state that allows the write
--   FLT04  no such cluster

ALTER TABLE clusters DROP CONSTRAINT clusters_state_check;
ALTER TABLE clusters ADD CONSTRAINT clusters_state_check
    CHECK (state IN ('requested', 'provisioning', 'ready', 'failed', 'tearing_down', 'teardown_failed', 'destroyed'));

ALTER TABLE clusters
    -- Where the cluster lives, recorded by the first worker that provisions it; teardown and
    -- key-pair deletion use it, never the region of the worker that happens to run them.
    ADD COLUMN region      text,
    ADD COLUMN subnet_id   text,
    ADD COLUMN account_id  text,
    -- The deployment tag every resource carries; the sweep touches only its own.
    ADD COLUMN deployment  text,
    -- Why teardown started: released, expired, failed, abandoned, reconciled.
    ADD COLUMN teardown_reason text,
    -- The server gives up on a request nobody collected (read its key, extended it) by then.
    ADD COLUMN abandon_at   timestamptz,
    ADD COLUMN collected_at timestamptz;

-- Secrets are erased at destroy, the token with them.
ALTER TABLE cluster_secrets ALTER COLUMN lease_token DROP NOT NULL;

CREATE INDEX clusters_unsettled_idx ON clusters (state) WHERE state NOT IN ('ready', 'destroyed');
CREATE INDEX clusters_abandon_idx ON clusters (abandon_at) WHERE collected_at IS NULL AND state IN ('requested', 'provisioning', 'ready');

-- A cluster's jobs, for the reconcile pass and the "does a provision still hold it" check.
CREATE INDEX jobs_cluster_idx ON jobs ((payload ->> 'cluster_id'), kind) WHERE kind IN ('provision', 'teardown');

-- Teardown jobs are no longer keyed by the cluster forever: a second teardown may be queued
-- once an earlier one ended (cluster_queue_teardown serialises on the cluster row instead).
UPDATE jobs SET idempotency_key = NULL WHERE kind = 'teardown' AND idempotency_key LIKE 'teardown:%';

-- This database's identity, the default deployment tag of the fleet that uses it.
CREATE TABLE deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        text NOT NULL CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$')
);
INSERT INTO deployment (id) VALUES ('fl-' || substr(md5(gen_random_uuid()::text), 1, 12));

-- The state machine.
CREATE FUNCTION cluster_transition_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (from_state, to_state) IN (
        ('requested', 'provisioning'), ('requested', 'failed'), ('requested', 'tearing_down'),
        ('provisioning', 'ready'), ('provisioning', 'failed'), ('provisioning', 'tearing_down'),
        ('ready', 'tearing_down'),
        ('failed', 'tearing_down'),
        ('tearing_down', 'destroyed'), ('tearing_down', 'teardown_failed'),
        ('teardown_failed', 'tearing_down'))
$$;

CREATE FUNCTION clusters_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT cluster_transition_allowed(OLD.state, NEW.state) THEN
        RAISE EXCEPTION 'cluster % cannot go from % to %', OLD.id, OLD.state, NEW.state USING ERRCODE = 'FLT01';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER clusters_guard_transition BEFORE UPDATE OF state ON clusters
    FOR EACH ROW EXECUTE FUNCTION clusters_guard_transition();

-- Queues the cluster's teardown unless one is queued or running. Locks the cluster row, so
-- two callers never queue two. Returns the teardown job's id.
CREATE FUNCTION cluster_queue_teardown(p_cluster text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    job_id bigint;
BEGIN
    PERFORM 1 FROM clusters WHERE id = p_cluster FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no cluster with id %', p_cluster USING ERRCODE = 'FLT04';
    END IF;
    SELECT id INTO job_id FROM jobs
    WHERE kind = 'teardown' AND payload ->> 'cluster_id' = p_cluster AND state IN ('queued', 'running');
    IF FOUND THEN
        RETURN job_id;
    END IF;
    INSERT INTO jobs (kind, payload, max_attempts, priority)
    VALUES ('teardown', jsonb_build_object('cluster_id', p_cluster), 20, 10)
    RETURNING id INTO job_id;
    RETURN job_id;
END;
$$;

-- Starts tearing the cluster down now, for `reason` (released, expired, abandoned, …): a
-- provision job that holds it is cancelled (a queued one at once, a running one at its next
-- heartbeat), the cluster becomes tearing_down, and the teardown is queued, in one
-- transaction. The provision jobs are locked before the cluster row, in the same order as a
-- job ending does (job row, then the trigger's cluster row), so the two never deadlock.
-- Returns the state the cluster is in afterwards.
CREATE FUNCTION cluster_begin_teardown(p_cluster text, p_reason text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    PERFORM 1 FROM jobs WHERE kind = 'provision' AND payload ->> 'cluster_id' = p_cluster
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
    WHERE kind = 'provision' AND payload ->> 'cluster_id' = p_cluster AND state IN ('queued', 'running');
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (p_cluster, 'teardown-' || p_reason, jsonb_build_object('from', current));
    PERFORM cluster_queue_teardown(p_cluster);
    RETURN 'tearing_down';
END;
$$;

-- A provision job ended without a ready cluster: failed (any error on its last attempt, or a
-- lease lost on its last attempt) or cancelled. The cluster, if it is still on its way to
-- ready, becomes failed with the job's reason, and its teardown is queued, in the job's
-- own transaction. A teardown job that ends failed leaves its cluster in teardown_failed.
CREATE FUNCTION jobs_cluster_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cluster text := NEW.payload ->> 'cluster_id';
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

CREATE TRIGGER jobs_cluster_outcome AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.kind IN ('provision', 'teardown') AND NEW.state IN ('failed', 'cancelled')
                       AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION jobs_cluster_outcome();

-- Cancels a job, for operators and clients of the queue: a queued job at once, a running job
-- at its worker's next heartbeat. Returns the job's state afterwards, NULL for no such job.
CREATE FUNCTION cancel_job(p_job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    UPDATE jobs SET
        state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
        cancel_requested = true, updated_at = now()
    WHERE id = p_job AND state IN ('queued', 'running')
    RETURNING state INTO result;
    IF result IS NULL THEN
        SELECT state INTO result FROM jobs WHERE id = p_job;
    END IF;
    RETURN result;
END;
$$;

-- Worker writes. Each takes the job's id and lease token and raises FLT02 unless the job
-- still holds its lease and belongs to the cluster; the job row is locked first.
CREATE FUNCTION cluster_require_lease(p_job bigint, p_token uuid, p_cluster text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs
    WHERE id = p_job AND lease_token = p_token AND state = 'running' AND lease_expires_at > now()
      AND payload ->> 'cluster_id' = p_cluster
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % no longer holds its lease on cluster %', p_job, p_cluster USING ERRCODE = 'FLT02';
    END IF;
END;
$$;

-- Raises FLT03 naming the state the cluster is in.
CREATE FUNCTION cluster_refuse(p_cluster text, p_what text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    SELECT state INTO current FROM clusters WHERE id = p_cluster;
    IF current IS NULL THEN
        RAISE EXCEPTION 'no cluster with id %', p_cluster USING ERRCODE = 'FLT04';
    END IF;
    RAISE EXCEPTION 'cannot %: cluster % is %', p_what, p_cluster, current USING ERRCODE = 'FLT03';
END;
$$;

-- Provisioning starts (or resumes on a later attempt). The region and deployment are
-- recorded by the first worker; later workers get the recorded ones back and use them.
CREATE FUNCTION cluster_start_provisioning(p_job bigint, p_token uuid, p_cluster text,
                                           p_region text, p_deployment text, p_account text)
RETURNS TABLE (region text, deployment text) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    PERFORM cluster_refuse_if_cancelled(p_job, p_cluster, 'start provisioning');
    RETURN QUERY
    UPDATE clusters c SET state = 'provisioning', phase = coalesce(c.phase, 'started'),
                          region = coalesce(c.region, p_region), deployment = coalesce(c.deployment, p_deployment),
                          account_id = coalesce(c.account_id, p_account), updated_at = now()
    WHERE c.id = p_cluster AND c.state IN ('requested', 'provisioning')
    RETURNING c.region, c.deployment;
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'start provisioning');
    END IF;
END;
$$;

-- Raises FLT03 when the job was asked to cancel: a cancelled provision never goes on to a
-- checkpoint or to ready, so an operator's cancel always ends in a teardown.
CREATE FUNCTION cluster_refuse_if_cancelled(p_job bigint, p_cluster text, p_what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jobs WHERE id = p_job AND cancel_requested) THEN
        RAISE EXCEPTION 'cannot %: the provision job of cluster % was cancelled', p_what, p_cluster USING ERRCODE = 'FLT03';
    END IF;
END;
$$;

-- A checkpoint, only while the cluster is provisioning under this job's lease.
CREATE FUNCTION cluster_save_checkpoint(p_job bigint, p_token uuid, p_cluster text, p_checkpoint jsonb, p_phase text,
                                        p_subnet text, p_private_key text, p_public_key text, p_key_pair text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    PERFORM cluster_refuse_if_cancelled(p_job, p_cluster, 'save a checkpoint');
    UPDATE clusters SET checkpoint = p_checkpoint, phase = p_phase, subnet_id = coalesce(p_subnet, subnet_id), updated_at = now()
    WHERE id = p_cluster AND state = 'provisioning';
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'save a checkpoint');
    END IF;
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (p_cluster, 'phase', jsonb_build_object('phase', p_phase));
    IF p_private_key IS NOT NULL THEN
        UPDATE cluster_secrets SET private_key = p_private_key, public_key = p_public_key, key_pair_name = p_key_pair
        WHERE cluster_id = p_cluster AND private_key IS DISTINCT FROM p_private_key;
    END IF;
END;
$$;

-- Publishes the nodes and starts the lifetime: provisioning → ready, nothing else.
CREATE FUNCTION cluster_mark_ready(p_job bigint, p_token uuid, p_cluster text, p_nodes jsonb, p_ssh_user text, p_ssh_port integer)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    expiry timestamptz;
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    PERFORM cluster_refuse_if_cancelled(p_job, p_cluster, 'mark the cluster ready');
    UPDATE clusters SET state = 'ready', phase = 'ready', ready_at = now(), expires_at = now() + lifetime,
                        ssh_user = p_ssh_user, ssh_port = p_ssh_port, last_error = NULL
    WHERE id = p_cluster AND state = 'provisioning'
    RETURNING expires_at INTO expiry;
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'mark the cluster ready');
    END IF;
    DELETE FROM nodes WHERE cluster_id = p_cluster;
    INSERT INTO nodes (cluster_id, instance_id, role, private_ip, public_ip, host_key)
    SELECT p_cluster, n.instance_id, n.role, n.private_ip, n.public_ip, n.host_key
    FROM jsonb_to_recordset(p_nodes) AS n(instance_id text, role text, private_ip text, public_ip text, host_key text);
    INSERT INTO cluster_events (cluster_id, kind) VALUES (p_cluster, 'ready');
    RETURN expiry;
END;
$$;

-- Install logs of a failed phase (any state but destroyed).
CREATE FUNCTION cluster_save_logs(p_job bigint, p_token uuid, p_cluster text, p_names text[], p_contents text[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    IF EXISTS (SELECT 1 FROM clusters WHERE id = p_cluster AND state = 'destroyed') THEN
        PERFORM cluster_refuse(p_cluster, 'save install logs');
    END IF;
    INSERT INTO cluster_logs (cluster_id, name, contents)
    SELECT p_cluster, n, c FROM unnest(p_names, p_contents) AS l(n, c)
    ON CONFLICT (cluster_id, name) DO UPDATE SET contents = EXCLUDED.contents, created_at = now();
END;
$$;

-- The teardown job takes the cluster: failed or teardown_failed become tearing_down. Returns
-- 'wait' while a provision job still runs for the cluster (the teardown job then sleeps
-- without spending an attempt), 'destroyed' when there is nothing left to do, else
-- 'tearing_down'.
CREATE FUNCTION cluster_begin_teardown_job(p_job bigint, p_token uuid, p_cluster text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    -- Job rows before the cluster row, as everywhere else (no deadlock with a job ending).
    PERFORM 1 FROM jobs WHERE kind = 'provision' AND payload ->> 'cluster_id' = p_cluster
                          AND state IN ('queued', 'running') FOR UPDATE;
    IF EXISTS (SELECT 1 FROM jobs WHERE kind = 'provision' AND payload ->> 'cluster_id' = p_cluster AND state = 'running') THEN
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

CREATE FUNCTION cluster_teardown_progress(p_job bigint, p_token uuid, p_cluster text, p_phase text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    UPDATE clusters SET phase = p_phase, updated_at = now() WHERE id = p_cluster AND state = 'tearing_down';
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'record teardown progress');
    END IF;
END;
$$;

-- tearing_down → destroyed; the key and the token are erased in the same transaction.
CREATE FUNCTION cluster_mark_destroyed(p_job bigint, p_token uuid, p_cluster text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    UPDATE clusters SET state = 'destroyed', phase = 'destroyed', destroyed_at = now()
    WHERE id = p_cluster AND state = 'tearing_down';
    IF NOT FOUND THEN
        PERFORM cluster_refuse(p_cluster, 'mark the cluster destroyed');
    END IF;
    UPDATE cluster_secrets SET private_key = NULL, public_key = NULL, lease_token = NULL WHERE cluster_id = p_cluster;
    INSERT INTO cluster_events (cluster_id, kind) VALUES (p_cluster, 'destroyed');
END;
$$;

-- The janitor's lifetime pass: ready clusters whose lifetime ended, and requests nobody
-- collected by their deadline. Returns (cluster, reason) for each teardown it started.
CREATE FUNCTION clusters_start_due_teardowns() RETURNS TABLE (cluster_id text, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.id, CASE WHEN c.state = 'ready' AND c.expires_at <= now() THEN 'expired' ELSE 'abandoned' END AS why
        FROM clusters c
        WHERE (c.state = 'ready' AND c.expires_at <= now())
           OR (c.state IN ('requested', 'provisioning', 'ready') AND c.collected_at IS NULL AND c.abandon_at <= now())
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

-- The janitor's reconcile pass: every cluster that is not settled and that no job is moving
-- gets its teardown queued. A cluster on its way to ready without a live provision job
-- (deleted, or ended without reaching the trigger) is marked failed first; a
-- teardown_failed cluster is retried once `retry_after` passed since its last teardown ended.
CREATE FUNCTION clusters_reconcile(retry_after interval) RETURNS TABLE (cluster_id text, action text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.id, c.state FROM clusters c
        WHERE c.state IN ('requested', 'provisioning', 'failed', 'tearing_down', 'teardown_failed')
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind IN ('provision', 'teardown')
                                                 AND j.payload ->> 'cluster_id' = c.id AND j.state IN ('queued', 'running'))
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

-- Operators see the new columns (no secrets).
CREATE OR REPLACE VIEW operator_clusters AS
SELECT c.id,
       c.owner,
       c.state,
       c.phase,
       c.masters + c.agents + c.public_agents AS node_count,
       c.instance_type,
       date_trunc('second', now() - c.created_at) AS age,
       CASE WHEN c.state = 'ready' THEN date_trunc('second', c.expires_at - now()) END AS expires_in,
       c.expires_at,
       c.last_error,
       c.created_at,
       c.region,
       c.deployment,
       c.teardown_reason
FROM clusters c;

-- Releases recorded before this migration were acted on by the old lifetime pass, which
-- looked at release_requested_at; the new one does not: act on them now.
SELECT cluster_begin_teardown(id, 'released') FROM clusters
WHERE release_requested_at IS NOT NULL AND state IN ('requested', 'provisioning', 'ready', 'failed');
