-- Native identity-provider federation (reference/redshift-iam.md §5): the providers whose OIDC
-- tokens are logins, and the procedures of CREATE / ALTER / DROP IDENTITY PROVIDER
-- (policy/idp.py parses them). Run after schema.sql, in the same bootstrap transaction.
-- Superusers only. The parameters hold client_secret (sealed by the proxy, policy/sealing.py, so
-- that no statement text holds it): the table is readable by the management role only, and
-- svv_identity_providers never shows the secrets.

CREATE TABLE IF NOT EXISTS shiftguard_rows.identity_providers (
    uid               serial UNIQUE,
    name              text PRIMARY KEY,
    type              text NOT NULL,
    namespace         text NOT NULL UNIQUE,
    params            jsonb NOT NULL,
    application_arn   text,
    iam_role          text,
    auto_create_roles boolean NOT NULL DEFAULT true,
    groups_filter     jsonb,           -- {"mode": "include" | "exclude", "pattern": LIKE pattern}
    enabled           boolean NOT NULL DEFAULT true,
    created           timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON shiftguard_rows.identity_providers FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.require_idp_admin__keyed(p_action text, p_key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT shiftguard.role_is_superuser(v_caller) THEN
        RAISE EXCEPTION 'permission denied to % identity provider', p_action  -- UNVERIFIED wording
            USING ERRCODE = '42501', HINT = 'Only a superuser can manage identity providers.';
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is require_idp_admin__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.require_idp_admin(p_action text) RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.require_idp_admin__keyed($1, shiftguard.caller_key()) $$;

CREATE OR REPLACE FUNCTION shiftguard.require_free_namespace(p_namespace text, p_name text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM shiftguard_rows.identity_providers WHERE namespace = p_namespace AND name <> p_name) THEN
        RAISE EXCEPTION 'namespace "%" is used by another identity provider', p_namespace USING ERRCODE = '42710';
    END IF;
END
$$;

-- CREATE IDENTITY PROVIDER, as parsed by the proxy (policy/idp.py) into JSON.
CREATE OR REPLACE PROCEDURE shiftguard.create_identity_provider__keyed(p_spec jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    PERFORM shiftguard.require_idp_admin__keyed('create', p_key => p_key);
    IF EXISTS (SELECT FROM shiftguard_rows.identity_providers WHERE name = p_spec->>'name') THEN
        RAISE EXCEPTION 'identity provider "%" already exists', p_spec->>'name' USING ERRCODE = '42710';
    END IF;
    PERFORM shiftguard.require_free_namespace(p_spec->>'namespace', p_spec->>'name');
    INSERT INTO shiftguard_rows.identity_providers (name, type, namespace, params, application_arn, iam_role,
                                               auto_create_roles, groups_filter, enabled)
    VALUES (p_spec->>'name', p_spec->>'type', p_spec->>'namespace', p_spec->'params', p_spec->>'application_arn',
            p_spec->>'iam_role', coalesce((p_spec->>'auto_create_roles')::boolean, true),
            nullif(p_spec->'groups_filter', 'null'::jsonb), coalesce((p_spec->>'enabled')::boolean, true));
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_identity_provider__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_identity_provider(p_spec jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_identity_provider__keyed($1, shiftguard.caller_key()) $$;

-- ALTER IDENTITY PROVIDER: only the clauses given change; PARAMETERS replace the old ones.
CREATE OR REPLACE PROCEDURE shiftguard.alter_identity_provider__keyed(p_spec jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_name text := p_spec->>'name';
BEGIN
    PERFORM shiftguard.require_idp_admin__keyed('alter', p_key => p_key);
    IF NOT EXISTS (SELECT FROM shiftguard_rows.identity_providers WHERE name = v_name) THEN
        RAISE EXCEPTION 'identity provider "%" does not exist', v_name USING ERRCODE = '42704';
    END IF;
    IF p_spec ? 'namespace' THEN
        PERFORM shiftguard.require_free_namespace(p_spec->>'namespace', v_name);
    END IF;
    UPDATE shiftguard_rows.identity_providers SET
        params = CASE WHEN p_spec ? 'params' THEN p_spec->'params' ELSE params END,
        namespace = coalesce(p_spec->>'namespace', namespace),
        iam_role = CASE WHEN p_spec ? 'iam_role' THEN p_spec->>'iam_role' ELSE iam_role END,
        auto_create_roles = coalesce((p_spec->>'auto_create_roles')::boolean, auto_create_roles),
        groups_filter = CASE WHEN p_spec ? 'auto_create_roles' THEN nullif(p_spec->'groups_filter', 'null'::jsonb)
                             ELSE groups_filter END,
        enabled = coalesce((p_spec->>'enabled')::boolean, enabled)
     WHERE name = v_name;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is alter_identity_provider__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.alter_identity_provider(p_spec jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.alter_identity_provider__keyed($1, shiftguard.caller_key()) $$;

-- DROP IDENTITY PROVIDER [CASCADE]: with CASCADE, its users and roles (namespace:*) go too.
CREATE OR REPLACE PROCEDURE shiftguard.drop_identity_provider__keyed(p_name text, p_cascade boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_namespace text;
    v_users     text[];
    v_role      text;
BEGIN
    PERFORM shiftguard.require_idp_admin__keyed('drop', p_key => p_key);
    SELECT namespace INTO v_namespace FROM shiftguard_rows.identity_providers WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'identity provider "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    DELETE FROM shiftguard_rows.identity_providers WHERE name = p_name;
    IF p_cascade THEN
        SELECT array_agg(name) INTO v_users FROM shiftguard_rows.users WHERE starts_with(name, v_namespace || ':');
        IF v_users IS NOT NULL THEN
            CALL shiftguard.drop_users__keyed(v_users, false, p_key => p_key);
        END IF;
        FOR v_role IN SELECT name FROM shiftguard_rows.roles WHERE starts_with(name, v_namespace || ':') LOOP
            CALL shiftguard.drop_role__keyed(v_role, true, p_key => p_key);
        END LOOP;
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_identity_provider__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_identity_provider(p_name text, p_cascade boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_identity_provider__keyed($1, $2, shiftguard.caller_key()) $$;

-- At an IdP login (run by the management role, catalog/store.py): the user's roles from the
-- provider's namespace become exactly p_roles (those that exist, or that the provider may
-- create and its group filter lets through).
CREATE OR REPLACE FUNCTION shiftguard.sync_idp_roles(p_provider text, p_user text, p_roles text[]) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_idp   shiftguard_rows.identity_providers;
    v_role  text;
    v_group text;
    v_kept  text[] := '{}';
BEGIN
    SELECT * INTO STRICT v_idp FROM shiftguard_rows.identity_providers WHERE name = p_provider;
    FOREACH v_role IN ARRAY p_roles LOOP
        v_group := substr(v_role, length(v_idp.namespace) + 2);
        IF v_idp.groups_filter IS NOT NULL AND (
               (v_idp.groups_filter->>'mode' = 'include' AND NOT v_group LIKE v_idp.groups_filter->>'pattern')
            OR (v_idp.groups_filter->>'mode' = 'exclude' AND v_group LIKE v_idp.groups_filter->>'pattern')) THEN
            CONTINUE;
        END IF;
        IF NOT EXISTS (SELECT FROM shiftguard_rows.roles WHERE name = v_role) THEN
            IF NOT v_idp.auto_create_roles OR EXISTS (SELECT FROM pg_roles WHERE rolname = v_role) THEN
                CONTINUE;
            END IF;
            CALL shiftguard.create_role(v_role, NULL);
        END IF;
        IF NOT pg_has_role(p_user, v_role, 'MEMBER') THEN
            PERFORM shiftguard.add_member(v_role, p_user);
        END IF;
        v_kept := v_kept || v_role;
    END LOOP;
    FOR v_role IN SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                   WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = p_user)
                     AND starts_with(r.rolname, v_idp.namespace || ':') AND NOT r.rolname = ANY (v_kept) LOOP
        EXECUTE format('REVOKE %I FROM %I', v_role, p_user);
    END LOOP;
    RETURN v_kept;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.sync_idp_roles(text, text, text[]) FROM PUBLIC;

-- SVV_IDENTITY_PROVIDERS: Redshift's columns; superusers see every row, others none; the
-- secrets in the parameters are never shown.
CREATE OR REPLACE VIEW shiftguard.svv_identity_providers WITH (security_barrier) AS
SELECT uid, name, type,
       substring(params->>'issuer' FROM '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')
           AS instanceid,
       namespace AS namespc,
       (params - 'client_secret' - 'client_pk_base64' - 'client_pk_password')::text AS params,
       enabled
  FROM shiftguard_rows.identity_providers
 WHERE shiftguard.caller_is_superuser();
GRANT SELECT ON shiftguard.svv_identity_providers TO PUBLIC;
