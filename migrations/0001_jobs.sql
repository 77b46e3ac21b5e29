-- The job queue. Every worker claims from this table with FOR UPDATE SKIP LOCKED.
--
-- Life of a row: queued -> running -> succeeded | failed | cancelled, and back to queued
-- on a retry (failure with attempts left), on a rescue (the lease expired) or on a
-- graceful hand-back at shutdown. Every change of a running row is fenced on
-- lease_token, a fresh UUID per claim: a worker that lost its lease matches no row.

CREATE TABLE job_kinds (
    kind        text PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    description text NOT NULL
);

INSERT INTO job_kinds (kind, description) VALUES
    ('noop',      'does nothing; used by demos, tests and benchmarks'),
    ('provision', 'create a cluster''s EC2 resources and install DC/OS on them'),
    ('teardown',  'delete a cluster''s EC2 resources');

CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL REFERENCES job_kinds (kind),
    payload          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         smallint NOT NULL DEFAULT 0 CHECK (priority >= 0),
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 1000),
    run_after        timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    heartbeat_at     timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CHECK ((state = 'running') = (lease_token IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
) WITH (
    -- Rows are updated a few times each and then deleted: leave room for HOT updates
    -- and vacuum the table often so the claim index never drags dead tuples along.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- The claim index covers runnable rows only, in claim order: it holds the backlog and
-- nothing else, so it stays small however long the history grows.
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, run_after, id) WHERE state = 'queued';

-- The rescuer looks only at running rows whose lease ran out.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';

-- Retention deletes finished rows by age.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE state IN ('succeeded', 'failed', 'cancelled');

-- Enqueueing the same key again returns the job that holds it.
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A row that becomes runnable now wakes the workers that handle its kind. The
-- notification is sent by the transaction that enqueued (or re-queued) the row, so it is
-- delivered at commit, and PostgreSQL folds identical notifications of one transaction
-- into one. It is a hint: workers poll as well.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('flotilla_jobs', NEW.kind);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued' AND NEW.run_after <= now())
    EXECUTE FUNCTION jobs_notify();

CREATE TRIGGER jobs_notify_requeue AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued' AND OLD.state <> 'queued' AND NEW.run_after <= now())
    EXECUTE FUNCTION jobs_notify();
