-- Dynamic data masking in Redshift's model (reference §6). Run after rls.sql.
--
-- A masking policy is a list of expressions over the columns it declares: one SQL function
-- shiftguard."mask:<policy>:<n>"(col, ...) per expression, a SQL-standard RETURN body that
-- PostgreSQL inlines (names resolved at creation). A table with attachments gets a view
-- shiftguard."mask:<table oid>" owned by the NOLOGIN role shiftguard_mask: every column of the
-- table, each masked column written as
--     CASE (SELECT shiftguard.mask_choice(<table>, <column>))   -- once per statement
--         WHEN '<policy>:<n>' THEN shiftguard."mask:<policy>:<n>"(<input columns>) ... ELSE <column> END
-- so the highest-priority attachment reaching the querying user (by key: caller_key) wins, for that
-- statement, and WHERE, JOIN, GROUP BY and ORDER BY see the masked value. The proxy rewrites
-- the user's statements to read masked tables through these views (policy/masking.py).
--
-- Fail closed: the table's row-security policy for Redshift users (members of shiftguard_users)
-- raises 42501 for a user whom an attachment reaches (shiftguard.mask_guard), so a read the
-- rewrite missed (a function or DO body, a view made earlier, COPY t TO STDOUT, a stale proxy)
-- fails instead of showing raw values. The view reads the table as shiftguard_mask, whose own
-- policy carries only row-level security, which it evaluates for the querying user: RLS
-- applies before masking. The view checks the querying user's SELECT on the table (the view's
-- owner is not the user).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_mask') THEN
        CREATE ROLE shiftguard_mask NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_users') THEN
        CREATE ROLE shiftguard_users NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'shiftguard_mask', 'MEMBER') THEN
        GRANT shiftguard_mask TO CURRENT_USER;  -- to own its views
    END IF;
END
$$;

-- Every Redshift user is a member of shiftguard_users (create_user adds new ones).
DO $$
DECLARE
    v_user text;
BEGIN
    FOR v_user IN SELECT u.name FROM shiftguard_rows.users u JOIN pg_roles r ON r.rolname = u.name
                   WHERE NOT pg_has_role(r.oid, 'shiftguard_users', 'MEMBER') LOOP
        EXECUTE format('GRANT shiftguard_users TO %I', v_user);
    END LOOP;
END
$$;

