-- The `expires` tag on a cluster's EC2 resources follows its expiry.
--
-- At creation the resources carry an upper bound (the request's lifetime from the moment of
-- creation, plus an hour for provisioning): the cluster's real expiry starts when it is ready.
-- The janitor then writes the real one to every resource tagged with the cluster, and again
-- after each extend. This column holds the expiry the tags last received; a ready cluster
-- whose expires_at differs from it is due.
ALTER TABLE clusters ADD COLUMN expiry_tagged_at timestamptz;

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
