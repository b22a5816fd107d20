-- Redshift's object privileges that PostgreSQL has no bit for, and the system permissions that
-- cover DROP (reference §3, §4). Run after schema.sql, in the same bootstrap transaction.
--
-- GRANT / REVOKE of DROP and ALTER (tables, schemas), ALTER and USAGE (databases) are kept in
-- shiftguard_rows.object_privileges. A DROP TABLE / VIEW / SCHEMA, and a rename of a table or
-- column, come here (policy/privileges.py rewrites them): the owner, a superuser, a holder of
-- the matching system permission (DROP TABLE, DROP VIEW, DROP SCHEMA, ALTER TABLE) or of the
-- object privilege may; the statement then runs as the management role. Those statements run no
-- user code, so nothing else gains the management role's rights.

-- Does the session's user hold the Redshift-only privilege on the object (through PUBLIC, a
-- group or a role included)?
CREATE OR REPLACE FUNCTION shiftguard.holds__keyed(p_type text, p_oid oid, p_privilege text,
                                            p_grant_option boolean DEFAULT false, p_key text DEFAULT NULL) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT FROM shiftguard_rows.object_privileges o
         WHERE o.object_type = p_type AND o.object_oid = p_oid AND o.privilege = p_privilege
           AND (o.grant_option OR NOT p_grant_option)
           AND (o.grantee = '' OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = o.grantee
                                             AND pg_has_role(shiftguard.key_owner(p_key), r.oid, 'USAGE'))))
$$;