CREATE TABLE IF NOT EXISTS shiftguard_rows.masking_policies (
    name          text PRIMARY KEY,
    columns       jsonb NOT NULL,   -- [{"colname": "a", "type": "integer"}, ...]
    expressions   jsonb NOT NULL,   -- as written, one per output
    modified_by   text NOT NULL,
    modified_time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.masking_attachments (
    policy       text NOT NULL REFERENCES shiftguard_rows.masking_policies (name),
    relation     oid NOT NULL,
    out_columns  text[] NOT NULL,
    in_columns   text[] NOT NULL,
    grantee      text NOT NULL,            -- '' for PUBLIC
    grantee_kind text NOT NULL CHECK (grantee_kind IN ('user', 'role', 'public')),
    priority     integer NOT NULL DEFAULT 0,
    grantor      text NOT NULL,
    PRIMARY KEY (policy, relation, out_columns, grantee_kind, grantee)
);
REVOKE ALL ON shiftguard_rows.masking_policies, shiftguard_rows.masking_attachments FROM PUBLIC;

-- Does an attachment on the relation reach the session's user? Superusers are not masked
-- (UNVERIFIED: Redshift does not document it; they read every table anyway).
CREATE OR REPLACE FUNCTION shiftguard.mask_reaches__keyed(p_relation oid, p_column text, p_key text) RETURNS SETOF shiftguard_rows.masking_attachments
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.* FROM shiftguard_rows.masking_attachments a
     WHERE a.relation = p_relation AND (p_column IS NULL OR p_column = ANY (a.out_columns))
       AND NOT coalesce((SELECT u.superuser FROM shiftguard_rows.users u WHERE u.name = shiftguard.key_owner(p_key)::text), false)
       AND (a.grantee_kind = 'public'
            OR (a.grantee_kind = 'user' AND a.grantee = shiftguard.key_owner(p_key)::text)
            OR (a.grantee_kind = 'role' AND EXISTS (SELECT FROM pg_roles r WHERE r.rolname = a.grantee
                                                       AND pg_has_role(shiftguard.key_owner(p_key), r.oid, 'USAGE'))))
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_reaches__keyed(oid, text, text) FROM PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is mask_reaches__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.mask_reaches(p_relation oid, p_column text) RETURNS SETOF shiftguard_rows.masking_attachments
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT * FROM shiftguard.mask_reaches__keyed($1, $2, shiftguard.caller_key()) $$;
REVOKE ALL ON FUNCTION shiftguard.mask_reaches(oid, text) FROM PUBLIC;

-- Which '<policy>:<n>' masks the column for the session's user: the highest priority wins.
CREATE OR REPLACE FUNCTION shiftguard.mask_choice__keyed(p_relation oid, p_column text, p_key text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    RETURN (SELECT a.policy || ':' || array_position(a.out_columns, p_column)
              FROM shiftguard.mask_reaches__keyed(p_relation, p_column, p_key => p_key) a ORDER BY a.priority DESC LIMIT 1);
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.mask_choice__keyed(oid, text, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is mask_choice__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.mask_choice(p_relation oid, p_column text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.mask_choice__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.mask_choice(oid, text) TO PUBLIC;

-- Reading the table directly: refused to a user an attachment reaches.
CREATE OR REPLACE FUNCTION shiftguard.mask_guard__keyed(p_relation oid, p_key text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF EXISTS (SELECT FROM shiftguard.mask_reaches__keyed(p_relation, NULL, p_key => p_key)) THEN
        RAISE EXCEPTION 'permission denied for relation %', (SELECT relname FROM pg_class WHERE oid = p_relation)
            USING ERRCODE = '42501',
                  HINT = 'Columns of this table are masked for you; shiftguard reads them through a masking '
                         'view when a statement names the table. Function bodies, views made earlier, DML and '
                         'COPY ... TO do not.';
    END IF;
    RETURN true;
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.mask_guard__keyed(oid, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is mask_guard__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.mask_guard(p_relation oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.mask_guard__keyed($1, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.mask_guard(oid) TO PUBLIC;

-- The view's privilege check, for the querying user (the view's owner is not the user): SELECT
-- on the table. Column-level grants alone do not reach a masked table (a deviation: the view
-- passes unmasked columns through as they are, so that their indexes serve the query).
DROP FUNCTION IF EXISTS shiftguard.mask_may_read(oid, text);
CREATE OR REPLACE FUNCTION shiftguard.mask_may_read(p_relation oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT has_table_privilege(current_user, p_relation, 'SELECT') THEN  -- (INVOKER: the reader)
        RAISE EXCEPTION 'permission denied for relation %', (SELECT relname FROM pg_class WHERE oid = p_relation)
            USING ERRCODE = '42501',
                  HINT = CASE WHEN has_any_column_privilege(current_user, p_relation, 'SELECT')
                              THEN 'A table with masked columns is read with SELECT on the whole table.'
                              ELSE '' END;
    END IF;
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.mask_may_read(oid) TO PUBLIC;

-- The masked tables, for the proxy's rewrite: schema, name, view.
CREATE OR REPLACE FUNCTION shiftguard.masked_tables(OUT schema_name text, OUT table_name text, OUT view_name text)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT n.nspname::text, c.relname::text, 'mask:' || c.oid
      FROM shiftguard_rows.masking_attachments a JOIN pg_class c ON c.oid = a.relation
      JOIN pg_namespace n ON n.oid = c.relnamespace
$$;
REVOKE ALL ON FUNCTION shiftguard.masked_tables() FROM PUBLIC;

-- Make the relation's masking view (and row security, through rls_sync) say what the
-- attachments say.
CREATE OR REPLACE FUNCTION shiftguard.mask_sync(p_relation oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_view    text := format('shiftguard.%I', 'mask:' || p_relation);
    v_columns text[] := '{}';
    v_column  record;
    v_cases   text;
BEGIN
    PERFORM shiftguard.mask_bump();
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = p_relation) THEN
        RETURN;
    END IF;
    PERFORM shiftguard.rls_sync(p_relation);
    IF NOT EXISTS (SELECT FROM shiftguard_rows.masking_attachments WHERE relation = p_relation)
            AND to_regclass(v_view) IS NULL THEN
        RETURN;
    END IF;
    -- Replaced, never dropped: views users made over it keep working (with no attachment left
    -- it passes the values through, and the proxy reads the table directly again).
    FOR v_column IN SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
                      FROM pg_attribute a WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
                     ORDER BY a.attnum LOOP
        SELECT string_agg(format('WHEN %L THEN (shiftguard.%I(%s))::%s', x.policy || ':' || x.n,
                                 'mask:' || x.policy || ':' || x.n,
                                 (SELECT string_agg(format('t.%I', i), ', ') FROM unnest(x.in_columns) i),
                                 v_column.type), ' ')
          INTO v_cases
          FROM (SELECT DISTINCT a.policy, array_position(a.out_columns, v_column.name) AS n, a.in_columns
                  FROM shiftguard_rows.masking_attachments a
                 WHERE a.relation = p_relation AND v_column.name = ANY (a.out_columns)) x;
        v_columns := v_columns || CASE
            WHEN v_cases IS NULL THEN format('t.%I', v_column.name)
            ELSE format('CASE (SELECT shiftguard.mask_choice(%s, %L)) %s ELSE t.%I END AS %I',
                        p_relation, v_column.name, v_cases, v_column.name, v_column.name) END;
    END LOOP;
    EXECUTE format('CREATE OR REPLACE VIEW %s AS SELECT %s FROM %s AS t WHERE (SELECT shiftguard.mask_may_read(%s))',
                   v_view, array_to_string(v_columns, ', '), p_relation::regclass, p_relation);
    EXECUTE format('ALTER VIEW %s OWNER TO shiftguard_mask', v_view);
    EXECUTE format('GRANT SELECT ON %s TO shiftguard_mask', p_relation::regclass);
    EXECUTE format('GRANT SELECT ON %s TO PUBLIC', v_view);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_sync(oid) FROM PUBLIC;

-- After an ALTER TABLE of a masked table (event trigger, run as its owner): the view again.
CREATE OR REPLACE FUNCTION shiftguard.mask_refit(p_relation oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lost text;
BEGIN
    SELECT c INTO v_lost FROM shiftguard_rows.masking_attachments a, unnest(a.out_columns || a.in_columns) c
     WHERE a.relation = p_relation
       AND NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = p_relation AND attnum > 0 AND NOT attisdropped
                         AND attname = c) LIMIT 1;
    IF v_lost IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" has a masking policy attached; detach it before renaming or dropping the column',
            v_lost USING ERRCODE = '2BP01';
    END IF;
    IF shiftguard.masked(p_relation) THEN
        PERFORM shiftguard.mask_sync(p_relation);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_refit(oid) FROM PUBLIC;
-- The event trigger's, after its owner's ALTER TABLE: only the table's owner (or a superuser)
-- may have it rebuilt (anyone could, and held every reader of a masked table up so).
CREATE OR REPLACE FUNCTION shiftguard.mask_refresh__keyed(p_relation oid, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT (shiftguard.role_is_superuser(v_caller)
            OR pg_has_role(v_caller, (SELECT relowner FROM pg_class WHERE oid = p_relation), 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of table %', p_relation::regclass USING ERRCODE = '42501';
    END IF;
    PERFORM shiftguard.mask_refit(p_relation);
END
$$;
CREATE OR REPLACE FUNCTION shiftguard.mask_refresh(p_relation oid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.mask_refresh__keyed($1, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.mask_refresh(oid) TO PUBLIC;

-- Masked columns keep no statistics. The planner's estimates (the row counts of an EXPLAIN run
-- in a DO block, out of the proxy's sight, which plans the table itself) come from the most
-- common values and histogram of a column, and would show its raw values and their frequencies
-- to users it is masked for. So a masked column's statistics target is 0 (ANALYZE skips it) and
-- its rows in pg_statistic go; so do those of the index expressions and extended statistics
-- reading it, and an index whose expressions or predicate read it cannot be made (its size
-- counts the raw values its predicate matches). guard_masked_statistics keeps it so. With the
-- last attachment on a column gone, the targets return to the default (-1).

-- The attribute numbers of the relation's masked columns.
CREATE OR REPLACE FUNCTION shiftguard.masked_attnums(p_relation oid) RETURNS int2[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(a.attnum), '{}') FROM pg_attribute a
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname::text IN (SELECT unnest(m.out_columns) FROM shiftguard_rows.masking_attachments m
                                WHERE m.relation = p_relation)
$$;
REVOKE ALL ON FUNCTION shiftguard.masked_attnums(oid) FROM PUBLIC;

-- Does a stored expression (an index's expressions or predicate, a statistics object's
-- expressions: pg_node_tree, whose Vars are of the one table) read one of the columns? A
-- whole-row reference (varattno 0) reads them all. Constants are printed as bytes, so no text in
-- the tree can pose as a Var.
CREATE OR REPLACE FUNCTION shiftguard.expression_reads(p_expression pg_node_tree, p_attnums int2[]) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_expression IS NOT NULL AND EXISTS (
        SELECT FROM regexp_matches(p_expression::text, ':varattno (-?[0-9]+) ', 'g') AS v (m)
         WHERE v.m[1]::int2 = 0 OR v.m[1]::int2 = ANY (p_attnums))
$$;
REVOKE ALL ON FUNCTION shiftguard.expression_reads(pg_node_tree, int2[]) FROM PUBLIC;

-- A statistics target change, made by the management role; where it is not a superuser it may
-- not own the table: then what it cannot change stays (docs/row-level-security-and-masking.md).
CREATE OR REPLACE FUNCTION shiftguard.mask_statistics_target(p_statement text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE p_statement;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'statistics of a masked column not changed: %', SQLERRM;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_statistics_target(text) FROM PUBLIC;

-- After attaching or detaching on p_columns: their statistics, and those of the index
-- expressions and statistics objects reading them, as the attachments now say.
CREATE OR REPLACE FUNCTION shiftguard.mask_statistics(p_relation oid, p_columns text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
    v_masked    int2[] := shiftguard.masked_attnums(p_relation);
    v_touched   int2[] := ARRAY(SELECT attnum FROM pg_attribute WHERE attrelid = p_relation AND attnum > 0
                                   AND NOT attisdropped AND attname::text = ANY (p_columns));
    v_object    record;
BEGIN
    FOR v_object IN SELECT * FROM (
                    SELECT format('ALTER TABLE %s ALTER COLUMN %I', p_relation::regclass, attname) AS target,
                           CASE WHEN attnum = ANY (v_masked) THEN 0 ELSE -1 END AS value,
                           coalesce(attstattarget, -1) AS now  -- NULL: the default (PostgreSQL 17)
                      FROM pg_attribute WHERE attrelid = p_relation AND attnum = ANY (v_touched)
                    UNION ALL
                    SELECT format('ALTER INDEX %s ALTER COLUMN %s', i.indexrelid::regclass, a.attnum),
                           CASE WHEN shiftguard.expression_reads(i.indexprs, v_masked) THEN 0 ELSE -1 END,
                           coalesce(a.attstattarget, -1)
                      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indexrelid
                     WHERE i.indrelid = p_relation AND shiftguard.expression_reads(i.indexprs, v_touched)
                       AND a.attnum <= i.indnkeyatts AND i.indkey[a.attnum - 1] = 0  -- its expression columns
                    UNION ALL
                    SELECT format('ALTER STATISTICS %I.%I', n.nspname, x.stxname),
                           CASE WHEN x.stxkeys::int2[] && v_masked OR shiftguard.expression_reads(x.stxexprs, v_masked)
                                THEN 0 ELSE -1 END,
                           coalesce(x.stxstattarget, -1)
                      FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace
                     WHERE x.stxrelid = p_relation
                       AND (x.stxkeys::int2[] && v_touched OR shiftguard.expression_reads(x.stxexprs, v_touched))
                    ) AS t WHERE t.now <> t.value LOOP
        PERFORM shiftguard.mask_statistics_target(format('%s SET STATISTICS %s', v_object.target, v_object.value));
    END LOOP;
    IF v_superuser THEN  -- what ANALYZE gathered before
        DELETE FROM pg_statistic WHERE starelid = p_relation AND staattnum = ANY (v_masked);
        DELETE FROM pg_statistic WHERE starelid IN (SELECT indexrelid FROM pg_index WHERE indrelid = p_relation
                                                       AND shiftguard.expression_reads(indexprs, v_masked));
        DELETE FROM pg_statistic_ext_data WHERE stxoid IN (
            SELECT oid FROM pg_statistic_ext WHERE stxrelid = p_relation
               AND (stxkeys::int2[] && v_masked OR shiftguard.expression_reads(stxexprs, v_masked)));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_statistics(oid, text[]) FROM PUBLIC;

-- Why a command's object breaks the rule above (NULL: it does not): a masked column, or an
-- index expression or statistics object reading one, given a statistics target; an index whose
-- expressions or predicate, or a statistics object, made to read one.
CREATE OR REPLACE FUNCTION shiftguard.mask_statistics_refusal(p_classid oid, p_objid oid, p_tag text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relation oid;
    v_masked   int2[];
    v_name     text;
BEGIN
    IF p_classid = 'pg_class'::regclass THEN
        v_relation := coalesce((SELECT indrelid FROM pg_index WHERE indexrelid = p_objid), p_objid);
    ELSIF p_classid = 'pg_statistic_ext'::regclass THEN
        v_relation := (SELECT stxrelid FROM pg_statistic_ext WHERE oid = p_objid);
    END IF;
    IF v_relation IS NULL OR NOT shiftguard.masked(v_relation) THEN
        RETURN NULL;
    END IF;
    v_masked := shiftguard.masked_attnums(v_relation);
    IF p_tag = 'CREATE INDEX' AND EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = p_objid
                                           AND (shiftguard.expression_reads(i.indexprs, v_masked)
                                                OR shiftguard.expression_reads(i.indpred, v_masked))) THEN
        RETURN format('an index whose expressions or predicate read a masked column of "%s" cannot be made',
                      (SELECT relname FROM pg_class WHERE oid = v_relation));
    END IF;
    IF p_tag = 'CREATE STATISTICS' AND EXISTS (SELECT FROM pg_statistic_ext x WHERE x.oid = p_objid
                                                AND (x.stxkeys::int2[] && v_masked
                                                     OR shiftguard.expression_reads(x.stxexprs, v_masked))) THEN
        RETURN format('statistics objects cannot read a masked column of "%s"',
                      (SELECT relname FROM pg_class WHERE oid = v_relation));
    END IF;
    SELECT a.attname INTO v_name FROM pg_attribute a
     WHERE a.attrelid = v_relation AND a.attnum = ANY (v_masked) AND coalesce(a.attstattarget, -1) <> 0 LIMIT 1;
    IF FOUND THEN
        RETURN format('the masked column "%s" of "%s" keeps no statistics', v_name,
                      (SELECT relname FROM pg_class WHERE oid = v_relation));
    END IF;
    SELECT (SELECT relname FROM pg_class WHERE oid = i.indexrelid) INTO v_name
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indexrelid
     WHERE i.indrelid = v_relation AND shiftguard.expression_reads(i.indexprs, v_masked)
       AND a.attnum <= i.indnkeyatts AND i.indkey[a.attnum - 1] = 0 AND coalesce(a.attstattarget, -1) <> 0 LIMIT 1;
    IF FOUND THEN
        RETURN format('the index "%s" reads a masked column of "%s" and keeps no statistics', v_name,
                      (SELECT relname FROM pg_class WHERE oid = v_relation));
    END IF;
    SELECT x.stxname INTO v_name FROM pg_statistic_ext x
     WHERE x.stxrelid = v_relation AND coalesce(x.stxstattarget, -1) <> 0
       AND (x.stxkeys::int2[] && v_masked OR shiftguard.expression_reads(x.stxexprs, v_masked)) LIMIT 1;
    IF FOUND THEN
        RETURN format('the statistics object "%s" reads a masked column of "%s" and keeps no statistics', v_name,
                      (SELECT relname FROM pg_class WHERE oid = v_relation));
    END IF;
    RETURN NULL;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.mask_statistics_refusal(oid, oid, text) TO PUBLIC;

-- Runs as whoever ran the command (not SECURITY DEFINER), also inside DO blocks and functions.
CREATE OR REPLACE FUNCTION shiftguard.guard_masked_statistics() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
    v_refusal text;
BEGIN
    IF current_user::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard') THEN
        RETURN;  -- mask_statistics, setting the targets one by one
    END IF;
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        v_refusal := shiftguard.mask_statistics_refusal(v_command.classid, v_command.objid, v_command.command_tag);
        IF v_refusal IS NOT NULL THEN
            RAISE EXCEPTION '%', v_refusal
                USING ERRCODE = '0A000',
                      DETAIL = 'Statistics of a masked column (most common values, histogram, the sizes of '
                               'partial indexes) would show its raw values through the planner''s estimates.',
                      HINT = 'Detach the masking policies from the column first.';
        END IF;
    END LOOP;
END
$$;

SELECT shiftguard.ensure_event_trigger('shiftguard_guard_masked_statistics', 'ddl_command_end',
                                       ARRAY['ALTER TABLE', 'CREATE INDEX', 'ALTER INDEX', 'CREATE STATISTICS',
                                             'ALTER STATISTICS'],
                                       'shiftguard.guard_masked_statistics');

-- Superusers and sys:secadmin manage masking policies.
DROP PROCEDURE IF EXISTS shiftguard.create_masking_policy(text, text, text);
CREATE OR REPLACE PROCEDURE shiftguard.create_masking_policy__keyed(p_text text, p_signature text, p_search_path text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_policy    jsonb;
    v_path      text := 'pg_catalog, ' || p_search_path || ', pg_temp';  -- the creator's, for the expressions
    v_column    jsonb;
    v_type      regtype;
    v_params    text[] := '{}';
    v_types     text[] := '{}';
    v_first     regtype;
    v_n         integer := 0;
    v_expr      text;
    v_function  text;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    IF NOT shiftguard.signed('masking', p_text, p_signature) THEN
        RAISE EXCEPTION 'permission denied: masking policies are created with CREATE MASKING POLICY'
            USING ERRCODE = '42501';
    END IF;
    v_policy := p_text::jsonb;
    IF EXISTS (SELECT FROM shiftguard_rows.masking_policies WHERE name = v_policy->>'name') THEN
        IF (v_policy->>'if_not_exists')::boolean AND NOT (v_policy->>'altering')::boolean THEN
            RAISE NOTICE 'masking policy "%" already exists, skipping', v_policy->>'name';
            RETURN;
        ELSIF NOT (v_policy->>'altering')::boolean THEN
            RAISE EXCEPTION 'masking policy "%" already exists', v_policy->>'name' USING ERRCODE = '42710';
        END IF;
        v_policy := v_policy || jsonb_build_object(
            'columns', (SELECT columns FROM shiftguard_rows.masking_policies WHERE name = v_policy->>'name'));
        IF jsonb_array_length(v_policy->'expressions') <> (SELECT jsonb_array_length(expressions)
                FROM shiftguard_rows.masking_policies WHERE name = v_policy->>'name') THEN
            RAISE EXCEPTION 'ALTER MASKING POLICY must keep the number of masking expressions' USING ERRCODE = '42P17';
        END IF;
        UPDATE shiftguard_rows.masking_policies
           SET expressions = v_policy->'written', modified_by = v_caller, modified_time = now() AT TIME ZONE 'utc'
         WHERE name = v_policy->>'name';
    ELSIF (v_policy->>'altering')::boolean THEN
        RAISE EXCEPTION 'masking policy "%" does not exist', v_policy->>'name' USING ERRCODE = '42704';
    ELSE
        INSERT INTO shiftguard_rows.masking_policies (name, columns, expressions, modified_by)
        VALUES (v_policy->>'name', v_policy->'columns', v_policy->'written', v_caller);
    END IF;
    -- As for RLS policies (rls_define): only the expressions are parsed with the creator's
    -- search_path (pg_catalog first, pg_temp last), the types are built-in ones, and what the
    -- expressions bind to must be trusted.
    FOR v_column IN SELECT jsonb_array_elements(v_policy->'columns') LOOP
        v_type := to_regtype(v_column->>'type');
        IF v_type IS NULL THEN
            RAISE EXCEPTION 'type "%" does not exist', v_column->>'type' USING ERRCODE = '42704';
        END IF;
        v_params := v_params || format('%I %s', v_column->>'colname', v_type);
        v_types := v_types || v_type::text;
    END LOOP;
    -- One inlinable function per expression; its value is cast to the masked column's type in
    -- the view. Its type is found by parsing it into a temporary view over typed NULLs: parsed,
    -- never run here.
    FOR v_expr IN SELECT jsonb_array_elements_text(v_policy->'expressions') LOOP
        v_n := v_n + 1;
        v_function := format('shiftguard.%I', 'mask:' || (v_policy->>'name') || ':' || v_n);
        PERFORM shiftguard.caller_execute(format(
            'CREATE TEMP VIEW shiftguard_masking_type AS SELECT (%s) AS v FROM (SELECT %s) AS s', v_expr,
            (SELECT coalesce(string_agg(format('NULL::%s AS %I', to_regtype(c->>'type'), c->>'colname'), ', '),
                             '1 AS "?column?"')
               FROM jsonb_array_elements(v_policy->'columns') c)), v_path);
        v_first := (SELECT a.atttypid::regtype FROM pg_attribute a
                     WHERE a.attrelid = 'pg_temp.shiftguard_masking_type'::regclass AND a.attname = 'v');
        DROP VIEW pg_temp.shiftguard_masking_type;
        IF v_first = 'unknown'::regtype THEN
            v_first := 'text'::regtype;
        END IF;
        PERFORM shiftguard.caller_execute(format(
            'CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s LANGUAGE sql STABLE RETURN (%s)',
            v_function, array_to_string(v_params, ', '), v_first, v_expr), v_path);
        PERFORM shiftguard.require_trusted_body(
            format('%s(%s)', v_function, array_to_string(v_types, ', '))::regprocedure,
            format('masking policy "%s"', v_policy->>'name'));
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s(%s) TO PUBLIC', v_function, array_to_string(v_params, ', '));
    END LOOP;
    PERFORM shiftguard.mask_bump();
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_masking_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_masking_policy(p_text text, p_signature text, p_search_path text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_masking_policy__keyed($1, $2, $3, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_masking_policy__keyed(p_name text, p_missing_ok boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_function regprocedure;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    IF NOT EXISTS (SELECT FROM shiftguard_rows.masking_policies WHERE name = p_name) THEN
        IF p_missing_ok THEN
            RAISE NOTICE 'masking policy "%" does not exist, skipping', p_name;
            RETURN;
        END IF;
        RAISE EXCEPTION 'masking policy "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    DELETE FROM shiftguard_rows.masking_attachments a WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = a.relation);
    IF EXISTS (SELECT FROM shiftguard_rows.masking_attachments WHERE policy = p_name) THEN
        -- UNVERIFIED wording.
        RAISE EXCEPTION 'cannot drop masking policy "%" because it is attached to a relation', p_name
            USING ERRCODE = '2BP01', HINT = 'Detach it first.';
    END IF;
    DELETE FROM shiftguard_rows.masking_policies WHERE name = p_name;
    -- (No backslash in a literal here: the body is read with the session's standard_conforming_strings.)
    FOR v_function IN SELECT p.oid::regprocedure FROM pg_proc p
                       WHERE p.pronamespace = 'shiftguard'::regnamespace
                         AND left(p.proname, length('mask:' || p_name || ':')) = 'mask:' || p_name || ':'
                         AND substr(p.proname, length('mask:' || p_name || ':') + 1) ~ '^[0-9]+$' LOOP
        EXECUTE format('DROP FUNCTION %s', v_function);
    END LOOP;
    PERFORM shiftguard.mask_bump();
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_masking_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_masking_policy(p_name text, p_missing_ok boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_masking_policy__keyed($1, $2, shiftguard.caller_key()) $$;

-- ATTACH MASKING POLICY p ON t (out) [USING (in)] TO grantee [PRIORITY n] / DETACH ... FROM.
CREATE OR REPLACE PROCEDURE shiftguard.attach_masking_policy__keyed(p_spec jsonb, p_relation oid, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_policy  shiftguard_rows.masking_policies;
    v_out     text[] := ARRAY(SELECT jsonb_array_elements_text(p_spec->'out_columns'));
    v_in      text[] := ARRAY(SELECT jsonb_array_elements_text(p_spec->'in_columns'));
    v_kind    text := p_spec->>'grantee_kind';
    v_grantee text := coalesce(p_spec->>'grantee', '');
    v_missing text;
    v_clash   text;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    SELECT * INTO v_policy FROM shiftguard_rows.masking_policies WHERE name = p_spec->>'policy';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'masking policy "%" does not exist', p_spec->>'policy' USING ERRCODE = '42704';
    END IF;
    PERFORM shiftguard.rls_target(p_relation);
    IF (p_spec->>'attach')::boolean THEN
        PERFORM shiftguard.require_no_inheritance(p_relation, 'masking');
        PERFORM shiftguard.require_no_row_code(p_relation, 'masking');  -- catalog/row_code.sql
    END IF;
    IF NOT (p_spec->>'attach')::boolean THEN
        DELETE FROM shiftguard_rows.masking_attachments
         WHERE policy = v_policy.name AND relation = p_relation AND out_columns = v_out
           AND grantee_kind = v_kind AND grantee = v_grantee;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'masking policy "%" is not attached to %(%) for %', v_policy.name, p_relation::regclass,
                array_to_string(v_out, ', '), CASE v_kind WHEN 'public' THEN 'PUBLIC' ELSE v_grantee END
                USING ERRCODE = '42704';
        END IF;
        PERFORM shiftguard.mask_sync(p_relation);
        PERFORM shiftguard.mask_statistics(p_relation, v_out);
        RETURN;
    END IF;
    IF cardinality(v_in) = 0 THEN
        v_in := v_out;  -- without USING, the inputs are the output columns
    END IF;
    IF cardinality(v_in) <> jsonb_array_length(v_policy.columns) THEN
        RAISE EXCEPTION 'masking policy "%" takes % input column(s), not %', v_policy.name,
            jsonb_array_length(v_policy.columns), cardinality(v_in) USING ERRCODE = '42P17';
    END IF;
    IF cardinality(v_out) <> jsonb_array_length(v_policy.expressions) THEN
        RAISE EXCEPTION 'masking policy "%" has % masking expression(s) for % output column(s)', v_policy.name,
            jsonb_array_length(v_policy.expressions), cardinality(v_out) USING ERRCODE = '42P17';
    END IF;
    SELECT c INTO v_missing FROM unnest(v_out || v_in) c
     WHERE NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = p_relation AND attnum > 0 AND NOT attisdropped
                         AND attname = c) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', v_missing, p_relation::regclass
            USING ERRCODE = '42703';
    END IF;
    IF v_kind = 'user' THEN
        PERFORM shiftguard.require_user(v_grantee);
    ELSIF v_kind = 'role' THEN
        PERFORM shiftguard.require_role(v_grantee);
    END IF;
    -- Two attachments on one column cannot share a priority, nor one grantee a column (reference §6).
    SELECT o INTO v_clash FROM shiftguard_rows.masking_attachments a, unnest(a.out_columns) o
     WHERE a.relation = p_relation AND o = ANY (v_out)
       AND (a.priority = coalesce((p_spec->>'priority')::integer, 0)
            OR (a.grantee_kind = v_kind AND a.grantee = v_grantee)) LIMIT 1;
    IF v_clash IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of relation "%" already has a masking policy attached with that priority or for that grantee',
            v_clash, p_relation::regclass USING ERRCODE = '42710';
    END IF;
    INSERT INTO shiftguard_rows.masking_attachments
           (policy, relation, out_columns, in_columns, grantee, grantee_kind, priority, grantor)
    VALUES (v_policy.name, p_relation, v_out, v_in, v_grantee, v_kind,
            coalesce((p_spec->>'priority')::integer, 0), v_caller);
    PERFORM shiftguard.mask_sync(p_relation);
    PERFORM shiftguard.mask_statistics(p_relation, v_out);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is attach_masking_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.attach_masking_policy(p_spec jsonb, p_relation oid)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.attach_masking_policy__keyed($1, $2, shiftguard.caller_key()) $$;

-- Tables masked before masked columns kept no statistics.
SELECT shiftguard.mask_statistics(a.relation, array_agg(DISTINCT c))
  FROM shiftguard_rows.masking_attachments a CROSS JOIN unnest(a.out_columns) c
 WHERE EXISTS (SELECT FROM pg_attribute WHERE attrelid = a.relation AND attname = c
                 AND coalesce(attstattarget, -1) <> 0)
 GROUP BY a.relation;

CREATE OR REPLACE VIEW shiftguard.svv_masking_policy WITH (security_barrier) AS
    SELECT current_database()::text AS policy_database, name AS policy_name,
           (SELECT '[' || coalesce(string_agg(format('{"colname":%s,"type":%s}', to_json(c->>'colname'),
                                                    to_json(c->>'type')), ',' ORDER BY n), '') || ']'
              FROM jsonb_array_elements(columns) WITH ORDINALITY AS x (c, n)) AS input_columns,
           (SELECT '[' || string_agg(to_json(e)::text, ',' ORDER BY n) || ']'
              FROM jsonb_array_elements_text(expressions) WITH ORDINALITY AS x (e, n)) AS policy_expression,
           modified_by AS policy_modified_by, modified_time AS policy_modified_time
      FROM shiftguard_rows.masking_policies WHERE shiftguard.sees_rls();

CREATE OR REPLACE VIEW shiftguard.svv_attached_masking_policy WITH (security_barrier) AS
    SELECT a.policy AS policy_name, n.nspname::text AS schema_name, c.relname::text AS table_name,
           CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS table_type, a.grantor,
           CASE a.grantee_kind WHEN 'public' THEN 'public' ELSE a.grantee END AS grantee,
           CASE a.grantee_kind WHEN 'role' THEN 'role' WHEN 'public' THEN 'public' ELSE 'user' END AS grantee_type,
           a.priority, array_to_json(a.in_columns)::text AS input_columns,
           array_to_json(a.out_columns)::text AS output_columns, false AS is_masking_datashare_on
      FROM shiftguard_rows.masking_attachments a JOIN pg_class c ON c.oid = a.relation
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE shiftguard.sees_rls();

GRANT SELECT ON shiftguard.svv_masking_policy, shiftguard.svv_attached_masking_policy TO PUBLIC;

-- Upgrade (run by the proxy after the catalog's SQL, store.py _upgrade_masking_functions): an
-- older version wrote the querying user of a masking expression as session_user, which an
-- admin's ANALYZE running a user's index expression makes the admin. The proxy prints such a
-- function's expression again with current_user (parsed by PostgreSQL's parser, from its body
-- as PostgreSQL prints it with only pg_catalog on the path, so other names come qualified;
-- NULL when it could not); it replaces the body only where
-- the new one binds to the same objects and to nothing untrusted, else the function is left
-- executable by nobody (reading the masked columns fails until ALTER MASKING POLICY).
CREATE OR REPLACE FUNCTION shiftguard.mask_stale_functions(OUT function regprocedure, OUT body text)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT p.oid::regprocedure, pg_get_function_sqlbody(p.oid) FROM pg_proc p
     WHERE p.pronamespace = 'shiftguard'::regnamespace AND p.proname LIKE 'mask:%' AND p.prokind = 'f'
       AND pg_get_function_sqlbody(p.oid) LIKE '%SESSION_USER%'
     ORDER BY p.oid
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_stale_functions() FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.mask_reread(p_function regprocedure, p_expression text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on AS $$
DECLARE
    v_bound text := 'SELECT array_agg(DISTINCT format(''%s %s %s'', refclassid, refobjid, refobjsubid)) FROM pg_depend '
                    'WHERE classid = ''pg_proc''::regclass AND objid = $1 AND refclassid <> ''pg_namespace''::regclass';
    v_before text[];
    v_after  text[];
BEGIN
    EXECUTE v_bound INTO v_before USING p_function;
    BEGIN
        IF p_expression IS NULL THEN
            RAISE EXCEPTION 'its body could not be read again';
        END IF;
        EXECUTE format('CREATE OR REPLACE FUNCTION shiftguard.%I(%s) RETURNS %s LANGUAGE sql STABLE RETURN (%s)',
                       (SELECT proname FROM pg_proc WHERE oid = p_function), pg_get_function_arguments(p_function),
                       pg_get_function_result(p_function), p_expression);
        EXECUTE v_bound INTO v_after USING p_function;
        IF v_after IS DISTINCT FROM v_before THEN
            RAISE EXCEPTION 'its expression read again binds to other objects';
        END IF;
        PERFORM shiftguard.require_trusted_body(p_function, format('masking function %s', p_function));
    EXCEPTION WHEN OTHERS THEN
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', p_function);
        RAISE WARNING 'masking function % could not be carried over from an older version of shiftguard (%): reading '
                      'the columns it masks fails (permission denied) until ALTER MASKING POLICY gives its '
                      'expressions again', p_function, SQLERRM;
    END;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_reread(regprocedure, text) FROM PUBLIC;
