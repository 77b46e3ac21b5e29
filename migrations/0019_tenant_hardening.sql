-- A harder tenant boundary (issue 24, part 5).
--
-- 1. Nobody but the owner creates anything in schema public. On PostgreSQL 14 or older, and on
--    a database upgraded from one, every login could: a client login could plant a function or
--    an operator there that a SECURITY DEFINER function then resolves and runs as the owner.
--    (`worker migrate` also refuses to run while any other role may create there.)
-- 2. Every SECURITY DEFINER function looks names up in pg_catalog first, then public, then
--    pg_temp: a built-in can no longer be shadowed from any schema, nor anything from a
--    session's temporary schema. A test checks every such function, later ones included.
-- 3. api_key refuses to send a private key over a connection that is neither encrypted nor
--    from a loopback address, unless the operator allows it for that owner
--    (policy.allow_cleartext_keys). A key that crossed a network in cleartext is a key others
--    may hold.

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

ALTER TABLE policy ADD COLUMN allow_cleartext_keys boolean NOT NULL DEFAULT false;

-- Whether this session may receive a secret: true over a Unix socket or loopback, else whether
-- it is encrypted; NULL when this role cannot tell (pg_stat_ssl shows another login's session
-- only to a superuser or a member of pg_read_all_stats, and the functions run as the owner).
CREATE FUNCTION session_private_enough() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN inet_client_addr() IS NULL OR inet_client_addr() <<= inet '127.0.0.0/8' OR inet_client_addr() = inet '::1'
            THEN true
        ELSE (SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid())
    END
$$;
REVOKE EXECUTE ON FUNCTION session_private_enough() FROM PUBLIC;

CREATE OR REPLACE FUNCTION api_key(p_id text, p_token text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    key text;
    is_private boolean;
BEGIN
    PERFORM api_holder(p_id, p_token);
    is_private := session_private_enough();
    IF is_private IS NOT TRUE AND NOT coalesce((policy_for(session_user)).allow_cleartext_keys, false) THEN
        IF is_private IS NULL THEN
            PERFORM api_refuse(format('cannot tell whether the connection from %s is encrypted, so the private key of %s '
                                      || 'is not sent: the database owner needs pg_read_all_stats (or allow_cleartext_keys '
                                      || 'in your policy)', host(inet_client_addr()), p_id));
        END IF;
        PERFORM api_refuse(format('the private key of %s is not sent in cleartext to %s: connect with sslmode=require '
                                  || '(or verify-full), or ask an operator to set allow_cleartext_keys in your policy',
                                  p_id, host(inet_client_addr())));
    END IF;
    SELECT private_key INTO key FROM cluster_secrets WHERE cluster_id = p_id;
    IF key IS NULL THEN
        RAISE EXCEPTION 'cluster % has no key yet (it is created when provisioning starts)', p_id USING ERRCODE = 'FLT04';
    END IF;
    UPDATE clusters SET collected_at = coalesce(collected_at, now()) WHERE id = p_id;
    INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (p_id, 'key-read', jsonb_build_object('by', session_user));
    RETURN key;
END;
$$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END;
$$;
