-- What code of a user's may run as someone else.
--
-- PostgreSQL runs a function with the rights of whoever calls it (SECURITY INVOKER), and calls
-- the functions of a view as whoever reads it, of a default, CHECK constraint, index expression,
-- rule or policy as whoever writes or reads the table, of a trigger as whoever fires it. A user's
-- PL/pgSQL function in a view an admin reads (a PostgreSQL superuser on the embedded backend)
-- could make its owner a superuser; a built-in such as lo_export or set_config in the default of
-- a table an admin writes could write the server's files or the admin's settings. Redshift allows
-- none of it: its SQL UDFs are one expression without FROM, Python UDFs reach no database,
-- PL/pgSQL runs only in stored procedures (reached by CALL, never from a view or a table), and it
-- has no triggers or rules. So for users (every role but the trusted ones, schema.sql
-- trusted_role):
-- - a function is a SQL function whose body is RETURN expression (PostgreSQL binds its names
--   when it is made; the proxy turns Redshift's AS $$ SELECT expression $$ into it,
--   policy/dialect.py), with no SET clause, reading no table and calling only functions that may
--   run for anyone (runs_for_anyone); PL/pgSQL and the rest only in CREATE PROCEDURE (or in the
--   session's own pg_temp, which nothing of the user's may call);
-- - what a user's table, view, index, domain, type, aggregate or rule calls may run for anyone;
-- - no triggers or rules (Redshift has none), no extensions.
-- An event trigger refuses the rest at the end of the command, from DO blocks and function
-- bodies too; objects made before are logged at start (users_code_made_before).

-- Built-in (and trusted roles') functions that read or act as their caller though PostgreSQL
-- calls them stable: they read a whole table, schema or database with the caller's rights.
CREATE OR REPLACE FUNCTION shiftguard.acts_as_caller(p_name name) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_name IN ('table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
                      'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
                      'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
                      'pg_stat_get_backend_activity', 'pg_stat_get_activity',
                      -- tablefunc's, which run the query text they are given
                      'crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby',
                      -- shiftguard's Redshift functions that answer for their caller
                      'pg_get_late_binding_view_cols', 'redshift_show')
$$;
GRANT EXECUTE ON FUNCTION shiftguard.acts_as_caller(name) TO PUBLIC;

-- Is p_function one that shiftguard made for a user's late-binding view (schema.sql
-- late_binding_function, pending_late_binding_function), or its _rows twin? Recorded in
-- late_binding_views, which no user writes; made by the management role where this guard is in
-- force (make_late_binding_function), and its owner may not change it (guard_users_code).
CREATE OR REPLACE FUNCTION shiftguard.late_binding_view_function(p_function oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM shiftguard_rows.late_binding_views l JOIN pg_proc f ON f.oid = l.function_id
                     JOIN pg_proc p ON p.oid = p_function
                    WHERE l.function_id = p_function
                       OR (p.pronamespace = f.pronamespace AND p.proname = f.proname || '_rows'))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.late_binding_view_function(oid) TO PUBLIC;  -- it tells only what a function is

-- May p_function run with the rights of whoever calls it, whoever made the code that calls it?
-- - a user's: a SQL function with a RETURN body (refused otherwise when made, guard_users_code),
--   an aggregate (its functions checked when it was made), or a late-binding view's;
-- - shiftguard's own, in its schemas: never from users' code (they act for their caller);
-- - PostgreSQL's built-ins: immutable or stable and not one of acts_as_caller's, or one of the
--   volatile ones that only make a value (nextval only in a column default: users_code_refusal);
-- - everyone else's: immutable or stable, not acts_as_caller's, and compiled (an extension's C)
--   or one of shiftguard's Redshift functions in pg_catalog.
CREATE OR REPLACE FUNCTION shiftguard.runs_for_anyone(p_function oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((
        SELECT CASE
            WHEN NOT shiftguard.trusted_role(p.proowner) THEN
                p.pronamespace <> pg_my_temp_schema()  -- (only this session names its temporary ones)
                AND ((p.prokind = 'f' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')
                      AND p.prosqlbody IS NOT NULL)
                     OR p.prokind = 'a' OR shiftguard.late_binding_view_function(p.oid))
            WHEN p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('shiftguard', 'shiftguard_rows'))
                THEN false
            -- PostgreSQL's own (made by initdb): as volatility and acts_as_caller tell
            WHEN p.oid < 16384 THEN
                (p.provolatile IN ('i', 's') AND NOT shiftguard.acts_as_caller(p.proname))
                OR p.proname IN ('random', 'gen_random_uuid', 'clock_timestamp', 'timeofday')
            -- else only what is compiled (an extension's C) or shiftguard's Redshift functions
            -- (pg_catalog, the management role's, no extension's): an extension's SQL or PL/pgSQL
            -- declared stable may still run SQL it is given or call volatile code (PostGIS's
            -- st_findextent, AddGeometryColumn), and so may an admin's
            ELSE p.provolatile IN ('i', 's') AND NOT shiftguard.acts_as_caller(p.proname)
                 AND (p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('c', 'internal'))
                      OR (p.pronamespace = 'pg_catalog'::regnamespace
                          AND p.proowner = (SELECT nspowner FROM pg_namespace WHERE nspname = 'shiftguard')
                          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                             AND d.objid = p.oid AND d.deptype = 'e')))
        END
        FROM pg_proc p WHERE p.oid = p_function), false)
