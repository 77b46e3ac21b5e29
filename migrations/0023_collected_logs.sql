-- Logs an agent gathered from the nodes (`client logs --collect`, `client run
-- --collect-logs-on-failure`), kept with the cluster for the operator page (issue 27, part 3),
-- with a size cap: each log's last 1 MiB, at most 64 logs in one call, and at most 16 MiB of
-- collected logs per cluster (a call that would pass it is refused whole). They are stored as
-- `collected-<name>` beside the worker's install logs, by the lease holder only.
CREATE FUNCTION flotilla_api.api_keep_logs(p_id text, p_token text, p_names text[], p_contents text[])
RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    total bigint;
BEGIN
    PERFORM api_holder(p_id, p_token);
    IF p_names IS NULL OR p_contents IS NULL OR cardinality(p_names) <> cardinality(p_contents)
       OR cardinality(p_names) > 64 THEN
        PERFORM api_bad('give at most 64 logs, each a name and its text');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_names) n WHERE n IS NULL OR n !~ '^[A-Za-z0-9._-]{1,120}$') THEN
        PERFORM api_bad('a log name is 1 to 120 letters, digits, dots, dashes and underscores');
    END IF;
    INSERT INTO cluster_logs (cluster_id, name, contents)
    SELECT p_id, 'collected-' || n, right(coalesce(c, ''), 1048576) FROM unnest(p_names, p_contents) AS l(n, c)
    ON CONFLICT (cluster_id, name) DO UPDATE SET contents = EXCLUDED.contents, created_at = now();
    SELECT sum(octet_length(contents)) INTO total FROM cluster_logs
    WHERE cluster_id = p_id AND name LIKE 'collected-%';
    IF total > 16 * 1048576 THEN
        PERFORM api_refuse(format('the collected logs of %s would take %s MiB, over the cap of 16 MiB', p_id,
                                  round(total / 1048576.0, 1)));
    END IF;
    RETURN cardinality(p_names);
END;
$$;
REVOKE EXECUTE ON FUNCTION flotilla_api.api_keep_logs(text, text, text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flotilla_api.api_keep_logs(text, text, text[], text[]) TO flotilla_client, flotilla_worker;
