-- What operators read: the gauges `/metrics` exports, the web page's views, the last
-- sweep's findings, and instance-hours per owner for `client cost`.
--
-- Every function here is SECURITY DEFINER with a fixed search_path and returns counts,
-- names and times only: no lease token, no key. The operator role gets the views and
-- these functions, nothing that holds a secret.

-- The instance type of each node, so instance-hours are counted per type (the bootstrap
-- node's type is a worker setting, not part of the request). Rows written before this
-- migration have none; cost_report() falls back to the cluster's type.
ALTER TABLE nodes ADD COLUMN instance_type text;

CREATE OR REPLACE FUNCTION cluster_mark_ready(p_job bigint, p_token uuid, p_cluster text, p_nodes jsonb, p_ssh_user text, p_ssh_port integer)
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
    INSERT INTO nodes (cluster_id, instance_id, role, private_ip, public_ip, host_key, instance_type)
    SELECT p_cluster, n.instance_id, n.role, n.private_ip, n.public_ip, n.host_key, n.instance_type
    FROM jsonb_to_recordset(p_nodes) AS n(instance_id text, role text, private_ip text, public_ip text, host_key text,
                                          instance_type text);
    INSERT INTO cluster_events (cluster_id, kind) VALUES (p_cluster, 'ready');
    RETURN expiry;
END;
$$;

-- What the janitor's last sweep of each region found (and, unless it was a dry run,
-- removed): EC2 resources of this deployment that no live cluster owns.
CREATE TABLE sweep_reports (
    region          text PRIMARY KEY,
    swept_at        timestamptz NOT NULL DEFAULT now(),
    instances       text[] NOT NULL DEFAULT '{}',
    security_groups text[] NOT NULL DEFAULT '{}',
    key_pairs       text[] NOT NULL DEFAULT '{}',
    dry_run         boolean NOT NULL DEFAULT false
);