$$;
GRANT EXECUTE ON FUNCTION shiftguard.runs_for_anyone(oid) TO PUBLIC;  -- it tells only what a function is

-- The functions an expression as PostgreSQL stores it (nodeToString: pg_attrdef.adbin,
-- pg_proc.prosqlbody, ...) calls: every FuncExpr, OpExpr (and its kin), Aggref and WindowFunc
-- field that names one. pg_depend cannot tell: it records no reference to a built-in (pinned)
-- object. Sound for refusing: the fields are written " :funcid 123" and the like, and a name or
-- alias a user wrote is written with every space backslashed (outfuncs.c outToken), so every
-- call is found and no text of a user's can make one up (at worst it adds one, refused).
CREATE OR REPLACE FUNCTION shiftguard.called_functions(p_tree text) RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT m[2]::oid FROM regexp_matches(coalesce(p_tree, ''),
        ' :(funcid|opfuncid|hashfuncid|negfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
     WHERE m[2]::oid <> 0
    UNION
    SELECT o.oprcode FROM regexp_matches(coalesce(p_tree, ''), ' :opno ([0-9]+)', 'g') m
      JOIN pg_operator o ON o.oid = m[1]::oid
$$;
GRANT EXECUTE ON FUNCTION shiftguard.called_functions(text) TO PUBLIC;

-- The expressions PostgreSQL stores for the object (p_classid, p_objid), as node trees, and the
-- functions it names directly (an aggregate's, a range type's). Not a table's row security
-- policies: only shiftguard makes them (rls.sql guard_row_security refuses everyone else's), and
-- they call shiftguard's own functions.
CREATE OR REPLACE FUNCTION shiftguard.stored_calls(p_classid oid, p_objid oid) RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.called_functions(t) FROM (
        SELECT adbin::text FROM pg_attrdef WHERE p_classid = 'pg_attrdef'::regclass AND oid = p_objid
        UNION ALL SELECT conbin::text FROM pg_constraint WHERE p_classid = 'pg_constraint'::regclass AND oid = p_objid
        UNION ALL SELECT indexprs::text || ' ' || coalesce(indpred::text, '') FROM pg_index
                   WHERE p_classid = 'pg_class'::regclass AND indexrelid = p_objid
        UNION ALL SELECT partexprs::text FROM pg_partitioned_table
                   WHERE p_classid = 'pg_class'::regclass AND partrelid = p_objid
        UNION ALL SELECT ev_action::text || ' ' || coalesce(ev_qual::text, '') FROM pg_rewrite
                   WHERE p_classid = 'pg_rewrite'::regclass AND oid = p_objid
                     -- a materialized view's query runs only as its owner (REFRESH runs it so)
                     AND (SELECT relkind FROM pg_class WHERE oid = ev_class) <> 'm'
        UNION ALL SELECT stxexprs::text FROM pg_statistic_ext WHERE p_classid = 'pg_statistic_ext'::regclass
                                                               AND oid = p_objid
        UNION ALL SELECT typdefaultbin::text FROM pg_type WHERE p_classid = 'pg_type'::regclass AND oid = p_objid
        -- a function's body, and its parameters' defaults (evaluated in the query of whoever calls it)
        UNION ALL SELECT coalesce(prosqlbody::text, '') || ' ' || coalesce(proargdefaults::text, '') FROM pg_proc
                   WHERE p_classid = 'pg_proc'::regclass AND oid = p_objid
    ) x(t)
    UNION
    SELECT f::oid FROM pg_aggregate a, unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                                                     a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn,
                                                     a.aggmfinalfn]) f
     WHERE p_classid = 'pg_proc'::regclass AND a.aggfnoid = p_objid AND f::oid <> 0
    UNION
    SELECT f::oid FROM pg_range r, unnest(ARRAY[r.rngcanonical, r.rngsubdiff]) f
     WHERE p_classid = 'pg_type'::regclass AND r.rngtypid = p_objid AND f::oid <> 0
