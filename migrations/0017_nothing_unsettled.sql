-- Nothing stays unsettled (issue 24, part 4).
--
-- A provision job that landed on a worker of another region snoozed for ever, and its cluster
-- stayed requested or provisioning (instances possibly running). Pool clusters had no deadline
-- at all, and a region whose last worker was gone kept its half-built clusters. Now:
--
-- 1. Every cluster has a provisioning deadline, pool clusters included: provision_deadline,
--    set when the row is written, from the owner's policy (max_provision_time, default 2 h;
--    a pool's clusters fall under the '*' row). A cluster not ready by then is failed
--    ('not ready by its provisioning deadline') and torn down by the lifetime pass.
-- 2. A region with no live worker is noticed. Each worker that builds beats in build_regions
--    (live_until = now() + its grace, 5 minutes by default, every quarter of it); a region
--    whose live_until passed has no live worker. Its requested and provisioning clusters (a
--    region is recorded when a worker starts a cluster, or when a pool is pinned) are failed
--    ('no live worker in region …') and torn down; any worker tears down in any region.
-- 3. Snoozes are bounded: a job snoozed because its cluster lives in another region is
--    cancelled when its cluster fails by 1. or 2., whichever comes first.
--
-- Regions with clusters being built when this migration runs count as live for one hour, so
-- that a fleet being upgraded (its workers not yet beating) loses no cluster.

ALTER TABLE policy ADD COLUMN max_provision_time interval NOT NULL DEFAULT interval '2 hours'
    CHECK (max_provision_time > interval '0' AND max_provision_time <= interval '7 days');

ALTER TABLE clusters ADD COLUMN provision_deadline timestamptz;
UPDATE clusters SET provision_deadline = greatest(created_at + interval '2 hours', now() + interval '15 minutes')
WHERE state IN ('requested', 'provisioning');
CREATE INDEX clusters_provision_deadline_idx ON clusters (provision_deadline)
    WHERE state IN ('requested', 'provisioning');

-- Every new cluster row gets its deadline from its owner's policy (requests, pool refills).
CREATE FUNCTION clusters_set_provision_deadline() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    NEW.provision_deadline := coalesce(NEW.provision_deadline,
                                       now() + coalesce((policy_for(NEW.owner)).max_provision_time, interval '2 hours'));
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION clusters_set_provision_deadline() FROM PUBLIC;
CREATE TRIGGER clusters_provision_deadline BEFORE INSERT ON clusters
    FOR EACH ROW EXECUTE FUNCTION clusters_set_provision_deadline();

ALTER TABLE build_regions ADD COLUMN live_until timestamptz;
UPDATE build_regions b SET live_until = now() + interval '1 hour'
WHERE EXISTS (SELECT 1 FROM clusters c WHERE c.region = b.region AND c.state IN ('requested', 'provisioning'));