GRANT EXECUTE ON FUNCTION shiftguard.holds__keyed(text, oid, text, boolean, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is holds__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.holds(p_type text, p_oid oid, p_privilege text,
                                            p_grant_option boolean DEFAULT false) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.holds__keyed($1, $2, $3, $4, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.holds(text, oid, text, boolean) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.database_oid(p_name text) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_oid oid := (SELECT oid FROM pg_database WHERE datname = p_name);
BEGIN
    IF v_oid IS NULL THEN
        RAISE EXCEPTION 'database "%" does not exist', p_name USING ERRCODE = '3D000';
    END IF;
    RETURN v_oid;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.database_oid(text) TO PUBLIC;

-- Objects no privilege or system permission reaches: the catalogs and shiftguard's own schema
-- (a holder of DROP TABLE or DROP SCHEMA must not drop the users table, or the schema itself).
CREATE OR REPLACE FUNCTION shiftguard.protected(p_type text, p_oid oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(CASE p_type
        WHEN 'table' THEN (SELECT relnamespace FROM pg_class WHERE oid = p_oid)
        WHEN 'routine' THEN (SELECT pronamespace FROM pg_proc WHERE oid = p_oid)
        WHEN 'schema' THEN p_oid END
        IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace,
            'shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace), false)
$$;

CREATE OR REPLACE FUNCTION shiftguard.object_owner(p_type text, p_oid oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_type
        WHEN 'table' THEN (SELECT relowner FROM pg_class WHERE oid = p_oid)
        WHEN 'schema' THEN (SELECT nspowner FROM pg_namespace WHERE oid = p_oid)
        ELSE (SELECT datdba FROM pg_database WHERE oid = p_oid) END
$$;

CREATE OR REPLACE FUNCTION shiftguard.object_label(p_type text, p_oid oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_type
        WHEN 'table' THEN 'relation ' || (SELECT relname FROM pg_class WHERE oid = p_oid)
        WHEN 'schema' THEN 'schema ' || (SELECT nspname FROM pg_namespace WHERE oid = p_oid)
        ELSE 'database ' || (SELECT datname FROM pg_database WHERE oid = p_oid) END
$$;

-- The Redshift-only half of a GRANT or REVOKE (the proxy split it off; the PostgreSQL half
-- ran just before, as the caller). p_spec: is_grant, object_type, privileges, grantees (role
-- names, '' for PUBLIC), grant_option (GRANT ... WITH GRANT OPTION, or REVOKE GRANT OPTION FOR).
CREATE OR REPLACE FUNCTION shiftguard.redshift_grant__keyed(p_spec jsonb, p_objects oid[], p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_type      text := p_spec->>'object_type';
    v_object    oid;
    v_privilege text;
    v_grantee   text;
BEGIN
    FOREACH v_object IN ARRAY p_objects LOOP
        -- (Callable by anyone: an OID with no object behind it must not take a grant that a
        -- later object given that OID would inherit.)
        IF shiftguard.object_owner(v_type, v_object) IS NULL THEN
            RAISE EXCEPTION '% with OID % does not exist', v_type, v_object USING ERRCODE = '42704';
        END IF;
        FOR v_privilege IN SELECT jsonb_array_elements_text(p_spec->'privileges') LOOP
            IF NOT (shiftguard.role_is_superuser(v_caller)
                    OR pg_has_role(v_caller, shiftguard.object_owner(v_type, v_object), 'USAGE')
                    OR shiftguard.holds__keyed(v_type, v_object, v_privilege, true, p_key => p_key)) THEN
                RAISE EXCEPTION 'permission denied for %', shiftguard.object_label(v_type, v_object)
                    USING ERRCODE = '42501';
            END IF;
            FOR v_grantee IN SELECT jsonb_array_elements_text(p_spec->'grantees') LOOP
                IF v_grantee <> '' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_grantee) THEN
                    RAISE EXCEPTION 'role "%" does not exist', v_grantee USING ERRCODE = '42704';
                END IF;
                IF (p_spec->>'is_grant')::boolean THEN
                    INSERT INTO shiftguard_rows.object_privileges AS o
                           (object_type, object_oid, grantee, privilege, grant_option, grantor)
                    VALUES (v_type, v_object, v_grantee, v_privilege, (p_spec->>'grant_option')::boolean, v_caller)
                    ON CONFLICT (object_type, object_oid, grantee, privilege)
                    DO UPDATE SET grant_option = o.grant_option OR excluded.grant_option;
                ELSIF (p_spec->>'grant_option')::boolean THEN
                    UPDATE shiftguard_rows.object_privileges SET grant_option = false
                     WHERE object_type = v_type AND object_oid = v_object AND grantee = v_grantee
                       AND privilege = v_privilege;
                ELSE
                    DELETE FROM shiftguard_rows.object_privileges
                     WHERE object_type = v_type AND object_oid = v_object AND grantee = v_grantee
                       AND privilege = v_privilege;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.redshift_grant__keyed(jsonb, oid[], text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is redshift_grant__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.redshift_grant(p_spec jsonb, p_objects oid[]) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.redshift_grant__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.redshift_grant(jsonb, oid[]) TO PUBLIC;

-- A GRANT or REVOKE naming Redshift-only privileges: PostgreSQL's part runs as the caller, so
-- PostgreSQL checks who may grant it; then the Redshift-only part (checked above). Runs with
-- the caller's rights only, like any statement the caller could send; PostgreSQL's part with the
-- caller's search_path (shiftguard.caller_execute), as the caller wrote it.
DROP PROCEDURE IF EXISTS shiftguard.grant_privileges(text, jsonb, oid[]);
CREATE OR REPLACE PROCEDURE shiftguard.grant_privileges(p_postgres text, p_spec jsonb, p_objects oid[],
                                                       p_search_path text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_postgres IS NOT NULL THEN
        PERFORM shiftguard.caller_execute(p_postgres, p_search_path);
    END IF;
    PERFORM shiftguard.redshift_grant(p_spec, p_objects);
END
$$;

-- Redshift's column rules (reference §4; the Python half is policy/privileges.py column_rules).
-- A privilege held by a grantee's own ACL entry, on the table or on any of its columns.
CREATE OR REPLACE FUNCTION shiftguard.held_on_table(p_table oid, p_role oid, p_privilege text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                    WHERE c.oid = p_table AND a.grantee = p_role AND a.privilege_type = p_privilege)
$$;
GRANT EXECUTE ON FUNCTION shiftguard.held_on_table(oid, oid, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.held_on_columns(p_table oid, p_role oid, p_privilege text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a
                    WHERE t.attrelid = p_table AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL
                      AND a.grantee = p_role AND a.privilege_type = p_privilege)
$$;
GRANT EXECUTE ON FUNCTION shiftguard.held_on_columns(oid, oid, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.grantee_label(p_role text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_role = '' THEN 'PUBLIC'
                WHEN p_role LIKE 'grp:%' THEN 'group ' || substr(p_role, 5)
                ELSE p_role END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.grantee_label(text) TO PUBLIC;

-- GRANT or REVOKE on tables under Redshift's column rules. p_statement: the table-level part,
-- as the caller wrote it (NULL when there is none); p_spec: is_grant, check (table-level
-- privileges a grantee must not hold on columns), columns ([{privilege, columns}]), grantees
-- (role names, '' for PUBLIC). Everything runs with the caller's rights, so PostgreSQL decides
-- who may grant; the rules only refuse or skip. Error wording: UNVERIFIED (Redshift's is not
-- documented), SQLSTATE 0LP01 (invalid_grant_operation) as PostgreSQL uses for grant misuse.
DROP PROCEDURE IF EXISTS shiftguard.grant_checked(text, jsonb, oid[]);
CREATE OR REPLACE PROCEDURE shiftguard.grant_checked(p_statement text, p_spec jsonb, p_tables oid[], p_search_path text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_granting  boolean := (p_spec->>'is_grant')::boolean;
    v_table     oid;
    v_grantee   text;
    v_role      oid;
    v_privilege text;
    v_item      jsonb;
    v_columns   text;
BEGIN
    FOREACH v_table IN ARRAY p_tables LOOP
        FOR v_grantee IN SELECT jsonb_array_elements_text(p_spec->'grantees') LOOP
            v_role := CASE WHEN v_grantee = '' THEN 0 ELSE (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = v_grantee) END;
            CONTINUE WHEN v_role IS NULL;  -- PostgreSQL names the missing role below
            FOR v_privilege IN SELECT jsonb_array_elements_text(p_spec->'check') LOOP
                IF shiftguard.held_on_columns(v_table, v_role, v_privilege) THEN
                    RAISE EXCEPTION '% on relation % is granted to % on columns', v_privilege,
                        (SELECT relname FROM pg_catalog.pg_class WHERE oid = v_table), shiftguard.grantee_label(v_grantee)
                        USING ERRCODE = '0LP01',
                              HINT = 'A privilege is held at one level: revoke it from the columns first.';
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    IF p_statement IS NOT NULL THEN
        PERFORM shiftguard.caller_execute(p_statement, p_search_path);
    END IF;
    IF jsonb_array_length(p_spec->'columns') = 0 THEN
        RETURN;
    END IF;
    FOREACH v_table IN ARRAY p_tables LOOP
        IF NOT (shiftguard.caller_is_superuser() OR pg_catalog.pg_has_role(current_user,
                    (SELECT relowner FROM pg_catalog.pg_class WHERE oid = v_table), 'USAGE')) THEN
            RAISE EXCEPTION 'permission denied for relation %', (SELECT relname FROM pg_catalog.pg_class WHERE oid = v_table)
                USING ERRCODE = '42501',
                      HINT = 'Only the owner of a relation or a superuser grants and revokes privileges on its columns.';
        END IF;
        FOR v_item IN SELECT jsonb_array_elements(p_spec->'columns') LOOP
            v_privilege := v_item->>'privilege';
            IF v_privilege = 'UPDATE' AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = v_table) IN ('v', 'm') THEN
                RAISE EXCEPTION 'the columns of view % take SELECT only', v_table::regclass USING ERRCODE = '0LP01';
            END IF;
            SELECT string_agg(quote_ident(c), ', ') INTO v_columns FROM jsonb_array_elements_text(v_item->'columns') c;
            FOR v_grantee IN SELECT jsonb_array_elements_text(p_spec->'grantees') LOOP
                v_role := CASE WHEN v_grantee = '' THEN 0 ELSE (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = v_grantee) END;
                IF v_role IS NOT NULL AND shiftguard.held_on_table(v_table, v_role, v_privilege) THEN
                    IF v_granting THEN
                        CONTINUE;  -- held on the whole table already: Redshift makes the column grant a no-op
                    END IF;
                    RAISE EXCEPTION '% on relation % is granted to % on the whole relation', v_privilege,
                        (SELECT relname FROM pg_catalog.pg_class WHERE oid = v_table), shiftguard.grantee_label(v_grantee)
                        USING ERRCODE = '0LP01', HINT = 'Revoke it from the relation (that revokes it from its columns too).';
                END IF;
                EXECUTE format(CASE WHEN v_granting THEN 'GRANT %s (%s) ON %s TO %s' ELSE 'REVOKE %s (%s) ON %s FROM %s' END,
                               v_privilege, v_columns, v_table::regclass,
                               CASE WHEN v_grantee = '' THEN 'PUBLIC' ELSE quote_ident(v_grantee) END);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

-- Tables of the schemas, for GRANT ... ON ALL TABLES IN SCHEMA (views included, as in Redshift).
CREATE OR REPLACE FUNCTION shiftguard.tables_in(p_schemas oid[]) RETURNS oid[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(oid ORDER BY oid), '{}') FROM pg_class
     WHERE relnamespace = ANY (p_schemas) AND relkind IN ('r', 'p', 'v', 'm', 'f')
$$;
GRANT EXECUTE ON FUNCTION shiftguard.tables_in(oid[]) TO PUBLIC;

-- DROP TABLE | VIEW | SCHEMA [IF EXISTS] name, ... [CASCADE | RESTRICT]. p_objects: the names
-- resolved by the caller (NULL where there is none); p_names: as written, for messages. As in
-- PostgreSQL, every object is checked before any is dropped, and one that dropping an earlier
-- one took along (CASCADE: a child table, a view on a view) is gone without a word.
CREATE OR REPLACE PROCEDURE shiftguard.drop_objects__keyed(p_kind text, p_objects oid[], p_names text[],
                                                   p_if_exists boolean, p_cascade boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_type    text := CASE p_kind WHEN 'SCHEMA' THEN 'schema' ELSE 'table' END;
    v_kind    "char";
    v_targets text[] := '{}';
    v_policy  text;
BEGIN
    IF p_kind NOT IN ('TABLE', 'VIEW', 'SCHEMA') OR cardinality(p_objects) <> cardinality(p_names) THEN
        RAISE EXCEPTION 'drop_objects: unexpected arguments' USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. cardinality(p_objects) LOOP
        v_targets := v_targets || NULL::text;
        IF p_objects[i] IS NULL THEN
            IF p_if_exists THEN
                RAISE NOTICE '% "%" does not exist, skipping', lower(p_kind), p_names[i];
                CONTINUE;
            END IF;
            RAISE EXCEPTION '% "%" does not exist', lower(p_kind), p_names[i]
                USING ERRCODE = CASE p_kind WHEN 'SCHEMA' THEN '3F000' ELSE '42P01' END;
        END IF;
        IF v_type = 'table' THEN
            v_kind := (SELECT relkind FROM pg_class WHERE oid = p_objects[i]);
            IF (p_kind = 'TABLE' AND v_kind NOT IN ('r', 'p', 'f')) OR (p_kind = 'VIEW' AND v_kind <> 'v') THEN
                RAISE EXCEPTION '"%" is not a %', p_names[i], lower(p_kind) USING ERRCODE = '42809',
                    HINT = CASE WHEN v_kind = 'v' THEN 'Use DROP VIEW to remove a view.'
                                WHEN v_kind IN ('r', 'p') THEN 'Use DROP TABLE to remove a table.' END;
            END IF;
            v_targets[i] := p_objects[i]::regclass::text;
        ELSE
            v_targets[i] := quote_ident((SELECT nspname FROM pg_namespace WHERE oid = p_objects[i]));
        END IF;
        IF NOT (shiftguard.role_is_superuser(v_caller)
                OR (NOT shiftguard.protected(v_type, p_objects[i])
                    AND (pg_has_role(v_caller, shiftguard.object_owner(v_type, p_objects[i]), 'USAGE')
                         OR shiftguard.role_may(v_caller, 'DROP ' || p_kind)
                         OR shiftguard.holds__keyed(v_type, p_objects[i], 'DROP', p_key => p_key)))) THEN
            RAISE EXCEPTION 'must be owner of % %', CASE v_type WHEN 'table' THEN 'relation' ELSE 'schema' END,
                p_names[i] USING ERRCODE = '42501';
        END IF;
        -- (CASCADE would take the policy's function, and the row security of its tables, along)
        v_policy := shiftguard.rls_policy_reading(v_type, p_objects[i]);
        IF v_policy IS NOT NULL THEN
            RAISE EXCEPTION 'RLS policy "%" reads % "%"', v_policy, lower(p_kind), p_names[i] USING ERRCODE = '2BP01',
                HINT = 'Change the policy with ALTER RLS POLICY, or drop it, first.';
        END IF;
    END LOOP;
    FOR i IN 1 .. cardinality(p_objects) LOOP
        CONTINUE WHEN v_targets[i] IS NULL;
        IF (v_type = 'table' AND NOT EXISTS (SELECT FROM pg_class WHERE oid = p_objects[i]))
                OR (v_type = 'schema' AND NOT EXISTS (SELECT FROM pg_namespace WHERE oid = p_objects[i])) THEN
            DELETE FROM shiftguard_rows.masking_attachments WHERE v_type = 'table' AND relation = p_objects[i];
            DELETE FROM shiftguard_rows.object_privileges WHERE object_type = v_type AND object_oid = p_objects[i];
            CONTINUE;  -- dropped along with an earlier one
        END IF;
        IF v_type = 'table' THEN
            PERFORM shiftguard.rls_clear(p_objects[i], true);  -- its rls@<oid> functions and view (catalog/rls.sql) too
        END IF;
        IF v_type = 'table' AND to_regclass(format('shiftguard.%I', 'mask:' || p_objects[i])) IS NOT NULL THEN
            -- its masking view (catalog/masking.sql) goes first
            EXECUTE format('DROP VIEW shiftguard.%I %s', 'mask:' || p_objects[i],
                           CASE WHEN p_cascade THEN 'CASCADE' ELSE 'RESTRICT' END);
            DELETE FROM shiftguard_rows.masking_attachments WHERE relation = p_objects[i];
        END IF;
        EXECUTE format('DROP %s %s %s', p_kind, v_targets[i], CASE WHEN p_cascade THEN 'CASCADE' ELSE 'RESTRICT' END);
        DELETE FROM shiftguard_rows.object_privileges WHERE object_type = v_type AND object_oid = p_objects[i];
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_objects__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_objects(p_kind text, p_objects oid[], p_names text[],
                                                   p_if_exists boolean, p_cascade boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_objects__keyed($1, $2, $3, $4, $5, shiftguard.caller_key()) $$;

-- ALTER TABLE t RENAME TO n, ALTER TABLE t RENAME [COLUMN] c TO n: the owner, a superuser, the
-- ALTER TABLE system permission or the ALTER privilege on the table.
CREATE OR REPLACE PROCEDURE shiftguard.rename_relation__keyed(p_relation oid, p_column text, p_new text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT (shiftguard.role_is_superuser(v_caller)
            OR (NOT shiftguard.protected('table', p_relation)
                AND (pg_has_role(v_caller, shiftguard.object_owner('table', p_relation), 'USAGE')
                     OR shiftguard.role_may(v_caller, 'ALTER TABLE')
                     OR shiftguard.holds__keyed('table', p_relation, 'ALTER', p_key => p_key)))) THEN
        RAISE EXCEPTION 'must be owner of relation %', (SELECT relname FROM pg_class WHERE oid = p_relation)
            USING ERRCODE = '42501';
    END IF;
    IF p_column IS NULL THEN
        EXECUTE format('ALTER TABLE %s RENAME TO %I', p_relation::regclass, p_new);
    ELSE
        EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', p_relation::regclass, p_column, p_new);
    END IF;
    PERFORM shiftguard.mask_refit(p_relation);  -- a masked column keeps its name; a new table name
    PERFORM shiftguard.protected_names_moved();  -- the proxies know protected tables by name (row_code.sql)
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is rename_relation__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.rename_relation(p_relation oid, p_column text, p_new text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.rename_relation__keyed($1, $2, $3, shiftguard.caller_key()) $$;

-- ALTER DEFAULT PRIVILEGES ... GRANT DROP ON TABLES (PostgreSQL has no DROP bit): kept here
-- and applied to each new table or view of the owner (schema_oid 0: in every schema) by the
-- event trigger below. owner: the role's oid, as pg_default_acl keeps it; grantee: a role name,
-- '' for PUBLIC, as in shiftguard_rows.object_privileges.
CREATE TABLE IF NOT EXISTS shiftguard_rows.default_object_privileges (
    owner_oid    oid NOT NULL,
    schema_oid   oid NOT NULL DEFAULT 0,
    grantee      text NOT NULL,
    privilege    text NOT NULL CHECK (privilege = 'DROP'),
    grant_option boolean NOT NULL DEFAULT false,
    PRIMARY KEY (owner_oid, schema_oid, grantee, privilege)
);
REVOKE ALL ON shiftguard_rows.default_object_privileges FROM PUBLIC;

-- The DROP half of an ALTER DEFAULT PRIVILEGES (the proxy split it off; PostgreSQL's half, if
-- any, ran just before as the caller). Who may: as PostgreSQL's rule, a member of each target
-- user; also a superuser, and a holder of the ALTER DEFAULT PRIVILEGES permission for Redshift
-- users. p_spec: is_grant, grant_option, users ([]: the caller), schemas, grantees.
CREATE OR REPLACE FUNCTION shiftguard.redshift_default_grant__keyed(p_spec jsonb, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_owners  oid[];
    v_schemas oid[];
    v_owner   oid;
    v_schema  oid;
    v_grantee text;
BEGIN
    SELECT coalesce(array_agg(coalesce(r.oid, shiftguard.missing_role(u))), ARRAY[(SELECT oid FROM pg_roles WHERE rolname = v_caller)])
      INTO v_owners
      FROM jsonb_array_elements_text(p_spec->'users') u LEFT JOIN pg_roles r ON r.rolname = u;
    FOREACH v_owner IN ARRAY v_owners LOOP
        IF NOT (pg_has_role(v_caller, v_owner, 'MEMBER') OR shiftguard.role_is_superuser(v_caller)
                OR (shiftguard.role_may(v_caller, 'ALTER DEFAULT PRIVILEGES')
                    AND EXISTS (SELECT FROM shiftguard_rows.users WHERE name = (SELECT rolname FROM pg_roles WHERE oid = v_owner))
                    AND v_owner <> (SELECT oid FROM pg_roles WHERE rolname = current_user))) THEN
            RAISE EXCEPTION 'permission denied to change default privileges' USING ERRCODE = '42501';
        END IF;
    END LOOP;
    SELECT coalesce(array_agg(coalesce(to_regnamespace(quote_ident(n))::oid, shiftguard.missing_schema(n))), ARRAY[0::oid])
      INTO v_schemas FROM jsonb_array_elements_text(p_spec->'schemas') n;
    IF NOT shiftguard.role_is_superuser(v_caller) AND EXISTS (SELECT FROM unnest(v_schemas) n WHERE shiftguard.protected('schema', n)) THEN
        RAISE EXCEPTION 'permission denied: privileges do not reach the catalogs or shiftguard''s schema' USING ERRCODE = '42501';
    END IF;
    FOR v_grantee IN SELECT jsonb_array_elements_text(p_spec->'grantees') LOOP
        IF v_grantee <> '' THEN
            PERFORM shiftguard.missing_role(v_grantee) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_grantee);
        END IF;
        FOREACH v_owner IN ARRAY v_owners LOOP
            FOREACH v_schema IN ARRAY v_schemas LOOP
                IF (p_spec->>'is_grant')::boolean THEN
                    INSERT INTO shiftguard_rows.default_object_privileges AS d (owner_oid, schema_oid, grantee, privilege, grant_option)
                    VALUES (v_owner, v_schema, v_grantee, 'DROP', (p_spec->>'grant_option')::boolean)
                    ON CONFLICT (owner_oid, schema_oid, grantee, privilege)
                    DO UPDATE SET grant_option = d.grant_option OR excluded.grant_option;
                ELSIF (p_spec->>'grant_option')::boolean THEN
                    UPDATE shiftguard_rows.default_object_privileges SET grant_option = false
                     WHERE owner_oid = v_owner AND schema_oid = v_schema AND grantee = v_grantee;
                ELSE
                    DELETE FROM shiftguard_rows.default_object_privileges
                     WHERE owner_oid = v_owner AND schema_oid = v_schema AND grantee = v_grantee;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.redshift_default_grant__keyed(jsonb, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is redshift_default_grant__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.redshift_default_grant(p_spec jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.redshift_default_grant__keyed($1, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.redshift_default_grant(jsonb) TO PUBLIC;  -- it checks its caller

CREATE OR REPLACE FUNCTION shiftguard.missing_role(p_name text) RETURNS oid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'role "%" does not exist', p_name USING ERRCODE = '42704';
END
$$;

CREATE OR REPLACE FUNCTION shiftguard.missing_schema(p_name text) RETURNS oid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'schema "%" does not exist', p_name USING ERRCODE = '3F000';
END
$$;

DROP PROCEDURE IF EXISTS shiftguard.default_privileges(text, jsonb);
CREATE OR REPLACE PROCEDURE shiftguard.default_privileges(p_postgres text, p_spec jsonb, p_search_path text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_postgres IS NOT NULL THEN
        -- the caller's own statement (or its run_or_permit call), as the caller
        PERFORM shiftguard.caller_execute(p_postgres, p_search_path);
    END IF;
    PERFORM shiftguard.redshift_default_grant(p_spec);
END
$$;

-- A new table or view gets the DROP defaults of its owner (its creator: this trigger's name
-- sorts before the one that hands superusers' views over, catalog/rls.sql) for its schema and
-- for all schemas. Not the session's user: a SECURITY DEFINER function creates as its owner.
CREATE OR REPLACE FUNCTION shiftguard.apply_default_privileges() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO shiftguard_rows.object_privileges (object_type, object_oid, grantee, privilege, grant_option, grantor)
    SELECT DISTINCT ON (c.objid, d.grantee) 'table', c.objid, d.grantee, d.privilege, d.grant_option,
           (SELECT rolname::text FROM pg_roles WHERE oid = t.relowner)
      FROM pg_event_trigger_ddl_commands() c
      JOIN pg_class t ON t.oid = c.objid
      JOIN shiftguard_rows.default_object_privileges d
        ON d.owner_oid = t.relowner AND d.schema_oid IN (0, t.relnamespace)
     WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0 AND t.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND t.relnamespace NOT IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace)
     ORDER BY c.objid, d.grantee, d.grant_option DESC
    ON CONFLICT DO NOTHING;
END
$$;
SELECT shiftguard.ensure_event_trigger('shiftguard_default_privileges', 'ddl_command_end',
                                       ARRAY['CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW',
                                             'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE'],
                                       'shiftguard.apply_default_privileges');

-- Objects dropped by any path (DROP OWNED, CASCADE, a DO block) take their Redshift-only
-- privileges with them: a new object given the same oid must not inherit them.
CREATE OR REPLACE FUNCTION shiftguard.forget_dropped_objects() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM shiftguard_rows.object_privileges o
     USING pg_event_trigger_dropped_objects() d
     WHERE d.objid = o.object_oid AND d.objsubid = 0
       AND ((o.object_type = 'table' AND d.classid = 'pg_class'::regclass)
            OR (o.object_type = 'schema' AND d.classid = 'pg_namespace'::regclass));
    DELETE FROM shiftguard_rows.default_object_privileges p
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_namespace'::regclass AND d.objid = p.schema_oid;
    DELETE FROM shiftguard_rows.object_locks l
     USING pg_event_trigger_dropped_objects() d
     WHERE d.objid = l.object AND d.objsubid = 0 AND d.classid IN ('pg_class'::regclass, 'pg_namespace'::regclass);
END
$$;
SELECT shiftguard.ensure_event_trigger('shiftguard_forget_dropped_objects', 'sql_drop', NULL,
                                       'shiftguard.forget_dropped_objects');


-- SVV_DEFAULT_PRIVILEGES: what ALTER DEFAULT PRIVILEGES set, with Redshift's names. The UNION
-- ALL is in a subquery: PostgreSQL flattens a view that is a UNION ALL into its arms, barrier or
-- not, and would run a caller's condition there before the arms' filters.
CREATE OR REPLACE VIEW shiftguard.svv_default_privileges WITH (security_barrier) AS
SELECT * FROM (
    SELECT CASE WHEN d.defaclnamespace = 0 THEN NULL ELSE n.nspname::text END AS schema_name,
           CASE d.defaclobjtype WHEN 'r' THEN 'RELATION' WHEN 'f' THEN 'FUNCTION' WHEN 'n' THEN 'SCHEMA'
                ELSE d.defaclobjtype::text END AS object_type,
           d.defaclrole::integer AS owner_id, o.name AS owner_name, o.type AS owner_type,
           a.privilege_type::text AS privilege_type, a.grantee::integer AS grantee_id,
           i.type AS grantee_type, i.name AS grantee_name, a.is_grantable AND i.type = 'user' AS admin_option
      FROM pg_default_acl d
      LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
     CROSS JOIN LATERAL aclexplode(d.defaclacl) a
     CROSS JOIN LATERAL shiftguard.identity(a.grantee) i
     CROSS JOIN LATERAL shiftguard.identity(d.defaclrole) o
     WHERE a.grantee <> d.defaclrole AND shiftguard.sees_identity(a.grantee, d.defaclrole)
    UNION ALL
    SELECT CASE WHEN d.schema_oid = 0 THEN NULL ELSE n.nspname::text END, 'RELATION',
           d.owner_oid::integer, o.name, o.type, d.privilege, coalesce(g.oid, 0)::integer, i.type, i.name,
           d.grant_option AND i.type = 'user'
      FROM shiftguard_rows.default_object_privileges d
      LEFT JOIN pg_namespace n ON n.oid = d.schema_oid
      LEFT JOIN pg_roles g ON g.rolname = d.grantee
     CROSS JOIN LATERAL shiftguard.identity(coalesce(g.oid, 0)) i
     CROSS JOIN LATERAL shiftguard.identity(d.owner_oid) o
     WHERE (d.grantee = '' OR g.oid IS NOT NULL) AND shiftguard.sees_identity(coalesce(g.oid, 0), d.owner_oid)
) AS p;
GRANT SELECT ON shiftguard.svv_default_privileges TO PUBLIC;
DROP FUNCTION IF EXISTS shiftguard.default_privileges_rows();  -- the view reads the table itself

-- Redshift: a new procedure may be run by its owner and superusers only (functions are
-- executable by PUBLIC, as in PostgreSQL). Event triggers need a superuser to create.
CREATE OR REPLACE FUNCTION shiftguard.procedures_owner_only() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
BEGIN
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands()
                      WHERE command_tag = 'CREATE PROCEDURE' AND schema_name <> 'shiftguard' LOOP
        EXECUTE format('REVOKE EXECUTE ON PROCEDURE %s FROM PUBLIC', v_command.objid::regprocedure);
    END LOOP;
END
$$;

SELECT shiftguard.ensure_event_trigger('shiftguard_procedures_owner_only', 'ddl_command_end',
                                       ARRAY['CREATE PROCEDURE'], 'shiftguard.procedures_owner_only');

-- ASSUMEROLE (reference §4): which IAM roles a user's COPY, UNLOAD, ... may name. Granted and
-- revoked by superusers only; PUBLIC holds it for every role and use until a superuser runs
-- REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL. grantee is a PostgreSQL role ('' for PUBLIC).
CREATE TABLE IF NOT EXISTS shiftguard_rows.assumerole_grants (
    role_arn text NOT NULL,          -- an ARN, 'default' or 'ALL'
    grantee  text NOT NULL,
    use      text NOT NULL CHECK (use IN ('ALL', 'COPY', 'UNLOAD', 'EXTERNAL FUNCTION', 'CREATE MODEL')),
    grantor  text NOT NULL,
    PRIMARY KEY (role_arn, grantee, use)
);
REVOKE ALL ON shiftguard_rows.assumerole_grants FROM PUBLIC;
INSERT INTO shiftguard_rows.assumerole_grants
SELECT 'ALL', '', 'ALL', 'rdsdb' WHERE NOT EXISTS (SELECT FROM shiftguard_rows.settings WHERE name = 'assumerole_seeded');
INSERT INTO shiftguard_rows.settings VALUES ('assumerole_seeded', 'yes') ON CONFLICT DO NOTHING;

CREATE OR REPLACE PROCEDURE shiftguard.grant_assumerole__keyed(p_spec jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role    text;
    v_grantee text;
    v_use     text;
BEGIN
    IF NOT shiftguard.role_is_superuser(v_caller) THEN
        -- UNVERIFIED wording: Redshift documents that only superusers may.
        RAISE EXCEPTION 'permission denied: only a superuser can grant or revoke ASSUMEROLE' USING ERRCODE = '42501';
    END IF;
    FOR v_role IN SELECT jsonb_array_elements_text(p_spec->'roles') LOOP
        FOR v_grantee IN SELECT jsonb_array_elements_text(p_spec->'grantees') LOOP
            IF v_grantee <> '' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_grantee) THEN
                RAISE EXCEPTION 'role "%" does not exist', v_grantee USING ERRCODE = '42704';
            END IF;
            FOR v_use IN SELECT jsonb_array_elements_text(p_spec->'for') LOOP
                IF (p_spec->>'is_grant')::boolean THEN
                    INSERT INTO shiftguard_rows.assumerole_grants VALUES (v_role, v_grantee, v_use, v_caller)
                    ON CONFLICT DO NOTHING;
                ELSE
                    DELETE FROM shiftguard_rows.assumerole_grants
                     WHERE role_arn = v_role AND grantee = v_grantee AND use = v_use;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is grant_assumerole__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.grant_assumerole(p_spec jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.grant_assumerole__keyed($1, shiftguard.caller_key()) $$;

-- May the session's user name the IAM role for the use? Raises Redshift's error if not.
CREATE OR REPLACE FUNCTION shiftguard.require_assumerole__keyed(p_arn text, p_use text, p_key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF shiftguard.role_is_superuser(v_caller) OR EXISTS (
            SELECT FROM shiftguard_rows.assumerole_grants g
             WHERE (g.role_arn = p_arn OR g.role_arn = 'ALL' OR (g.role_arn = 'default' AND p_arn = 'default'))
               AND (g.use = p_use OR g.use = 'ALL')
               AND (g.grantee = '' OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = g.grantee
                                                AND pg_has_role(v_caller, r.oid, 'USAGE')))) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'User % does not have ASSUMEROLE permission on IAM role "%" for %', v_caller, p_arn, p_use
        USING ERRCODE = '42501';
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.require_assumerole__keyed(text, text, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is require_assumerole__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.require_assumerole(p_arn text, p_use text) RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.require_assumerole__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.require_assumerole(text, text) TO PUBLIC;

-- SVV_IAM_PRIVILEGES: who may name which IAM role for what (superusers see all; others their own).
CREATE OR REPLACE VIEW shiftguard.svv_iam_privileges WITH (security_barrier) AS
    SELECT g.role_arn AS iam_arn, g.use AS command_type, coalesce(r.oid, 0)::integer AS identity_id,
           i.name AS identity_name, i.type AS identity_type
      FROM shiftguard_rows.assumerole_grants g LEFT JOIN pg_roles r ON r.rolname = g.grantee
     CROSS JOIN LATERAL shiftguard.identity(coalesce(r.oid, 0)) i
     WHERE shiftguard.caller_is_superuser() OR g.grantee = ''
        OR (r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'USAGE'));
GRANT SELECT ON shiftguard.svv_iam_privileges TO PUBLIC;

-- The system permissions TRUNCATE TABLE, ANALYZE, DROP FUNCTION, DROP PROCEDURE and CREATE
-- SCHEMA (reference §3). The statement runs as the caller, so PostgreSQL decides, unless the
-- caller holds the permission: then the management role runs a statement built here from the
-- resolved objects (never the caller's text), which runs no code of anyone's: tables with
-- triggers are refused, ANALYZE runs index expressions as the table's owner.
DROP PROCEDURE IF EXISTS shiftguard.run_or_permit(text, text, oid[], jsonb);
CREATE OR REPLACE PROCEDURE shiftguard.run_or_permit(p_permission text, p_statement text, p_objects oid[],
                                                    p_options jsonb, p_search_path text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF shiftguard.caller_may(p_permission) AND NOT shiftguard.caller_is_superuser() THEN
        PERFORM shiftguard.permitted(p_permission, p_objects, p_options);
    ELSE
        -- the caller's own statement, with the caller's rights and search_path
        PERFORM shiftguard.caller_execute(p_statement, p_search_path);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION shiftguard.permitted__keyed(p_permission text, p_objects oid[], p_options jsonb, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_object oid;
    v_names  text[] := ARRAY(SELECT jsonb_array_elements_text(p_options->'names'));
    v_list   text;
BEGIN
    IF NOT shiftguard.role_may(v_caller, p_permission) THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM unnest(p_objects) o WHERE shiftguard.protected(
                   CASE WHEN p_permission LIKE 'DROP %' THEN 'routine' ELSE 'table' END, o)) THEN
        RAISE EXCEPTION 'permission denied: system permissions do not reach the catalogs or shiftguard''s schema'
            USING ERRCODE = '42501';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_objects), 0) LOOP
        IF p_objects[i] IS NULL AND NOT coalesce((p_options->>'if_exists')::boolean, false) THEN
            RAISE EXCEPTION '% "%" does not exist',
                CASE WHEN p_permission LIKE 'DROP %' THEN lower(substr(p_permission, 6)) ELSE 'relation' END,
                v_names[i] USING ERRCODE = CASE WHEN p_permission LIKE 'DROP %' THEN '42883' ELSE '42P01' END;
        END IF;
    END LOOP;
    CASE p_permission
    WHEN 'TRUNCATE TABLE' THEN
        IF (p_options->>'cascade')::boolean THEN
            RAISE EXCEPTION 'TRUNCATE ... CASCADE is not Redshift syntax' USING ERRCODE = '0A000';
        END IF;
        -- TRUNCATE reaches the tables' inheritance children (and partitions) too, and fires their
        -- triggers, as this function's owner: theirs count. Locked first (LOCK TABLE takes the
        -- children too), so that none gets a trigger or a child after the look; and by the names
        -- TRUNCATE then reads, each still the table looked at.
        v_list := (SELECT string_agg(o::regclass::text, ', ') FROM unnest(p_objects) o);
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_list);
        IF EXISTS (SELECT FROM unnest(p_objects) o WHERE to_regclass(o::regclass::text) IS DISTINCT FROM o)
           OR EXISTS (WITH RECURSIVE reached (oid) AS (SELECT unnest(p_objects)
                                                       UNION SELECT i.inhrelid FROM pg_inherits i
                                                                JOIN reached r ON i.inhparent = r.oid)
                      SELECT FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM reached) AND NOT tgisinternal
                                               AND tgfoid <> 'shiftguard.note_write()'::regprocedure) THEN  -- shiftguard's own, which notes writes
            RAISE EXCEPTION 'the TRUNCATE TABLE permission does not reach tables with triggers' USING ERRCODE = '0A000';
        END IF;
        EXECUTE format('TRUNCATE %s', v_list);
    WHEN 'ANALYZE' THEN
        IF cardinality(p_objects) = 0 THEN
            ANALYZE;
        ELSE
            FOREACH v_object IN ARRAY p_objects LOOP
                EXECUTE format('ANALYZE %s', v_object::regclass);
            END LOOP;
        END IF;
    WHEN 'DROP FUNCTION', 'DROP PROCEDURE' THEN
        FOR i IN 1 .. cardinality(p_objects) LOOP
            IF p_objects[i] IS NOT NULL THEN
                EXECUTE format('%s %s %s', p_permission, p_objects[i]::regprocedure,
                               CASE WHEN (p_options->>'cascade')::boolean THEN 'CASCADE' ELSE 'RESTRICT' END);
            ELSE
                RAISE NOTICE '% "%" does not exist, skipping', lower(substr(p_permission, 6)), v_names[i];
            END IF;
        END LOOP;
    WHEN 'ALTER DEFAULT PRIVILEGES' THEN
        -- FOR USER another user: PostgreSQL wants membership in the target, so the statement the
        -- proxy printed from its parse tree (signed: nothing else is run) runs here. It names
        -- roles and schemas only, and runs no user code. Targets are Redshift users, never
        -- shiftguard's own roles; schemas are never the protected ones.
        -- The proxy signs the whole spec (users, schemas, statement), so that no part of a
        -- refused call (its text is in pg_stat_activity) can be reused with other parts.
        IF NOT shiftguard.signed('default_privileges', p_options->>'spec', p_options->>'signature') THEN
            RAISE EXCEPTION 'permitted: the statement is not one shiftguard wrote' USING ERRCODE = '42501';
        END IF;
        p_options := (p_options->>'spec')::jsonb;
        IF EXISTS (SELECT FROM jsonb_array_elements_text(p_options->'users') u
                    WHERE NOT EXISTS (SELECT FROM shiftguard_rows.users WHERE name = u)
                       OR u = current_user::text) THEN  -- (the management role, even if it is a user too)
            RAISE EXCEPTION 'permission denied: ALTER DEFAULT PRIVILEGES FOR USER names Redshift users only'
                USING ERRCODE = '42501';
        END IF;
        IF EXISTS (SELECT FROM jsonb_array_elements_text(p_options->'schemas') n
                    WHERE shiftguard.protected('schema', to_regnamespace(quote_ident(n)))) THEN
            RAISE EXCEPTION 'permission denied: system permissions do not reach the catalogs or shiftguard''s schema'
                USING ERRCODE = '42501';
        END IF;
        EXECUTE p_options->>'statement';
    WHEN 'CREATE SCHEMA' THEN
        IF (p_options->>'if_not_exists')::boolean AND to_regnamespace(quote_ident(p_options->>'schema')) IS NOT NULL THEN
            RAISE NOTICE 'schema "%" already exists, skipping', p_options->>'schema';
            RETURN;
        END IF;
        EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', p_options->>'schema', v_caller);
    ELSE
        RAISE EXCEPTION 'permitted: unexpected permission' USING ERRCODE = '22023';
    END CASE;
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.permitted__keyed(text, oid[], jsonb, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is permitted__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.permitted(p_permission text, p_objects oid[], p_options jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.permitted__keyed($1, $2, $3, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.permitted(text, oid[], jsonb) TO PUBLIC;  -- it checks its caller

-- CANCEL pid ['message'] (Redshift's statement): a session's own user, a superuser, or a holder
-- of the CANCEL system permission may cancel the statement it is running. shiftguard's own
-- sessions (its management role's) are not reachable through the permission.
CREATE OR REPLACE PROCEDURE shiftguard.cancel__keyed(p_pid integer, p_message text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_user text := (SELECT usename FROM pg_stat_activity WHERE pid = p_pid AND backend_type = 'client backend');
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'process id % does not exist', p_pid USING ERRCODE = '22023';  -- UNVERIFIED wording
    END IF;
    IF NOT (shiftguard.role_is_superuser(v_caller) OR v_user = v_caller::text
            OR (shiftguard.role_may(v_caller, 'CANCEL') AND EXISTS (SELECT FROM shiftguard_rows.users WHERE name = v_user))) THEN
        RAISE EXCEPTION 'permission denied to cancel process %', p_pid USING ERRCODE = '42501';
    END IF;
    IF p_message IS NOT NULL THEN
        RAISE NOTICE 'cancelling process %: %', p_pid, p_message;
    END IF;
    PERFORM pg_cancel_backend(p_pid);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is cancel__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.cancel(p_pid integer, p_message text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.cancel__keyed($1, $2, shiftguard.caller_key()) $$;

-- The system permissions CREATE TABLE and CREATE OR REPLACE VIEW | FUNCTION | PROCEDURE
-- (reference §3): their holders may create that kind of object in
-- any schema without CREATE on it. The statement still runs as the caller, so PostgreSQL checks
-- everything else (REFERENCES on a foreign key's target, USAGE on types and languages,
-- ownership for OR REPLACE of an existing object, SELECT on a LIKE source); only CREATE on the
-- target schema is lent, to the session's user, for that one statement, inside the caller's
-- transaction, then revoked. If the statement fails, the transaction (or subtransaction) aborts
-- and the grant rolls back with it.
--
-- Why nothing else can use the lent CREATE:
-- - lend_create takes only a statement the proxy signed (policy/privileges.py lend_call), of a
--   kind that matches the permission, and only when its immediate caller is create_lent (below):
--   a user calling it directly, with any signature, gets an error, not a grant that would stay
--   until they revoke it. The caller is read from PG_CONTEXT, whose caller line a user cannot
--   forge: it begins with "PL/pgSQL function <qualified name>", and only shiftguard's schema
--   holds a function printed as shiftguard.create_lent (names that would print otherwise are
--   quoted).
-- - Between the grant and the revoke only the signed statement runs. It executes no query (a
--   view's query is only analysed, a function's body only validated), but analysing it can
--   still run code of the caller's (a domain's CHECK, reached through a composite literal in a
--   DEFAULT): so afterwards everything new in the schema must be of the kind the permission
--   covers (check_lent below), or the statement fails. Forms that run queries are refused under
--   lending: CREATE TABLE ... PARTITION OF (it may scan a default partition). CREATE TABLE AS /
--   SELECT INTO are never wrapped (policy/privileges.py says more): PostgreSQL's own check
--   answers them.
-- - A deferred constraint trigger refuses to commit a transaction that still holds a lent grant.
--
-- Concurrency: a GRANT updates the schema's pg_namespace row, which stays locked until the
-- lending transaction ends; lenders of one schema queue on a lock of the schema's
-- (shiftguard.lock_object) instead of failing with "tuple concurrently updated", and other
-- GRANTs on that schema wait for them.
-- A schema whose ACL was the default (NULL) keeps an explicit ACL equal to it afterwards.
CREATE TABLE IF NOT EXISTS shiftguard_rows.create_lendings (
    xid     xid8 NOT NULL,
    schema  oid  NOT NULL,
    grantee name NOT NULL,
    PRIMARY KEY (xid, schema, grantee)
);
REVOKE ALL ON shiftguard_rows.create_lendings FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.lending_returned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM shiftguard_rows.create_lendings l
                WHERE l.xid = NEW.xid AND l.schema = NEW.schema AND l.grantee = NEW.grantee) THEN
        RAISE EXCEPTION 'CREATE on schema % lent to % for one statement was not returned', NEW.schema::regnamespace,
            NEW.grantee USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'lending_returned'
                      AND tgrelid = 'shiftguard_rows.create_lendings'::regclass) THEN
        CREATE CONSTRAINT TRIGGER lending_returned AFTER INSERT ON shiftguard_rows.create_lendings
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION shiftguard.lending_returned();
    END IF;
END
$$;

-- p_spec (JSON, signed by the proxy as a whole, so its parts cannot be recombined): permission
-- (which the statement's kind needs), schema (as written, or null), refusal (null, or what the
-- statement does that lending does not cover), statement. Returns the schema it lent CREATE on.
CREATE OR REPLACE FUNCTION shiftguard.lend_create(p_spec text, p_signature text, p_path name[]) RETURNS oid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_spec       jsonb;
    v_permission text;
    v_schema     oid;
    v_context    text;
BEGIN
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    -- (E'...': the body is compiled in the caller's session, maybe with standard_conforming_strings off.)
    IF split_part(v_context, E'\n', 2) !~ E'^PL/pgSQL function shiftguard\\.create_lent\\(text,text,text\\) line [0-9]+ at assignment$' THEN
        RAISE EXCEPTION 'permission denied: shiftguard.lend_create is for shiftguard''s own use' USING ERRCODE = '42501';
    END IF;
    IF NOT shiftguard.signed('lend', p_spec, p_signature) THEN
        RAISE EXCEPTION 'permission denied: not a statement shiftguard signed' USING ERRCODE = '42501';
    END IF;
    v_spec := p_spec::jsonb;
    v_permission := v_spec->>'permission';
    IF coalesce(v_permission NOT IN ('CREATE TABLE', 'CREATE OR REPLACE VIEW', 'CREATE OR REPLACE FUNCTION',
                            'CREATE OR REPLACE PROCEDURE'), true) THEN
        RAISE EXCEPTION 'lend_create: unexpected permission' USING ERRCODE = '22023';
    END IF;
    -- The schema PostgreSQL will create in: as written, or the first existing schema of the
    -- caller's search_path (p_path: current_schemas(false), read by create_lent).
    IF v_spec->>'schema' IS NOT NULL THEN
        v_schema := to_regnamespace(quote_ident(v_spec->>'schema'));
    ELSE
        v_schema := (SELECT oid FROM pg_namespace WHERE nspname = p_path[1]);
    END IF;
    IF v_schema IS NULL OR v_schema = pg_my_temp_schema()
            OR has_schema_privilege(session_user, v_schema, 'CREATE')
            OR NOT shiftguard.role_may(session_user, v_permission) THEN  -- (lent to session_user, below)
        RETURN NULL;  -- nothing to lend: PostgreSQL's own rules answer
    END IF;
    IF shiftguard.protected('schema', v_schema) OR starts_with((SELECT nspname FROM pg_namespace WHERE oid = v_schema), 'pg_') THEN
        RAISE EXCEPTION 'permission denied for schema %', (SELECT nspname FROM pg_namespace WHERE oid = v_schema)
            USING ERRCODE = '42501',
                  HINT = 'System permissions do not reach the catalogs or shiftguard''s schema.';
    END IF;
    IF v_spec->>'refusal' IS NOT NULL THEN
        RAISE EXCEPTION 'the % permission does not cover %', v_permission, v_spec->>'refusal'
            USING ERRCODE = '0A000',
                  HINT = format('It would run code while CREATE on schema %s is lent; ask for CREATE on the schema.',
                                (SELECT nspname FROM pg_namespace WHERE oid = v_schema));
    END IF;
    PERFORM shiftguard.lock_object('lend_create', v_schema);
    IF has_schema_privilege(session_user, v_schema, 'CREATE') THEN
        RETURN NULL;  -- granted meanwhile (another lender waited on the lock before us)
    END IF;
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', (SELECT nspname FROM pg_namespace WHERE oid = v_schema),
                   session_user);
    IF NOT has_schema_privilege(session_user, v_schema, 'CREATE') THEN
        -- The management role could not grant it (an external backend where it is neither a
        -- superuser nor the schema's owner).
        RAISE EXCEPTION 'permission denied for schema %', (SELECT nspname FROM pg_namespace WHERE oid = v_schema)
            USING ERRCODE = '42501',
                  HINT = 'shiftguard''s management role cannot grant CREATE on this schema, so the system permission cannot be honoured here.';
    END IF;
    INSERT INTO shiftguard_rows.create_lendings VALUES (pg_current_xact_id(), v_schema, session_user);
    RETURN v_schema;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.lend_create(text, text, name[]) TO PUBLIC;  -- it checks its caller

-- Revoke what lend_create lent in this transaction (nothing if it lent nothing).
CREATE OR REPLACE FUNCTION shiftguard.return_create(p_schema oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_schema IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM shiftguard_rows.create_lendings
     WHERE xid = pg_current_xact_id() AND schema = p_schema AND grantee = session_user;
    IF FOUND THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', (SELECT nspname FROM pg_namespace WHERE oid = p_schema),
                       session_user);
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.return_create(oid) TO PUBLIC;

-- What a schema holds, as 'catalog:oid:xmin:name' (every catalog whose objects live in a
-- schema; with the row's version and the name, so that an object replaced (CREATE OR REPLACE),
-- altered or renamed meanwhile counts as new).
CREATE OR REPLACE FUNCTION shiftguard.schema_objects(p_schema oid) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(o), '{}') FROM (
        SELECT 'pg_class:' || oid || ':' || xmin || ':' || relname FROM pg_class WHERE relnamespace = p_schema
        UNION ALL SELECT 'pg_proc:' || oid || ':' || xmin || ':' || proname FROM pg_proc WHERE pronamespace = p_schema
        UNION ALL SELECT 'pg_type:' || oid || ':' || xmin || ':' || typname FROM pg_type WHERE typnamespace = p_schema
        UNION ALL SELECT 'pg_operator:' || oid || ':' || xmin || ':' || oprname FROM pg_operator WHERE oprnamespace = p_schema
        UNION ALL SELECT 'pg_collation:' || oid || ':' || xmin || ':' || collname FROM pg_collation WHERE collnamespace = p_schema
        UNION ALL SELECT 'pg_conversion:' || oid || ':' || xmin || ':' || conname FROM pg_conversion WHERE connamespace = p_schema
        UNION ALL SELECT 'pg_opclass:' || oid || ':' || xmin || ':' || opcname FROM pg_opclass WHERE opcnamespace = p_schema
        UNION ALL SELECT 'pg_opfamily:' || oid || ':' || xmin || ':' || opfname FROM pg_opfamily WHERE opfnamespace = p_schema
        UNION ALL SELECT 'pg_ts_config:' || oid || ':' || xmin || ':' || cfgname FROM pg_ts_config WHERE cfgnamespace = p_schema
        UNION ALL SELECT 'pg_ts_dict:' || oid || ':' || xmin || ':' || dictname FROM pg_ts_dict WHERE dictnamespace = p_schema
        UNION ALL SELECT 'pg_ts_parser:' || oid || ':' || xmin || ':' || prsname FROM pg_ts_parser WHERE prsnamespace = p_schema
        UNION ALL SELECT 'pg_ts_template:' || oid || ':' || xmin || ':' || tmplname FROM pg_ts_template WHERE tmplnamespace = p_schema
        UNION ALL SELECT 'pg_statistic_ext:' || oid || ':' || xmin || ':' || stxname FROM pg_statistic_ext WHERE stxnamespace = p_schema
    ) AS s (o)
$$;

-- After a statement ran with CREATE lent on a schema: is everything new there of the kind the
-- permission covers? Code of the caller's can run during CREATE TABLE / VIEW / FUNCTION (a
-- domain's CHECK, reached through a composite literal in a DEFAULT or a view's query); whatever
-- it created there with the lent CREATE must be something the permission would allow anyway
-- (more tables for CREATE TABLE, ...), never a function, operator or type planted in another
-- user's schema. A table's or view's own row type (and its array type) belongs to it.
CREATE OR REPLACE FUNCTION shiftguard.check_lent(p_schema oid, p_permission text, p_before text[]) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_new       text[] := ARRAY(SELECT unnest(shiftguard.schema_objects(p_schema)) EXCEPT SELECT unnest(p_before));
    v_relations oid[];
    v_object    text;
    v_oid       oid;
    v_ok        boolean;
BEGIN
    v_relations := ARRAY(SELECT split_part(o, ':', 2)::oid FROM unnest(v_new) o WHERE o LIKE 'pg_class:%');
    FOREACH v_object IN ARRAY v_new LOOP
        v_oid := split_part(v_object, ':', 2)::oid;
        v_ok := CASE split_part(v_object, ':', 1)
            WHEN 'pg_class' THEN (SELECT relkind FROM pg_class WHERE oid = v_oid) = ANY (CASE p_permission
                WHEN 'CREATE TABLE' THEN '{r,p,i,I,S}'::"char"[]  -- tables, their indexes and sequences
                WHEN 'CREATE OR REPLACE VIEW' THEN '{v}'::"char"[] ELSE '{}'::"char"[] END)
            WHEN 'pg_type' THEN EXISTS (SELECT FROM pg_type t WHERE t.oid = v_oid AND (t.typrelid = ANY (v_relations)
                OR EXISTS (SELECT FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid = ANY (v_relations))))
            WHEN 'pg_proc' THEN (SELECT prokind FROM pg_proc WHERE oid = v_oid) = CASE p_permission
                WHEN 'CREATE OR REPLACE FUNCTION' THEN 'f'::"char" WHEN 'CREATE OR REPLACE PROCEDURE' THEN 'p'::"char" END
            ELSE false END;
        IF NOT coalesce(v_ok, false) THEN
            RAISE EXCEPTION 'permission denied for schema %', (SELECT nspname FROM pg_namespace WHERE oid = p_schema)
                USING ERRCODE = '42501',
                      HINT = format('Code that ran during the statement created something the %s permission does not cover.',
                                    p_permission);
        END IF;
    END LOOP;
END
$$;

-- CALL shiftguard.create_lent(spec, signature, current_setting('search_path')): the caller's
-- statement, as the caller, with CREATE lent on its schema if the caller holds the permission and
-- lacks CREATE there. SECURITY INVOKER. Its search_path is pinned while it is compiled and reads
-- its argument (so that PG_CONTEXT names it shiftguard.create_lent); then the caller's own is
-- restored for the statement (until the procedure returns), and every name below is qualified,
-- so no function of the caller's runs between the grant and the revoke but what the statement
-- itself runs, which check_lent answers for.
CREATE OR REPLACE PROCEDURE shiftguard.create_lent(p_spec text, p_signature text, p_search_path text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- (Read before the caller's search_path is set: no operator is looked up after that.)
    v_statement  text := (p_spec::jsonb)->>'statement';
    v_permission text := (p_spec::jsonb)->>'permission';
    v_routine    boolean := (p_spec::jsonb) ? 'routine';
    v_noted      boolean;
    v_schema     oid;
    v_before     text[];
BEGIN
    PERFORM pg_catalog.set_config('search_path', p_search_path, true);
    v_schema := shiftguard.lend_create(p_spec, p_signature, pg_catalog.current_schemas(false));
    IF v_schema IS NOT NULL THEN
        v_before := shiftguard.schema_objects(v_schema);
    END IF;
    EXECUTE v_statement;
    IF v_schema IS NOT NULL THEN
        PERFORM shiftguard.check_lent(v_schema, v_permission, v_before);
    END IF;
    PERFORM shiftguard.return_create(v_schema);
    IF v_routine THEN
        v_noted := shiftguard.note_parameters(p_spec, p_signature, pg_catalog.current_schemas(false));
    END IF;
END
$$;

-- The modifiers a routine's parameters were declared with (numeric(10,5), char(20),
-- varchar(256)), which PostgreSQL drops and Redshift's SHOW PARAMETERS shows (show.sql), by the
-- routine and its argument types as they were (a routine dropped and its OID reused for another
-- signature matches no row). Written only by note_parameters, from what the proxy parsed.
CREATE TABLE IF NOT EXISTS shiftguard_rows.routine_parameters (
    routine   oid PRIMARY KEY,
    signature oid[] NOT NULL,
    modifiers jsonb NOT NULL
);
REVOKE ALL ON shiftguard_rows.routine_parameters FROM PUBLIC;
-- What pg_proc shows anyone, and the modifiers: for SHOW PARAMETERS, which runs as its caller
-- (no user may look into schema shiftguard_rows).
CREATE OR REPLACE FUNCTION shiftguard.routine_modifiers(p_routine oid, p_signature oid[]) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT modifiers FROM shiftguard_rows.routine_parameters WHERE routine = p_routine AND signature = p_signature
$$;
GRANT EXECUTE ON FUNCTION shiftguard.routine_modifiers(oid, oid[]) TO PUBLIC;

-- After a CREATE [OR REPLACE] FUNCTION | PROCEDURE that create_lent ran: keep (or, without any,
-- forget) its parameters' modifiers. The routine is the one of that name the statement just
-- made or replaced in the schema it went to (written in this transaction, its parameter count
-- the statement's), owned by the caller; anything else is left alone.
DROP FUNCTION IF EXISTS shiftguard.note_parameters(text, text, name[]);  -- (it returned void)
CREATE OR REPLACE FUNCTION shiftguard.note_parameters(p_spec text, p_signature text, p_path name[]) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_spec    jsonb;
    v_schema  oid;
    v_routine pg_proc;
    v_context text;
BEGIN
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    IF split_part(v_context, E'\n', 2) !~ E'^PL/pgSQL function shiftguard\\.create_lent\\(text,text,text\\) line [0-9]+ at assignment$' THEN
        RAISE EXCEPTION 'permission denied: shiftguard.note_parameters is for shiftguard''s own use' USING ERRCODE = '42501';
    END IF;
    IF NOT shiftguard.signed('lend', p_spec, p_signature) THEN
        RAISE EXCEPTION 'permission denied: not a statement shiftguard signed' USING ERRCODE = '42501';
    END IF;
    v_spec := p_spec::jsonb;
    IF v_spec->>'schema' IS NOT NULL THEN
        v_schema := to_regnamespace(quote_ident(v_spec->>'schema'));
    ELSE
        v_schema := (SELECT oid FROM pg_namespace WHERE nspname = p_path[1]);
    END IF;
    DELETE FROM shiftguard_rows.routine_parameters r WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = r.routine);
    IF (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = v_schema AND p.proname = v_spec->>'routine'
                                         AND age(p.xmin) = 0) <> 1 THEN
        RETURN false;  -- not one routine for certain (several of the name made in this transaction)
    END IF;
    SELECT p.* INTO v_routine FROM pg_proc p
     WHERE p.pronamespace = v_schema AND p.proname = v_spec->>'routine' AND age(p.xmin) = 0
       AND pg_has_role(session_user, p.proowner, 'USAGE');
    IF NOT FOUND THEN
        RETURN false;
    ELSIF jsonb_typeof(v_spec->'modifiers') IS DISTINCT FROM 'array'
            OR jsonb_array_length(v_spec->'modifiers') <> coalesce(cardinality(v_routine.proallargtypes), v_routine.pronargs) THEN
        DELETE FROM shiftguard_rows.routine_parameters WHERE routine = v_routine.oid;
        RETURN false;
    END IF;
    INSERT INTO shiftguard_rows.routine_parameters
    VALUES (v_routine.oid, coalesce(v_routine.proallargtypes, v_routine.proargtypes::oid[]), v_spec->'modifiers')
    ON CONFLICT (routine) DO UPDATE SET signature = excluded.signature, modifiers = excluded.modifiers;
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.note_parameters(text, text, name[]) TO PUBLIC;  -- it checks its caller

-- VACUUM (Redshift's, any mode: policy/privileges.py vacuum_call). Who may: superusers, the
-- table's owner, holders of the VACUUM system permission (sys:operator); others get Redshift's
-- error where PostgreSQL 15 would only warn "skipping". VACUUM cannot run in a procedure or a
-- transaction block, so an accepted request is queued here and run by the proxy's management
-- connection (server.py, LISTEN shiftguard_vacuum), as PostgreSQL's plain VACUUM, shortly after
-- the statement returns VACUUM: a deviation from Redshift, where VACUUM returns when done. Users
-- cannot write the queue; a NOTIFY of theirs only makes the proxy read it. Like VACUUM, the
-- request is refused inside a transaction block: shiftguard.vacuum commits, which PostgreSQL
-- allows a procedure only at the top level (the error is reworded, policy/errors.py).
CREATE TABLE IF NOT EXISTS shiftguard_rows.vacuum_requests (
    id           bigserial PRIMARY KEY,
    relation     oid,          -- NULL: the whole database (superusers and holders of VACUUM)
    requested_by name NOT NULL,
    requested    timestamptz NOT NULL DEFAULT now()
);
-- One queue for the cluster (catalog/store.py CLUSTER_TABLES): other databases' requests name
-- theirs. Only the cluster database's NOTIFY reaches the proxy; theirs wait for its next look.
ALTER TABLE shiftguard_rows.vacuum_requests ADD COLUMN IF NOT EXISTS database name NOT NULL DEFAULT current_database();
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'shiftguard_rows.vacuum_requests'::regclass) = 'r'
       AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'fill_id'
                          AND tgrelid = 'shiftguard_rows.vacuum_requests'::regclass) THEN
        CREATE TRIGGER fill_id BEFORE INSERT ON shiftguard_rows.vacuum_requests
            FOR EACH ROW EXECUTE FUNCTION shiftguard.fill_log_id();  -- only where missing (schema.sql)
    END IF;
END
$$;
REVOKE ALL ON shiftguard_rows.vacuum_requests FROM PUBLIC;

-- No SET search_path here (a procedure with one cannot COMMIT): the one name is qualified and
-- takes exactly the argument types given.
CREATE OR REPLACE PROCEDURE shiftguard.vacuum(p_relation oid, p_name text)
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    PERFORM shiftguard.vacuum_request(p_relation, p_name);
    COMMIT;  -- fails inside a transaction block, where VACUUM may not run
END
$$;

-- Is a VACUUM of this relation of this database (NULL: the whole database) queued and not yet
-- taken? Then another request adds nothing: a loop of a user's (CALL in a DO block, each
-- committing) queued millions, which the proxy then ran one by one.
CREATE OR REPLACE FUNCTION shiftguard.vacuum_queued(p_relation oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM shiftguard_rows.vacuum_requests
                    WHERE database = current_database() AND relation IS NOT DISTINCT FROM p_relation)
$$;
REVOKE ALL ON FUNCTION shiftguard.vacuum_queued(oid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.vacuum_request__keyed(p_relation oid, p_name text, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_class pg_class;
BEGIN
    IF p_name IS NOT NULL THEN
        SELECT * INTO v_class FROM pg_class WHERE oid = p_relation;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'relation "%" does not exist', p_name USING ERRCODE = '42P01';
        END IF;
        IF NOT (shiftguard.role_is_superuser(v_caller) OR pg_has_role(v_caller, v_class.relowner, 'USAGE')
                OR (shiftguard.role_may(v_caller, 'VACUUM') AND NOT shiftguard.protected('table', p_relation))) THEN
            -- UNVERIFIED wording (Redshift's usual one for relations).
            RAISE EXCEPTION 'permission denied for relation %', v_class.relname USING ERRCODE = '42501';
        END IF;
        IF v_class.relkind NOT IN ('r', 'm', 'p', 't') THEN
            RAISE EXCEPTION '"%" is not a table', p_name USING ERRCODE = '42809';  -- UNVERIFIED wording
        END IF;
        INSERT INTO shiftguard_rows.vacuum_requests (relation, requested_by) SELECT p_relation, v_caller
         WHERE NOT shiftguard.vacuum_queued(p_relation);
    ELSIF shiftguard.role_may(v_caller, 'VACUUM') THEN
        INSERT INTO shiftguard_rows.vacuum_requests (relation, requested_by) SELECT NULL, v_caller
         WHERE NOT shiftguard.vacuum_queued(NULL);
    ELSE
        -- Everyone else: the tables they own (PostgreSQL's VACUUM without a name, for them).
        INSERT INTO shiftguard_rows.vacuum_requests (relation, requested_by)
        SELECT c.oid, v_caller FROM pg_class c
         WHERE c.relkind IN ('r', 'm', 'p') AND pg_has_role(v_caller, c.relowner, 'USAGE')
           AND NOT shiftguard.protected('table', c.oid) AND NOT starts_with(c.relnamespace::regnamespace::text, 'pg_')
           AND NOT shiftguard.vacuum_queued(c.oid);
    END IF;
    PERFORM pg_notify('shiftguard_vacuum', '');
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is vacuum_request__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.vacuum_request(p_relation oid, p_name text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.vacuum_request__keyed($1, $2, shiftguard.caller_key()) $$;