$$;
GRANT EXECUTE ON FUNCTION shiftguard.stored_calls(oid, oid) TO PUBLIC;

-- Why the object (p_classid, p_objid) of a user's may not be, or NULL: the first function that
-- it or its parts (defaults, constraints, indexes, rules, statistics, a view's query,
-- a domain's checks, an aggregate's or range type's functions) call and that may not run for
-- anyone; for a user's function, also a body that is not RETURN expression or reads a table.
CREATE OR REPLACE FUNCTION shiftguard.users_code_refusal(p_classid oid, p_objid oid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_proc pg_proc;
    v_name text;
BEGIN
    IF p_classid = 'pg_trigger'::regclass THEN
        RETURN 'triggers are not supported (a trigger''s function runs with the rights of whoever writes the table)';
    END IF;
    IF p_classid = 'pg_proc'::regclass THEN
        SELECT * INTO v_proc FROM pg_proc WHERE oid = p_objid;
        IF NOT FOUND OR v_proc.prokind = 'p' OR v_proc.pronamespace = pg_my_temp_schema() THEN
            -- procedures run only where CALL names them; a temporary function only where this
            -- session names it (nothing else may call it: runs_for_anyone)
            RETURN NULL;
        END IF;
        v_name := pg_describe_object(p_classid, p_objid, 0);
        IF v_proc.prokind = 'f' AND (v_proc.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'sql')
                                     OR v_proc.prosqlbody IS NULL) THEN
            RETURN format('%s is not a SQL function of one expression (a function runs with the rights of whoever '
                          'calls it; give it a RETURN expression body, or make it a stored procedure)', v_name);
        END IF;
        -- pg_get_function_sqlbody prints a RETURN body as RETURN ..., a BEGIN ATOMIC one as such
        IF v_proc.prokind = 'f' AND pg_get_function_sqlbody(p_objid) NOT LIKE 'RETURN %' THEN
            RETURN format('%s has a BEGIN ATOMIC body: a function is one expression (RETURN expression)', v_name);
        END IF;
        -- (a RETURN body is bound when made; a SET search_path would reach the functions it calls
        -- that look names up when they run, into any schema, another session's pg_temp_N too)
        IF v_proc.proconfig IS NOT NULL THEN
            RETURN format('%s sets a parameter: a function of one expression has no SET clause', v_name);
        END IF;
        -- a table in its query (as called_functions reads the tree; pg_depend misses the catalogs)
        IF v_proc.prosqlbody::text ~ ' :relid [0-9]' THEN
            RETURN format('%s reads a table or view: a function is one expression without FROM, as Amazon '
                          'Redshift''s SQL UDFs are', v_name);
        END IF;
    END IF;
    RETURN (
        WITH parts AS (
            SELECT p_classid AS classid, p_objid AS objid
            UNION
            SELECT d.classid, d.objid FROM pg_depend d
             WHERE d.refclassid = p_classid AND d.refobjid = p_objid AND d.deptype IN ('a', 'i'))
        SELECT format('%s calls %s, which may not run with the rights of whoever uses it',
                      pg_describe_object(parts.classid, parts.objid, 0), f::regprocedure)
          FROM parts, shiftguard.stored_calls(parts.classid, parts.objid) f
         WHERE NOT shiftguard.runs_for_anyone(f)
           -- a column's default may take a sequence's next value (serial); elsewhere (a view) the
           -- values it takes could write down what its reader sees
           AND NOT (parts.classid = 'pg_attrdef'::regclass AND f = 'pg_catalog.nextval(regclass)'::regprocedure)
         ORDER BY parts.classid, parts.objid, f LIMIT 1);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.users_code_refusal(oid, oid) TO PUBLIC;  -- it tells only what an object calls

CREATE OR REPLACE FUNCTION shiftguard.guard_users_code() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
    v_refusal text;
BEGIN
    IF shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
        RETURN;
    END IF;
    IF tg_tag IN ('CREATE EXTENSION', 'ALTER EXTENSION') THEN
        -- a trusted extension's script runs as the bootstrap superuser: its functions would be
        -- trusted ones (tablefunc's crosstab runs the query text it is given)
        RAISE EXCEPTION '% is not supported', tg_tag USING ERRCODE = '0A000',
            HINT = 'Amazon Redshift has no extensions; an admin may install one.';
    END IF;
    IF tg_tag = 'CREATE RULE' THEN
        -- a rule's actions run in the query of whoever writes the table: reading what that
        -- writer sees (their RLS rows, pg_stat_activity as an admin sees it) into the owner's
        -- tables, with no function called
        RAISE EXCEPTION 'rules are not supported' USING ERRCODE = '0A000',
            DETAIL = 'A rule''s actions run in the query of whoever writes the table.',
            HINT = 'Amazon Redshift has no rules.';
    END IF;
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        v_refusal := shiftguard.users_code_refusal(v_command.classid, v_command.objid);
        IF v_refusal IS NOT NULL THEN
            RAISE EXCEPTION '%', v_refusal USING ERRCODE = '0A000',
                DETAIL = 'Code of a user''s runs with the rights of whoever reads or writes what calls it.',
                HINT = 'As on Amazon Redshift: SQL functions of one expression without FROM, PL/pgSQL in stored '
                       'procedures, no triggers.';
        END IF;
    END LOOP;
END
$$;

SELECT shiftguard.ensure_event_trigger('shiftguard_guard_users_code', 'ddl_command_end',
    ARRAY['CREATE FUNCTION', 'ALTER FUNCTION', 'ALTER ROUTINE', 'CREATE AGGREGATE', 'ALTER AGGREGATE',
          'CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW', 'ALTER VIEW',
          'CREATE MATERIALIZED VIEW', 'CREATE INDEX', 'CREATE RULE', 'CREATE TRIGGER', 'CREATE DOMAIN',
          'ALTER DOMAIN', 'CREATE TYPE', 'ALTER TYPE', 'CREATE STATISTICS', 'CREATE FOREIGN TABLE',
          'ALTER FOREIGN TABLE', 'IMPORT FOREIGN SCHEMA', 'CREATE EXTENSION', 'ALTER EXTENSION',
          'CREATE SCHEMA'],  -- (CREATE SCHEMA ... CREATE TABLE / VIEW / INDEX / TRIGGER: its parts)
    'shiftguard.guard_users_code');

-- What the rules above would refuse but exists already (made before shiftguard refused it, or on
-- a backend without event triggers): the proxy logs it at start (store.py _warn_refused), for an
-- admin to drop. Users' functions, aggregates, relations and types, and triggers that run a
-- user's function (shiftguard's own, shiftguard_writes, run trusted code).
CREATE OR REPLACE FUNCTION shiftguard.users_code_made_before() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r FROM (
        SELECT shiftguard.users_code_refusal('pg_proc'::regclass, p.oid) FROM pg_proc p
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace AND NOT shiftguard.trusted_role(p.proowner)
           AND NOT shiftguard.late_binding_view_function(p.oid)
        UNION ALL
        SELECT shiftguard.users_code_refusal('pg_class'::regclass, c.oid) FROM pg_class c
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relnamespace <> 'pg_catalog'::regnamespace
           AND NOT shiftguard.trusted_role(c.relowner)
        UNION ALL
        SELECT shiftguard.users_code_refusal('pg_type'::regclass, t.oid) FROM pg_type t
         WHERE t.typtype IN ('d', 'r') AND NOT shiftguard.trusted_role(t.typowner)
        UNION ALL
        SELECT format('%s (owner %s)', pg_describe_object('pg_trigger'::regclass, t.oid, 0), c.relowner::regrole)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc f ON f.oid = t.tgfoid
         WHERE NOT t.tgisinternal AND NOT shiftguard.trusted_role(f.proowner)
    ) x(r) WHERE r IS NOT NULL
$$;
REVOKE ALL ON FUNCTION shiftguard.users_code_made_before() FROM PUBLIC;
