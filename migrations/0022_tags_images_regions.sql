-- Custom tags on every resource, tags the policy requires, a region and an image per request,
-- and files for the masters and a node-setup script before the install (issue 27, parts 5-7).
--
-- A request may carry `tags` (every EC2 resource of the cluster: instances, volumes, network
-- interfaces, the security group, the key pair) and `roleTags` (one role's instances, volumes
-- and interfaces: master, agent, publicAgent). They are checked as EC2 checks tags (a key of 1
-- to 128 characters not starting with aws:, a value of at most 256, 50 per resource, of which
-- Flotilla's own take 8), and may not replace Flotilla's own (its sweeps go by them). An
-- operator can require tags per owner (policy.required_tags, e.g. '{cost-center}'): a request
-- without them in `tags` is refused with the names it must give. Tags are part of the spec, so
-- a pool carries its own and a request matches it only with the same ones.

ALTER TABLE policy ADD COLUMN required_tags text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(required_tags) <= 42 AND array_position(required_tags, NULL) IS NULL);

-- The images a request may name (`client request --image NAME`), kept by operators: the AMI of
-- each region, the login its cloud-init makes (the cluster's SSH user), its distribution, and
-- the Docker version a node without Docker gets. A request may also name a region
-- (`--region`): only one the fleet builds in (build_regions: a live `worker run` registered it,
-- or Flotilla knows its default image), and with an image, one where the image has an AMI. A
-- request with an image and no region is pinned to the first region (by name) that has both.
CREATE FUNCTION images_amis_valid(amis jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(amis) = 'object' AND amis <> '{}'
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(amis) e
                       WHERE e.key !~ '^[a-z]{2}(-[a-z]+)+-[0-9]$' OR jsonb_typeof(e.value) <> 'string'
                          OR (e.value #>> '{}') !~ '^ami-[0-9a-z]{8,17}$')
$$;

CREATE TABLE images (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,39}$'),
    distribution   text NOT NULL CHECK (length(distribution) BETWEEN 1 AND 80 AND distribution !~ '[[:cntrl:]]'),
    ssh_user       text NOT NULL CHECK (ssh_user ~ '^[a-z_][a-z0-9_-]{0,31}$'),
    docker_version text NOT NULL CHECK (docker_version ~ '^[0-9]{1,2}\.[0-9]{2}\.[0-9]{1,2}(\.ce)?$'),
    -- region → AMI id, e.g. {"us-west-2": "ami-0123456789abcdef0"}
    amis           jsonb NOT NULL CHECK (images_amis_valid(amis)),
    created_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON images FROM PUBLIC;
GRANT SELECT ON images TO flotilla_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON images TO flotilla_operator;

CREATE OR REPLACE FUNCTION request_region(p jsonb) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p ->> 'region' IS NOT NULL THEN
        RETURN p ->> 'region';
    END IF;
    IF p ->> 'image' IS NOT NULL THEN
        RETURN (SELECT min(b.region) FROM build_regions b JOIN images i ON i.name = p ->> 'image' AND i.amis ? b.region);
    END IF;
    RETURN NULL;
END;
$$;

-- The images and the regions a client may name.
CREATE FUNCTION flotilla_api.api_images()
RETURNS TABLE (name text, distribution text, ssh_user text, docker_version text, regions text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT i.name, i.distribution, i.ssh_user, i.docker_version,
           coalesce(array_agg(b.region ORDER BY b.region) FILTER (WHERE b.region IS NOT NULL), '{}')
    FROM images i LEFT JOIN build_regions b ON i.amis ? b.region
    GROUP BY i.name ORDER BY i.name
$$;

CREATE FUNCTION flotilla_api.api_regions() RETURNS TABLE (region text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT region FROM build_regions ORDER BY region
$$;
REVOKE EXECUTE ON FUNCTION flotilla_api.api_images(), flotilla_api.api_regions(), images_amis_valid(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flotilla_api.api_images(), flotilla_api.api_regions()
    TO flotilla_client, flotilla_worker, flotilla_operator;
GRANT EXECUTE ON FUNCTION images_amis_valid(jsonb) TO flotilla_worker, flotilla_operator;

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
    tag record;
    role_tags record;
    missing text[];
    image images;
    region text;
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
    -- Tags, as EC2 takes them (ClusterRequest.tagProblem applies the same rules in the client).
    IF p ? 'tags' AND jsonb_typeof(p -> 'tags') NOT IN ('object', 'null') THEN
        PERFORM api_bad('tags must be an object of KEY: VALUE strings');
    END IF;
    IF p ? 'roleTags' AND jsonb_typeof(p -> 'roleTags') NOT IN ('object', 'null') THEN
        PERFORM api_bad('roleTags must be an object of role: tags');
    END IF;
    FOR role_tags IN SELECT NULL::text AS role, coalesce(p -> 'tags', '{}') AS tags
                     UNION ALL SELECT key, value FROM jsonb_each(coalesce(p -> 'roleTags', '{}'))
    LOOP
        IF role_tags.role IS NOT NULL AND role_tags.role NOT IN ('master', 'agent', 'publicAgent') THEN
            PERFORM api_bad(format('role tags are for master, agent or publicAgent, not %s', left(role_tags.role, 40)));
        END IF;
        IF jsonb_typeof(role_tags.tags) NOT IN ('object', 'null') THEN
            PERFORM api_bad('tags must be an object of KEY: VALUE strings');
        END IF;
        FOR tag IN SELECT key, value FROM jsonb_each(coalesce(role_tags.tags, '{}')) LOOP
            IF jsonb_typeof(tag.value) <> 'string' THEN
                PERFORM api_bad(format('the value of tag %s must be a string', left(tag.key, 40)));
            ELSIF length(tag.key) NOT BETWEEN 1 AND 128 THEN
                PERFORM api_bad('a tag key must be 1 to 128 characters');
            ELSIF lower(tag.key) LIKE 'aws:%' THEN
                PERFORM api_bad(format('tag key ''%s'' uses the reserved prefix aws:', left(tag.key, 40)));
            ELSIF tag.key IN ('Name', 'cluster', 'owner', 'managed-by', 'created', 'deployment', 'expires', 'role') THEN
                PERFORM api_bad(format('tag key ''%s'' is Flotilla''s own (Name, cluster, created, deployment, expires, '
                                       || 'managed-by, owner, role)', tag.key));
            ELSIF length(tag.value #>> '{}') > 256 THEN
                PERFORM api_bad(format('the value of tag ''%s'' is longer than 256 characters', left(tag.key, 40)));
            ELSIF (tag.key || (tag.value #>> '{}')) ~ '[[:cntrl:]]' THEN
                PERFORM api_bad(format('tag ''%s'' holds a control character', left(tag.key, 40)));
            END IF;
        END LOOP;
    END LOOP;
    IF (SELECT count(*) FROM jsonb_object_keys(coalesce(p -> 'tags', '{}')))
       + coalesce((SELECT max((SELECT count(*) FROM jsonb_object_keys(v))) FROM jsonb_each(coalesce(p -> 'roleTags', '{}')) AS r(k, v)
                   WHERE jsonb_typeof(v) = 'object'), 0) > 42 THEN
        PERFORM api_bad('at most 42 custom tags per resource (EC2 allows 50; Flotilla''s own use 8)');
    END IF;
    -- Files for the masters (absolute paths) and the node-setup script.
    IF p ? 'masterFiles' AND jsonb_typeof(p -> 'masterFiles') NOT IN ('array', 'null') THEN
        PERFORM api_bad('masterFiles must be a list');
    END IF;
    FOR file IN SELECT * FROM jsonb_array_elements(coalesce(p -> 'masterFiles', '[]'))
    LOOP
        IF coalesce(file ->> 'path', '') !~ '^(/[A-Za-z0-9._-]+)+$' OR (file ->> 'path') ~ '(^|/)\.\.(/|$)' THEN
            PERFORM api_bad(format('master file path ''%s'' must be absolute, without ''..''', left(coalesce(file ->> 'path', ''), 80)));
        END IF;
    END LOOP;
    IF p ? 'nodeSetup' AND jsonb_typeof(p -> 'nodeSetup') NOT IN ('string', 'null') THEN
        PERFORM api_bad('nodeSetup must be the text of a script');
    END IF;
    -- The image and the region: ones the fleet can build.
    IF p ? 'image' AND jsonb_typeof(p -> 'image') NOT IN ('string', 'null') THEN
        PERFORM api_bad('image must be the name of an image (`client images`)');
    END IF;
    IF p ? 'region' AND jsonb_typeof(p -> 'region') NOT IN ('string', 'null') THEN
        PERFORM api_bad('region must be the name of an AWS region');
    END IF;
    IF p ->> 'image' IS NOT NULL THEN
        SELECT * INTO image FROM images WHERE name = p ->> 'image';
        IF NOT FOUND THEN
            PERFORM api_refuse(format('no image named %s (images: %s; `client images` lists them)', left(p ->> 'image', 60),
                                      coalesce((SELECT string_agg(name, ', ' ORDER BY name) FROM images), 'none')));
        END IF;
    END IF;
    region := p ->> 'region';
    IF region IS NOT NULL AND NOT EXISTS (SELECT 1 FROM build_regions b WHERE b.region = p ->> 'region') THEN
        PERFORM api_refuse(format('nobody builds clusters in region %s (regions: %s)', left(region, 40),
                                  (SELECT string_agg(b.region, ', ' ORDER BY b.region) FROM build_regions b)));
    END IF;
    IF image.name IS NOT NULL AND region IS NOT NULL AND NOT image.amis ? region THEN
        PERFORM api_refuse(format('image %s has no AMI in region %s (it has: %s)', image.name, region,
                                  (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(image.amis) k)));
    END IF;
    IF image.name IS NOT NULL AND region IS NULL
       AND NOT EXISTS (SELECT 1 FROM build_regions b WHERE image.amis ? b.region) THEN
        PERFORM api_refuse(format('image %s has no AMI in a region the fleet builds in (%s)', image.name,
                                  (SELECT string_agg(b.region, ', ' ORDER BY b.region) FROM build_regions b)));
    END IF;
    SELECT array_agg(t ORDER BY t) INTO missing FROM unnest(rules.required_tags) AS t
    WHERE NOT coalesce(p -> 'tags', '{}') ? t;
    IF missing IS NOT NULL THEN
        PERFORM api_refuse(format('the policy requires the tags %s on every cluster: give them with %s (policy required_tags)',
                                  array_to_string(missing, ', '),
                                  (SELECT string_agg(format('--custom-tag %s=VALUE', t), ' ') FROM unnest(missing) AS t)));
    END IF;
END;
$$;