-- Whether a worker that builds in p_region beat within its grace.
CREATE FUNCTION region_live(p_region text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM build_regions WHERE region = p_region AND live_until > now())
$$;
REVOKE EXECUTE ON FUNCTION region_live(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION region_live(text) TO flotilla_worker, flotilla_operator;

CREATE OR REPLACE FUNCTION cluster_due_reason(c clusters) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN c.state = 'ready' AND c.expires_at <= now() THEN 'expired'
        WHEN c.state IN ('requested', 'provisioning', 'ready') AND c.holder_heartbeat_at + c.holder_timeout <= now()
            THEN 'holder-lost'
        WHEN c.state IN ('requested', 'provisioning', 'ready') AND c.collected_at IS NULL AND c.abandon_at <= now()
            THEN 'abandoned'
        WHEN c.state IN ('requested', 'provisioning') AND c.region IS NOT NULL AND NOT region_live(c.region)
            THEN 'no-worker'
        WHEN c.state IN ('requested', 'provisioning') AND c.provision_deadline <= now() THEN 'provision-deadline'
    END
$$;

CREATE OR REPLACE FUNCTION clusters_start_due_teardowns() RETURNS TABLE (cluster_id text, reason text)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
#variable_conflict use_column
DECLARE
    candidate text;
    why text;
    c clusters;
    message text;
BEGIN
    -- One branch per rule, each served by its partial index (the last two by the small
    -- clusters_provision_deadline_idx: requested and provisioning clusters only).
    FOR candidate IN
        SELECT x.id FROM clusters x WHERE x.state = 'ready' AND x.expires_at <= now()
        UNION
        SELECT x.id FROM clusters x
        WHERE x.state IN ('requested', 'provisioning', 'ready') AND x.collected_at IS NULL AND x.abandon_at <= now()
        UNION
        SELECT x.id FROM clusters x
        WHERE x.state IN ('requested', 'provisioning', 'ready') AND x.holder_heartbeat_at + x.holder_timeout <= now()
        UNION
        SELECT x.id FROM clusters x WHERE x.state IN ('requested', 'provisioning') AND x.provision_deadline <= now()
        UNION
        SELECT x.id FROM clusters x
        WHERE x.state IN ('requested', 'provisioning') AND x.region IS NOT NULL AND NOT region_live(x.region)
        ORDER BY 1
    LOOP
        BEGIN
            -- In the order every function locks: the provision job, then the cluster.
            PERFORM 1 FROM jobs WHERE kind = 'provision' AND jobs.cluster_id = candidate
                                  AND state IN ('queued', 'running') FOR UPDATE;
            SELECT * INTO c FROM clusters x WHERE x.id = candidate AND cluster_due_reason(x) IS NOT NULL
            FOR NO KEY UPDATE SKIP LOCKED;
            -- Locked by another session, or no longer due (extended, released, heartbeat, built).
            CONTINUE WHEN NOT FOUND;
            why := cluster_due_reason(c);
            IF why IN ('no-worker', 'provision-deadline') THEN
                message := CASE why
                    WHEN 'no-worker' THEN format('no live worker in region %s (the last one beat %s)', c.region,
                        coalesce((SELECT to_char(b.live_until, 'YYYY-MM-DD HH24:MI:SS TZ') || ' at the latest'
                                  FROM build_regions b WHERE b.region = c.region), 'never'))
                    ELSE format('not ready by its provisioning deadline, %s after the request (policy max_provision_time)',
                                date_trunc('second', c.provision_deadline - c.created_at))
                END;
                UPDATE clusters SET state = 'failed', last_error = message WHERE id = candidate;
                INSERT INTO cluster_events (cluster_id, kind, detail)
                VALUES (candidate, 'failed', jsonb_build_object('error', message, 'reason', why));
            END IF;
            IF cluster_begin_teardown(candidate, why) = 'tearing_down' THEN
                cluster_id := candidate;
                reason := why;
                RETURN NEXT;
            END IF;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Its provision job's row is busy: the next pass takes this cluster.
            NULL;
        END;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION clusters_next_deadline() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(expires_at) FROM clusters WHERE state = 'ready'),
        (SELECT min(abandon_at) FROM clusters WHERE collected_at IS NULL AND state IN ('requested', 'provisioning', 'ready')),
        (SELECT min(holder_heartbeat_at + holder_timeout) FROM clusters
         WHERE holder_heartbeat_at IS NOT NULL AND state IN ('requested', 'provisioning', 'ready')),
        (SELECT min(w) FROM clusters c, LATERAL (VALUES (c.expires_at - interval '30 minutes'), (c.expires_at - interval '10 minutes')) v(w)
         WHERE c.state = 'ready' AND NOT cluster_is_spare(c) AND w > now()),
        (SELECT min(provision_deadline) FROM clusters WHERE state IN ('requested', 'provisioning')),
        (SELECT min(b.live_until) FROM build_regions b
         WHERE b.live_until > now()
           AND EXISTS (SELECT 1 FROM clusters c WHERE c.region = b.region AND c.state IN ('requested', 'provisioning'))))
$$;

-- A worker that builds beats here (`worker run`, every quarter of p_grace): its region stays
-- live for p_grace after the last beat.
CREATE FUNCTION worker_beat(p_region text, p_image text, p_grace interval) RETURNS void LANGUAGE sql AS $$
    INSERT INTO build_regions (region, image, live_until) VALUES (p_region, p_image, now() + p_grace)
    ON CONFLICT (region) DO UPDATE SET image = EXCLUDED.image, seen_at = now(),
                                       live_until = greatest(build_regions.live_until, EXCLUDED.live_until)
$$;
REVOKE EXECUTE ON FUNCTION worker_beat(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION worker_beat(text, text, interval) TO flotilla_worker;
