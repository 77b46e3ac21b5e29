-- Clusters, their nodes, keys and logs, and what operators read.
--
-- A cluster row is written by `client request` together with its provision job, in one
-- transaction. Workers move it through provisioning → ready (expires_at = ready + lifetime);
-- the janitor starts teardown when it expires or is released; teardown ends in destroyed.
-- Every state change NOTIFYs `flotilla_clusters` with the cluster id.

CREATE TABLE clusters (
    id                   text PRIMARY KEY CHECK (id ~ '^c-[0-9a-f]{10}$'),
    request_id           text UNIQUE CHECK (length(request_id) BETWEEN 1 AND 200),
    owner                text NOT NULL CHECK (length(owner) BETWEEN 1 AND 200),
    state                text NOT NULL DEFAULT 'requested'
                         CHECK (state IN ('requested', 'provisioning', 'ready', 'failed', 'tearing_down', 'destroyed')),
    -- The last step reported while provisioning or tearing down, for people.
    phase                text,
    masters              integer NOT NULL CHECK (masters IN (1, 3, 5, 7, 9)),
    agents               integer NOT NULL CHECK (agents >= 0),
    public_agents        integer NOT NULL CHECK (public_agents >= 0),
    instance_type        text NOT NULL,
    -- What was asked for (no secrets): counts, installer URL, admin location, DC/OS config.
    request              jsonb NOT NULL CHECK (jsonb_typeof(request) = 'object'),
    -- The provisioner's last checkpoint (no private key: that is in cluster_secrets).
    checkpoint           jsonb,
    lifetime             interval NOT NULL CHECK (lifetime > interval '0'),
    -- How to reach the nodes, written by the worker that provisioned them.
    ssh_user             text,
    ssh_port             integer,
    ready_at             timestamptz,
    expires_at           timestamptz,
    release_requested_at timestamptz,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    destroyed_at         timestamptz
);

-- The janitor's question: which ready clusters expired or were released?
CREATE INDEX clusters_expiry_idx ON clusters (expires_at) WHERE state = 'ready';
CREATE INDEX clusters_owner_idx ON clusters (owner, created_at DESC);

-- Secrets, readable only by the parts of Flotilla (never by the operator role): the lease
-- token handed to the requester and the cluster's SSH private key.
CREATE TABLE cluster_secrets (
    cluster_id    text PRIMARY KEY REFERENCES clusters (id) ON DELETE CASCADE,
    lease_token   text NOT NULL CHECK (length(lease_token) >= 32),
    key_pair_name text,
    public_key    text,
    private_key   text
);

CREATE TABLE nodes (
    cluster_id  text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    instance_id text NOT NULL,
    role        text NOT NULL CHECK (role IN ('bootstrap', 'master', 'slave', 'slave_public')),
    private_ip  text NOT NULL,
    public_ip   text,
    host_key    text,
    PRIMARY KEY (cluster_id, instance_id)
);

-- Install logs of failed phases, named <phase>-<ip>-journald.log.
CREATE TABLE cluster_logs (
    cluster_id text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]+$'),
    contents   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, name)
);

-- What happened to a cluster and who did it: requested, ready, extended, released,
-- expired, failed, destroyed. Extensions are audited here.
CREATE TABLE cluster_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX cluster_events_cluster_idx ON cluster_events (cluster_id, at);

-- Key pairs to delete. A row stays until AWS confirms the delete; failures back off and
-- stay visible (attempts, last_error, next_attempt_at).
CREATE TABLE key_pair_deletions (
    region          text NOT NULL,
    key_pair_name   text NOT NULL,
    cluster_id      text REFERENCES clusters (id) ON DELETE SET NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (region, key_pair_name)
);
CREATE INDEX key_pair_deletions_due_idx ON key_pair_deletions (next_attempt_at) WHERE deleted_at IS NULL;

CREATE FUNCTION clusters_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('flotilla_clusters', NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER clusters_notify_change AFTER INSERT OR UPDATE OF state, phase, expires_at, release_requested_at ON clusters
    FOR EACH ROW EXECUTE FUNCTION clusters_notify();

-- Operator views: readable, and free of secrets.
CREATE VIEW operator_clusters AS
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
       c.created_at
FROM clusters c;

CREATE VIEW operator_jobs AS
SELECT j.id,
       j.kind,
       j.payload ->> 'cluster_id' AS cluster_id,
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

CREATE VIEW operator_nodes AS
SELECT n.cluster_id, n.role, n.instance_id, n.private_ip, n.public_ip FROM nodes n;

CREATE VIEW operator_key_pair_deletions AS
SELECT region, key_pair_name, cluster_id, attempts, next_attempt_at, last_error, created_at, deleted_at
FROM key_pair_deletions;

-- A read-only role for people: the views, nothing else (no secrets, no writes).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flotilla_operator') THEN
        CREATE ROLE flotilla_operator NOLOGIN;
    END IF;
END;
$$;
GRANT SELECT ON operator_clusters, operator_jobs, operator_nodes, operator_key_pair_deletions TO flotilla_operator;
