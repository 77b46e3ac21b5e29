-- Cheap gauges, bounded history (issue 24, part 6).
--
-- Every janitor /metrics scrape counted the whole jobs table (whose own target is 10 million
-- finished rows), the whole clusters table, and ran a 30-day cost scan over every cluster
-- ever made; nothing ever pruned clusters, their events and logs. Now:
--
-- 1. metrics_snapshot reads queued and running jobs through the partial indexes of those
--    states (jobs_claim_idx, jobs_running_idx), and clusters that are not destroyed through
--    clusters_owner_active_idx. Finished jobs and destroyed clusters are counters, kept by the
--    processes that finish them (flotilla_jobs_finished_total, flotilla_cluster_outcomes_total
--    on each worker's /metrics), so no scrape counts history.
-- 2. A pool's handed-out clusters are counted through their own partial index.
-- 3. cost_report finds the clusters that cost anything in its window through
--    clusters_cost_idx (destroyed_at of clusters that were ever ready: NULL while they run).
-- 4. prune_history(keep, batch) deletes destroyed clusters older than keep, with their jobs,
--    events, logs, nodes, tokens and secrets, a batch at a time, after adding their cost to
--    cost_history (per owner, instance type and day of destruction). cost_report adds those
--    rows for windows that reach past the kept history, so `client cost --since 1y` still
--    counts pruned clusters (each one's hours on the day it was destroyed). The janitor runs
--    it hourly with its --retention-days (default 30), the same setting that prunes finished
--    jobs.

CREATE OR REPLACE FUNCTION metrics_snapshot() RETURNS TABLE (metric text, labels text[], value float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT 'flotilla_jobs', ARRAY['kind', k.kind, 'state', s.state], coalesce(n.count, 0)::float8
    FROM job_kinds k CROSS JOIN unnest(ARRAY['queued', 'running']) AS s(state)
    LEFT JOIN (SELECT kind, 'queued' AS state, count(*) FROM jobs WHERE state = 'queued' GROUP BY kind
               UNION ALL
               SELECT kind, 'running', count(*) FROM jobs WHERE state = 'running' GROUP BY kind) n
           ON n.kind = k.kind AND n.state = s.state
    UNION ALL
    SELECT 'flotilla_clusters', ARRAY['state', s.state], coalesce(n.count, 0)::float8
    FROM unnest(ARRAY['requested', 'provisioning', 'ready', 'failed', 'tearing_down', 'teardown_failed']) AS s(state)
    LEFT JOIN (SELECT state, count(*) FROM clusters WHERE state <> 'destroyed' GROUP BY state) n ON n.state = s.state
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

CREATE INDEX clusters_pool_claimed_idx ON clusters (pool) WHERE handed_out_at IS NOT NULL AND state <> 'destroyed';
CREATE INDEX clusters_cost_idx ON clusters (destroyed_at) WHERE ready_at IS NOT NULL;
-- Deleting a cluster sets its key-pair deletions' cluster_id to NULL: found by this index.
CREATE INDEX key_pair_deletions_cluster_idx ON key_pair_deletions (cluster_id) WHERE cluster_id IS NOT NULL;
-- The clusters prune_history may take, oldest first.
CREATE INDEX clusters_destroyed_idx ON clusters (destroyed_at) WHERE state = 'destroyed';

CREATE TABLE cost_history (
    owner          text NOT NULL,
    instance_type  text NOT NULL,
    day            date NOT NULL,
    clusters       int NOT NULL,
    nodes          int NOT NULL,
    instance_hours float8 NOT NULL,
    PRIMARY KEY (owner, instance_type, day)
);
REVOKE ALL ON cost_history FROM PUBLIC;
GRANT SELECT ON cost_history TO flotilla_operator;
GRANT SELECT, INSERT, UPDATE ON cost_history TO flotilla_worker;

-- The node-hours of the clusters p_ids, per owner and instance type, from ready until
-- destroyed (a pool's until the hand-out, the taker's from then), clipped to p_from.
CREATE FUNCTION cluster_costs(p_from timestamptz, p_ids text[]) RETURNS TABLE (owner text, instance_type text, cluster_id text, hours float8)
LANGUAGE sql STABLE AS $$
    WITH spans AS (
        SELECT c.id, CASE WHEN c.handed_out_at IS NOT NULL THEN 'pool:' || c.pool ELSE c.owner END AS owner,
               c.ready_at AS from_at, coalesce(least(c.handed_out_at, c.destroyed_at), now()) AS to_at
        FROM clusters c WHERE c.id = ANY (p_ids)
        UNION ALL
        SELECT c.id, c.owner, greatest(c.handed_out_at, c.ready_at), coalesce(c.destroyed_at, now())
        FROM clusters c WHERE c.id = ANY (p_ids) AND c.handed_out_at IS NOT NULL
    )
    SELECT s.owner,
           coalesce(n.instance_type, CASE WHEN n.role = 'bootstrap' THEN 'unrecorded' ELSE c.instance_type END),
           s.id,
           extract(epoch FROM s.to_at - greatest(s.from_at, p_from)) / 3600
    FROM spans s JOIN clusters c ON c.id = s.id JOIN nodes n ON n.cluster_id = s.id
    WHERE s.to_at > greatest(s.from_at, p_from)
$$;
REVOKE EXECUTE ON FUNCTION cluster_costs(timestamptz, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster_costs(timestamptz, text[]) TO flotilla_worker;

CREATE OR REPLACE FUNCTION cost_report(p_since interval) RETURNS TABLE (owner text, instance_type text, clusters int, nodes int, instance_hours float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH costly AS (
        -- Ever ready, and running or destroyed within the window (clusters_cost_idx).
        SELECT array_agg(c.id) AS ids FROM clusters c
        WHERE c.ready_at IS NOT NULL AND (c.destroyed_at IS NULL OR c.destroyed_at > now() - p_since)
    ), live AS (
        SELECT k.owner, k.instance_type, count(DISTINCT k.cluster_id)::int AS clusters, count(*)::int AS nodes,
               sum(k.hours)::float8 AS hours
        FROM costly, cluster_costs(now() - p_since, costly.ids) k
        GROUP BY 1, 2
    ), pruned AS (
        SELECT h.owner, h.instance_type, sum(h.clusters)::int AS clusters, sum(h.nodes)::int AS nodes,
               sum(h.instance_hours)::float8 AS hours
        FROM cost_history h WHERE h.day >= (now() - p_since)::date
        GROUP BY 1, 2
    )
    SELECT x.owner, x.instance_type, sum(x.clusters)::int, sum(x.nodes)::int, sum(x.hours)::float8
    FROM (SELECT * FROM live UNION ALL SELECT * FROM pruned) x
    WHERE api_sees(x.owner)
    GROUP BY 1, 2
    ORDER BY 1, 2;
$$;

-- Deletes up to p_batch destroyed clusters older than p_keep, with everything that hangs off
-- them, after adding their cost to cost_history. Returns how many clusters and jobs went.
CREATE FUNCTION prune_history(p_keep interval, p_batch int) RETURNS TABLE (clusters int, jobs int)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
DECLARE
    old text[];
    gone_jobs int;
    gone_clusters int;
BEGIN
    IF p_keep IS NULL OR p_keep < interval '1 day' THEN
        RAISE EXCEPTION 'history is kept at least a day (asked: %)', p_keep USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(id) INTO old FROM (
        SELECT c.id FROM clusters c WHERE c.state = 'destroyed' AND c.destroyed_at < now() - p_keep
        ORDER BY c.destroyed_at LIMIT p_batch FOR UPDATE SKIP LOCKED) x;
    IF old IS NULL THEN
        clusters := 0; jobs := 0; RETURN NEXT; RETURN;
    END IF;
    INSERT INTO cost_history AS h (owner, instance_type, day, clusters, nodes, instance_hours)
    SELECT k.owner, k.instance_type, c.destroyed_at::date, count(DISTINCT k.cluster_id), count(*), sum(k.hours)
    FROM cluster_costs('-infinity', old) k JOIN clusters c ON c.id = k.cluster_id
    GROUP BY 1, 2, 3
    ON CONFLICT (owner, instance_type, day) DO UPDATE
        SET clusters = h.clusters + EXCLUDED.clusters, nodes = h.nodes + EXCLUDED.nodes,
            instance_hours = h.instance_hours + EXCLUDED.instance_hours;
    DELETE FROM jobs j WHERE j.cluster_id = ANY (old);
    GET DIAGNOSTICS gone_jobs = ROW_COUNT;
    DELETE FROM key_pair_deletions d WHERE d.cluster_id = ANY (old) AND d.deleted_at IS NOT NULL;
    DELETE FROM clusters c WHERE c.id = ANY (old);
    GET DIAGNOSTICS gone_clusters = ROW_COUNT;
    clusters := gone_clusters;
    jobs := gone_jobs;
    RETURN NEXT;
END;
$$;
REVOKE EXECUTE ON FUNCTION prune_history(interval, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_history(interval, int) TO flotilla_worker;
