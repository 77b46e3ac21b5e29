-- The `expires` tag on a cluster's EC2 resources follows its expiry.
--
-- At creation the resources carry an upper bound (the request's lifetime from the moment of
-- creation, plus an hour for provisioning): the cluster's real expiry starts when it is ready.
-- The janitor then writes the real one to every resource tagged with the cluster, and again
-- after each extend. This column holds the expiry the tags last received; a ready cluster
-- whose expires_at differs from it is due.
ALTER TABLE clusters ADD COLUMN expiry_tagged_at timestamptz;
-- The last failed attempt (no permission to tag, say): the cluster waits before the next one
-- and does not hold up the others.
ALTER TABLE clusters ADD COLUMN expiry_tag_failed_at timestamptz;

-- Where EC2 capacity recently ran out, shared by every worker: a (region, zone, instance type)
-- that answered InsufficientInstanceCapacity (or whose instances never started) is skipped by
-- every cluster until `until`. Rows past `until` mean nothing and are pruned as they are read.
CREATE TABLE capacity_failures (
    region        text        NOT NULL,
    zone          text        NOT NULL,
    instance_type text        NOT NULL,
    code          text        NOT NULL,
    until         timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region, zone, instance_type)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON capacity_failures TO flotilla_worker;
GRANT SELECT ON capacity_failures TO flotilla_operator;

-- The regions the fleet can build in, and the image used there. Seeded with the regions whose
-- default image Flotilla knows; every `worker run` that builds registers its own region and
-- image at start (it refuses to start without an image). A pool pinned to a region nobody can
-- build in is refused when it is set, not when its clusters would fail in a worker.
CREATE TABLE build_regions (
    region  text PRIMARY KEY,
    image   text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO build_regions (region, image) VALUES ('us-east-1', 'ami-006219aba10688d0b'), ('us-west-2', 'ami-03daaf0b90fc7c71b');
GRANT SELECT, INSERT, UPDATE, DELETE ON build_regions TO flotilla_worker;
GRANT SELECT ON build_regions TO flotilla_operator;

CREATE FUNCTION pools_require_build_region() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A pool's other settings may change whatever became of its region.
    IF TG_OP = 'UPDATE' AND NEW.region IS NOT DISTINCT FROM OLD.region THEN
        RETURN NEW;
    END IF;
    IF NEW.region IS NOT NULL AND NOT EXISTS (SELECT 1 FROM build_regions WHERE region = NEW.region) THEN
        PERFORM api_bad(format('no image is known for region %s and no worker building there has registered one: start a worker in %s with FLOTILLA_AMI, then set the pool',
                               NEW.region, NEW.region));
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER pools_build_region BEFORE INSERT OR UPDATE OF region ON pools
    FOR EACH ROW EXECUTE FUNCTION pools_require_build_region();
