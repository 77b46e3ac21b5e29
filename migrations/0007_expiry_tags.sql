-- The `expires` tag on a cluster's EC2 resources follows its expiry.
--
-- At creation the resources carry an upper bound (the request's lifetime from the moment of
-- creation, plus an hour for provisioning): the cluster's real expiry starts when it is ready.
-- The janitor then writes the real one to every resource tagged with the cluster, and again
-- after each extend. This column holds the expiry the tags last received; a ready cluster
-- whose expires_at differs from it is due.
ALTER TABLE clusters ADD COLUMN expiry_tagged_at timestamptz;
