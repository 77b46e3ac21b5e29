-- Request validation lives in the server (issue 23): the client sends what it was given and
-- shows the server's message; nothing is recorded when the server refuses.
--
-- 1. The DC/OS config a request carries (client --dcos-config FILE) is merged over the
--    generated config.yaml by top-level key, so it must be a YAML block mapping: "key: value"
--    lines at column 0, anything nested indented under them. A list, a scalar, a flow
--    mapping ({a: 1}), tabs for indentation or a second document used to be recorded and then
--    broke the install on the bootstrap node, minutes and dollars later. A leading "---" is
--    allowed (the worker drops it before merging). It checks the structure the merge depends
--    on, with every line break YAML knows: the top-level keys, and under each only what its
--    value leaves open (a nested block or a list after "key:", text after "key: |"). The
--    values themselves are left to the installer. Messages give the line number and never the
--    line, which may hold a secret.
-- 2. The installer URL rule is the one the provisioner applies (it used to accept spaces
--    after the host, and user:password@, which the worker then refused).

CREATE FUNCTION api_yaml_mapping_problem(p_text text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    line text;
    number int := 0;
    keys int := 0;
    content int := 0;
    -- What the last top-level key's value leaves open for the lines under it: 'block' (no
    -- value yet, or only an anchor or tag: a nested mapping or a list follows), 'scalar'
    -- (| or >: indented text follows), 'none' (the value is on the key's line).
    opened text := 'none';
    value text;
BEGIN
    IF p_text IS NULL THEN
        RETURN NULL;
    END IF;
    -- Every line break YAML knows: CR LF, CR, NEL, LS, PS.
    FOREACH line IN ARRAY string_to_array(regexp_replace(p_text, '\r\n?|[\u0085\u2028\u2029]', E'\n', 'g'), E'\n') LOOP
        number := number + 1;
        -- Blank, comment-only, and (inside a block scalar) any text: YAML reads it as content.
        IF opened = 'scalar' AND line ~ '^ ' THEN
            content := content + 1;
            CONTINUE;
        END IF;
        CONTINUE WHEN line ~ '^[ \t]*(#.*)?$';
        content := content + 1;
        IF line ~ '^ *\t' THEN
            RETURN format('line %s is indented with a tab, which YAML does not allow', number);
        ELSIF line ~ '^---[ \t]*(#.*)?$' AND content = 1 THEN
            CONTINUE;
        ELSIF line ~ '^(---|\.\.\.)([ \t]|$)' THEN
            RETURN format('line %s starts or ends a YAML document: give one mapping', number);
        ELSIF line ~ '^ ' THEN
            IF keys = 0 THEN
                RETURN format('line %s is indented, but no top-level key comes before it', number);
            ELSIF opened = 'none' THEN
                RETURN format('line %s is indented under a key whose value is already on its line', number);
            END IF;
        ELSIF line ~ '^-([ \t]|$)' THEN
            IF keys = 0 THEN
                RETURN 'it is a YAML list, not a mapping';
            ELSIF opened <> 'block' THEN
                RETURN format('line %s is a list item under a key whose value is already given', number);
            END IF;
        ELSIF line ~ '^([A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"]*"|''[^'']*'')[ \t]*:([ \t]|$)' THEN
            keys := keys + 1;
            value := btrim(regexp_replace(line, '^([A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"]*"|''[^'']*'')[ \t]*:', ''), E' \t');
            opened := CASE WHEN value ~ '^([&!][^ \t]*[ \t]*)*(#.*)?$' THEN 'block'
                           WHEN value ~ '^([&!][^ \t]*[ \t]+)*[|>][-+0-9]*[ \t]*(#.*)?$' THEN 'scalar'
                           ELSE 'none' END;
        ELSE
            RETURN format('line %s is not a top-level "key: value" line', number);
        END IF;
    END LOOP;
    IF content > 0 AND keys = 0 THEN
        RETURN 'it has no top-level key';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION api_validate_request(p jsonb, p_owner text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rules policy := policy_for(p_owner);
    masters int;
    agents int;
    public_agents int;
    nodes int;
    lifetime float8;
    file jsonb;
    admin text;
    problem text;
BEGIN
    IF rules.owner IS NULL THEN
        PERFORM api_refuse('no policy applies (the policy table has no row for this owner and no default row ''*'')');
    END IF;
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        PERFORM api_bad('the request must be a JSON object');
    END IF;
    IF length(p::text) > 1048576 THEN
        PERFORM api_bad('the request is larger than 1 MiB (installer files included)');
    END IF;
    BEGIN
        masters := (p ->> 'masters')::int;
        agents := (p ->> 'agents')::int;
        public_agents := (p ->> 'publicAgents')::int;
        lifetime := (p ->> 'lifetimeSeconds')::float8;
    EXCEPTION WHEN others THEN
        PERFORM api_bad('masters, agents and publicAgents must be whole numbers and lifetimeSeconds a number');
    END;
    IF masters IS NULL OR agents IS NULL OR public_agents IS NULL OR lifetime IS NULL THEN
        PERFORM api_bad('the request needs masters, agents, publicAgents and lifetimeSeconds');
    END IF;
    nodes := masters + agents + public_agents;
    IF nodes < 1 THEN
        PERFORM api_bad('a cluster needs at least 1 node (--nodes 1 or more)');
    END IF;
    IF masters NOT IN (1, 3, 5, 7, 9) THEN
        PERFORM api_bad(format('%s masters is not a DC/OS cluster shape: use 1, 3, 5, 7 or 9 masters', masters));
    END IF;
    IF agents < 0 OR public_agents < 0 THEN
        PERFORM api_bad('agent counts cannot be negative');
    END IF;
    IF nodes > rules.max_nodes THEN
        PERFORM api_refuse(format('%s nodes is more than one cluster may have: use 1 to %s (policy max_nodes)', nodes, rules.max_nodes));
    END IF;
    IF coalesce(p ->> 'instanceType', '') !~ '^[a-z][a-z0-9-]*\.[a-z0-9]+$' THEN
        PERFORM api_bad(format('instance type ''%s'' is not an EC2 instance type like m4.large', left(coalesce(p ->> 'instanceType', ''), 40)));
    END IF;
    admin := coalesce(p ->> 'adminLocation', '');
    IF admin !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$' OR NOT api_is_ipv4_cidr(admin) THEN
        PERFORM api_bad(format('admin location ''%s'' is not an IPv4 CIDR block like 203.0.113.0/24 (0.0.0.0/0 allows everyone)', left(admin, 40)));
    END IF;
    -- The provisioner's ClusterSpec.validate applies the same rule (a test keeps them equal):
    -- a scheme, a host name or [IPv6] literal, an optional port, then printable ASCII only.
    -- No user:password@ (it would be logged) and no spaces (curl would split the word).
    IF coalesce(p ->> 'installerURL', '') !~* '^https?://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#][!-~]*)?$'
       OR length(p ->> 'installerURL') > 2000 THEN
        PERFORM api_bad('installer URL must be an http:// or https:// URL of dcos_generate_config.sh');
    END IF;
    IF lifetime <= 0 THEN
        PERFORM api_bad('a lifetime must be positive, like 2h or 90m');
    END IF;
    IF make_interval(secs => lifetime) > rules.max_lifetime THEN
        PERFORM api_refuse(format('a lifetime of %s is beyond the maximum of %s (policy max_lifetime)',
                                  api_format_interval(make_interval(secs => lifetime)), api_format_interval(rules.max_lifetime)));
    END IF;
    IF p ? 'genconfFiles' AND jsonb_typeof(p -> 'genconfFiles') <> 'array' THEN
        PERFORM api_bad('genconfFiles must be a list');
    END IF;
    IF p ? 'dcosConfig' AND jsonb_typeof(p -> 'dcosConfig') NOT IN ('string', 'null') THEN
        PERFORM api_bad('dcosConfig must be the text of a YAML file');
    END IF;
    problem := api_yaml_mapping_problem(p ->> 'dcosConfig');
    IF problem IS NOT NULL THEN
        PERFORM api_bad('the DC/OS config (--dcos-config) must be a YAML mapping of config.yaml keys, '
                        || 'one "key: value" per top-level line: ' || problem);
    END IF;
    FOR file IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'genconfFiles', '[]'))
    LOOP
        IF coalesce(file ->> 'path', '') !~ '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$' OR (file ->> 'path') ~ '(^|/)\.\.(/|$)' THEN
            PERFORM api_bad(format('installer file path ''%s'' must be relative to genconf/, without ''..''', left(coalesce(file ->> 'path', ''), 80)));
        END IF;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION api_yaml_mapping_problem(text) FROM PUBLIC;
