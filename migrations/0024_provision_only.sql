-- Bare nodes now, DC/OS later (issue 27, part 7): `client request --provision-only` builds the
-- nodes (instances, prerequisites, node setup) and hands them out as a ready cluster whose phase
-- is `provisioned`; `client install ID --installer-url URL` installs DC/OS on them later, as
-- `minidcos aws provision` and `install` did. The install is the cluster's provision job again,
-- resumed from its checkpoint (the nodes are kept): the cluster goes back from ready to
-- provisioning, under a new provisioning deadline no later than its expiry (the janitor tears
-- it down at that deadline, as it would have at expiry), and is ready again at the end with the
-- expiry it had (the lifetime does not start again). An install within 10 minutes of the expiry
-- is refused: extend first.

CREATE OR REPLACE FUNCTION cluster_transition_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (from_state, to_state) IN (
        ('requested', 'provisioning'), ('requested', 'failed'), ('requested', 'tearing_down'),
        ('provisioning', 'ready'), ('provisioning', 'failed'), ('provisioning', 'tearing_down'),
        ('ready', 'tearing_down'),
        -- `client install` on a cluster built with --provision-only (api_install).
        ('ready', 'provisioning'),
        ('failed', 'tearing_down'),
        ('tearing_down', 'destroyed'), ('tearing_down', 'teardown_failed'),
        ('teardown_failed', 'tearing_down'))
$$;

CREATE OR REPLACE FUNCTION cluster_mark_ready(p_job bigint, p_token uuid, p_cluster text, p_nodes jsonb, p_ssh_user text, p_ssh_port integer)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    expiry timestamptz;
BEGIN
    PERFORM cluster_require_lease(p_job, p_token, p_cluster);
    PERFORM cluster_refuse_if_cancelled(p_job, p_cluster, 'mark the cluster ready');
    -- A second ready (an install after --provision-only) keeps the first one's time and expiry.
    UPDATE clusters SET state = 'ready',
                        phase = CASE WHEN request ->> 'provisionOnly' = 'true' THEN 'provisioned' ELSE 'ready' END,
                        ready_at = coalesce(ready_at, now()), expires_at = coalesce(expires_at, now() + lifetime),
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
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (p_cluster, 'ready', CASE WHEN (SELECT request ->> 'provisionOnly' = 'true' FROM clusters WHERE id = p_cluster)
                                     THEN '{"provisioned": true}'::jsonb ELSE '{}'::jsonb END);
    RETURN expiry;
END;
$$;

-- `client install`: DC/OS from `p_installer_url` on a ready cluster built with --provision-only.
-- Returns the cluster's state afterwards (provisioning).
CREATE FUNCTION flotilla_api.api_install(p_id text, p_token text, p_installer_url text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c clusters;
    new_request jsonb;
BEGIN
    PERFORM api_holder(p_id, p_token);
    SELECT * INTO c FROM clusters WHERE id = p_id FOR UPDATE;
    IF c.request ->> 'provisionOnly' IS DISTINCT FROM 'true' THEN
        PERFORM api_bad(format('cluster %s has DC/OS installed already (or was not requested with --provision-only)', p_id));
    END IF;
    IF c.state <> 'ready' THEN
        PERFORM api_bad(format('cluster %s is %s: only a ready cluster of bare nodes can be installed', p_id, c.state));
    END IF;
    -- Expiry does not watch a cluster while it is provisioning: its provisioning deadline does,
    -- and it is never later than the expiry.
    IF c.expires_at < now() + interval '10 minutes' THEN
        PERFORM api_refuse(format('cluster %s expires at %s, too soon for an install: extend it first (`client extend %s --by 1h`)',
                                  p_id, to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), p_id));
    END IF;
    new_request := (c.request - 'provisionOnly') || jsonb_build_object('installerURL', p_installer_url);
    PERFORM api_validate_request(new_request || jsonb_build_object('lifetimeSeconds', extract(epoch FROM c.lifetime)),
                                 c.owner);
    UPDATE clusters SET state = 'provisioning', phase = 'install requested', request = new_request,
                        provision_deadline = least(c.expires_at,
                                                   now() + coalesce((policy_for(c.owner)).max_provision_time, interval '2 hours'))
    WHERE id = p_id;
    INSERT INTO jobs (kind, cluster_id, payload, max_attempts, idempotency_key, priority, run_after)
    VALUES ('provision', p_id, jsonb_build_object('cluster_id', p_id), 5, 'install:' || p_id, 5, now());
    INSERT INTO cluster_events (cluster_id, kind, detail)
    VALUES (p_id, 'install-requested', jsonb_build_object('by', session_user));
    RETURN 'provisioning';
END;
$$;
REVOKE EXECUTE ON FUNCTION flotilla_api.api_install(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flotilla_api.api_install(text, text, text) TO flotilla_client, flotilla_worker;
