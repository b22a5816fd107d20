-- shiftguard's private schema: the Redshift-level state PostgreSQL has no place for.
-- Idempotent; run by every proxy at start under an advisory lock, as the management role.
-- Ordinary roles may call the procedures (each checks the caller itself) and nothing else.

CREATE SCHEMA IF NOT EXISTS shiftguard;
REVOKE ALL ON SCHEMA shiftguard FROM PUBLIC;
GRANT USAGE ON SCHEMA shiftguard TO PUBLIC;

CREATE TABLE IF NOT EXISTS shiftguard.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
REVOKE ALL ON shiftguard.settings FROM PUBLIC;

-- One row per Redshift user. The user's PostgreSQL role has the same name.
CREATE TABLE IF NOT EXISTS shiftguard.users (
    name         text PRIMARY KEY,
    -- 'md5' || md5(password || name), as Redshift stores a password; NULL: password disabled.
    password_md5 text CHECK (password_md5 ~ '^md5[0-9a-f]{32}$'),
    superuser    boolean NOT NULL DEFAULT false,
    created      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON shiftguard.users FROM PUBLIC;

-- Is the session's login role a Redshift superuser (or the management role itself)?
-- session_user is the role the proxy logged in as: sessions never switch identity.
CREATE OR REPLACE FUNCTION shiftguard.caller_is_superuser() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT session_user::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard')
        OR coalesce((SELECT u.superuser FROM shiftguard.users u WHERE u.name = session_user::text), false)
$$;
REVOKE ALL ON FUNCTION shiftguard.caller_is_superuser() FROM PUBLIC;

-- Role attributes that make a Redshift superuser on this backend: SUPERUSER where the backend
-- is shiftguard's own, CREATEDB CREATEROLE on an external one (see README).
CREATE OR REPLACE FUNCTION shiftguard.superuser_attributes() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE (SELECT value FROM shiftguard.settings WHERE name = 'superuser_mapping')
           WHEN 'superuser' THEN 'SUPERUSER CREATEDB CREATEROLE' ELSE 'NOSUPERUSER CREATEDB CREATEROLE' END
$$;
REVOKE ALL ON FUNCTION shiftguard.superuser_attributes() FROM PUBLIC;

CREATE OR REPLACE PROCEDURE shiftguard.create_user(
    p_name text, p_password_md5 text, p_superuser boolean, p_backend_verifier text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT shiftguard.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to create user' USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM shiftguard.users WHERE name = p_name)
       OR EXISTS (SELECT FROM pg_roles WHERE rolname = p_name) THEN
        RAISE EXCEPTION 'user "%" already exists', p_name USING ERRCODE = '42710';
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN %s PASSWORD %L', p_name,
                   CASE WHEN p_superuser THEN shiftguard.superuser_attributes()
                        ELSE 'NOSUPERUSER NOCREATEDB NOCREATEROLE' END,
                   p_backend_verifier);
    INSERT INTO shiftguard.users (name, password_md5, superuser) VALUES (p_name, p_password_md5, p_superuser);
END
$$;

CREATE OR REPLACE PROCEDURE shiftguard.set_password(p_name text, p_password_md5 text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Superusers may set anyone's password; every user may change their own.
    IF NOT (shiftguard.caller_is_superuser() OR session_user::text = p_name) THEN
        RAISE EXCEPTION 'permission denied to alter user "%"', p_name USING ERRCODE = '42501';
    END IF;
    -- Only a superuser can enable or disable a password (Redshift, ALTER USER).
    IF p_password_md5 IS NULL AND NOT shiftguard.caller_is_superuser() THEN
        RAISE EXCEPTION 'only a superuser can disable a password' USING ERRCODE = '42501';
    END IF;
    UPDATE shiftguard.users SET password_md5 = p_password_md5 WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
END
$$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_users(p_names text[], p_missing_ok boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    IF NOT shiftguard.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to drop user' USING ERRCODE = '42501';
    END IF;
    FOREACH v_name IN ARRAY p_names LOOP
        IF NOT EXISTS (SELECT FROM shiftguard.users WHERE name = v_name) THEN
            IF p_missing_ok THEN
                RAISE NOTICE 'user "%" does not exist, skipping', v_name;
                CONTINUE;
            END IF;
            RAISE EXCEPTION 'user "%" does not exist', v_name USING ERRCODE = '42704';
        END IF;
        IF v_name = session_user::text THEN
            RAISE EXCEPTION 'current user cannot be dropped' USING ERRCODE = '55006';
        END IF;
        DELETE FROM shiftguard.users WHERE name = v_name;
        EXECUTE format('DROP ROLE %I', v_name);
    END LOOP;
END
$$;