-- Instance-hours from the rows, for the time since now() - p_since: each node counts from
-- its cluster's ready_at to destroyed_at (or now), the bootstrap node included. A pool
-- cluster's time before hand-out is the pool's ("pool:<name>"), after it the holder's.
CREATE FUNCTION cost_report(p_since interval)
RETURNS TABLE (owner text, instance_type text, clusters int, nodes int, instance_hours float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH spans AS (
        SELECT c.id,
               CASE WHEN c.handed_out_at IS NOT NULL THEN 'pool:' || c.pool ELSE c.owner END AS owner,
               c.ready_at AS from_at,
               coalesce(least(c.handed_out_at, c.destroyed_at), now()) AS to_at  -- least() skips NULLs
        FROM clusters c
        WHERE c.ready_at IS NOT NULL AND coalesce(c.destroyed_at, now()) > now() - p_since
        UNION ALL
        SELECT c.id, c.owner, greatest(c.handed_out_at, c.ready_at), coalesce(c.destroyed_at, now())
        FROM clusters c
        WHERE c.ready_at IS NOT NULL AND c.handed_out_at IS NOT NULL AND coalesce(c.destroyed_at, now()) > now() - p_since
    ), clipped AS (
        SELECT id, owner, greatest(from_at, now() - p_since) AS from_at, to_at FROM spans
    )
    SELECT s.owner,
           coalesce(n.instance_type, CASE WHEN n.role = 'bootstrap' THEN 'unrecorded' ELSE c.instance_type END),
           count(DISTINCT s.id)::int,
           count(*)::int,
           sum(extract(epoch FROM s.to_at - s.from_at) / 3600)::float8
    FROM clipped s
    JOIN clusters c ON c.id = s.id
    JOIN nodes n ON n.cluster_id = s.id
    WHERE s.to_at > s.from_at
    GROUP BY 1, 2
    ORDER BY 1, 2;
$$;

-- The gauges `/metrics` reads on each scrape, as (metric, label pairs, value): jobs by kind
-- and state, clusters by state, each pool's counts and target, key-pair deletions still
-- pending, the last sweep's leftovers, and instance-hours by owner over 30 days.
CREATE FUNCTION metrics_snapshot()
RETURNS TABLE (metric text, labels text[], value float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    -- One scan of each table per scrape; every (kind, state) is listed, at 0 when empty.
    SELECT 'flotilla_jobs', ARRAY['kind', k.kind, 'state', s.state], coalesce(n.count, 0)::float8
    FROM job_kinds k CROSS JOIN unnest(ARRAY['queued', 'running', 'succeeded', 'failed', 'cancelled']) AS s(state)
    LEFT JOIN (SELECT kind, state, count(*) FROM jobs GROUP BY kind, state) n ON n.kind = k.kind AND n.state = s.state
    UNION ALL
    SELECT 'flotilla_clusters', ARRAY['state', s.state], coalesce(n.count, 0)::float8
    FROM unnest(ARRAY['requested', 'provisioning', 'ready', 'failed', 'tearing_down', 'teardown_failed', 'destroyed']) AS s(state)
    LEFT JOIN (SELECT state, count(*) FROM clusters GROUP BY state) n ON n.state = s.state
    UNION ALL
    SELECT 'flotilla_pool_clusters', ARRAY['pool', p.name, 'status', x.status], x.n::float8
    FROM operator_pools p
    CROSS JOIN LATERAL (VALUES ('ready', p.ready), ('healthy', p.healthy), ('building', p.building),
                               ('claimed', p.handed_out)) AS x(status, n)
    UNION ALL
    SELECT 'flotilla_pool_target', ARRAY['pool', p.name], p.target::float8 FROM pools p
    UNION ALL
    SELECT 'flotilla_key_pair_deletions_pending', ARRAY[]::text[],
           (SELECT count(*) FROM key_pair_deletions WHERE deleted_at IS NULL)::float8
    UNION ALL
    SELECT 'flotilla_sweep_leftovers', ARRAY['region', r.region, 'kind', x.kind], x.n::float8
    FROM sweep_reports r
    CROSS JOIN LATERAL (VALUES ('instance', cardinality(r.instances)), ('security_group', cardinality(r.security_groups)),
                               ('key_pair', cardinality(r.key_pairs))) AS x(kind, n)
    UNION ALL
    SELECT 'flotilla_instance_hours_30d', ARRAY['owner', r.owner], sum(r.instance_hours)
    FROM cost_report(interval '30 days') r GROUP BY r.owner;
$$;

-- Operator views: a cluster's timeline, install logs (journald of failed phases), the
-- sweep's findings; operator_clusters gains the pool and lifecycle times.
CREATE VIEW operator_cluster_events AS
SELECT e.id, e.cluster_id, e.at, e.kind, e.detail FROM cluster_events e;

CREATE VIEW operator_cluster_logs AS
SELECT l.cluster_id, l.name, l.contents, l.created_at FROM cluster_logs l;

CREATE VIEW operator_sweep_reports AS
SELECT region, swept_at, instances, security_groups, key_pairs, dry_run FROM sweep_reports;

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
       c.teardown_reason,
       c.pool,
       c.label,
       c.ready_at,
       c.handed_out_at,
       c.destroyed_at
FROM clusters c;

REVOKE ALL ON sweep_reports FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION cost_report(interval), metrics_snapshot() FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON sweep_reports TO flotilla_worker;
GRANT EXECUTE ON FUNCTION cost_report(interval), metrics_snapshot() TO flotilla_worker, flotilla_operator;
GRANT EXECUTE ON FUNCTION cost_report(interval) TO flotilla_client;
GRANT SELECT ON operator_cluster_events, operator_cluster_logs, operator_sweep_reports TO flotilla_operator, flotilla_worker;
GRANT SELECT ON operator_clusters TO flotilla_operator;
-- `worker web` checks the schema version before it serves (versions and names only).
GRANT SELECT ON schema_migrations TO flotilla_operator;
