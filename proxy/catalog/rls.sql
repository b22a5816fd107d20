-- Row-level security in Redshift's model (reference §5), enforced by PostgreSQL's own row
-- security. Run after schema.sql, in the same bootstrap transaction.
--
-- A Redshift RLS policy is a predicate over the columns it declares. Here it is a SQL function
-- "rls:<policy>"(col, ...). A predicate that reads no table is an invoker function
-- shiftguard."rls:<policy>" that PostgreSQL inlines into the query, where current_user is the
-- querying user (code of a table's owner run by an admin's ANALYZE: the owner; session_user
-- would be the admin, so the proxy writes every spelling of the user as current_user). One that
-- reads lookup tables runs as another role, so it takes the querying user as its first
-- parameter ("rls:<policy>"(reader, col, ...), the proxy writes the user as $1), which the
-- table's policy gives it as current_user (see rls@<oid> below). One that reads lookup tables
-- (which the users cannot read; Redshift grants them to the policy) must run with the rights of
-- the NOLOGIN role shiftguard_rls, which is granted SELECT on them; but a function that
-- evaluates the predicate on values its caller chooses is an oracle: SELECT g FROM
-- generate_series(1, 10000) g WHERE shiftguard."rls:p"(g) would list what the lookup table lets
-- through (older versions had exactly that). So the predicate is never evaluated on a caller's
-- values:
--   * shiftguard_rows."rls:<policy>"(reader, col, ...) RETURNS SETOF boolean is an invoker function owned
--     by shiftguard_rls that nobody else may execute; PostgreSQL inlines it into
--   * shiftguard_rows."rls@<table oid>"(tid, reader), one SECURITY DEFINER function
--     (shiftguard_rls) per table with such policies attached: it reads the table's row at that
--     ctid and returns true when the attached policies that read tables let it through for the
--     reader (NULL otherwise: a hidden row and no row look alike). The table's policy calls it
--     with current_user, the querying user where the policy is evaluated. Every user may execute
--     it (PostgreSQL checks EXECUTE on a policy's functions as the querying user), but no user
--     may look into schema shiftguard_rows, so only the table's policy calls it: no user's
--     query, view or function can name what is in there (so none can name another reader).
--     Were it called anyway, it would read only the table's rows, never a caller's values, and
--     tell whether the reader sees the row (with one such policy attached: whether its
--     predicate lets the row through; see rls_bind). It reads the row through the view
--     shiftguard."rls@<oid>:rows", owned by shiftguard_rls_rows, for which the table has a second
--     policy, shiftguard_rls_rows, USING (true) (else the table's policy would call the function
--     again); the lookup tables are still read as shiftguard_rls, through their own row
--     security, if any.
--
-- A table with RLS ON has one PostgreSQL policy, shiftguard_rls, FOR ALL TO PUBLIC
-- with WITH CHECK (true) (INSERT and COPY are not filtered), forced for the owner:
--   exempt OR <the attached policies that apply to the querying user, joined by AND or OR>
-- where "applies" and "exempt" are uncorrelated subqueries (computed once per statement), so
-- attachments and grants take effect for the next statement, in every session. No applicable
-- policy: no rows (Redshift's default deny). PostgreSQL checks policies for every access path
-- (views, functions, CTEs, COPY TO, prepared statements) without the proxy seeing them. The
-- policies that read lookup tables are one term of it (rls_sync), true for a row when
--   ctid = '(4294967295,0)'    a row not written yet: PostgreSQL checks the new row of an UPDATE
--                              and of INSERT ... RETURNING against USING too; these predicates
--                              pass it (evaluated on values the user chose, they would be the
--                              oracle again; Redshift does not filter what UPDATE writes)
--   OR "rls@<oid>"(ctid, current_user)   the row as the statement's snapshot sees it
--   OR age(xmin) <= (SELECT shiftguard.rls_horizon()) AND "rls@<oid>:latest"(ctid, current_user)
--                              a row version newer than that snapshot: READ COMMITTED's recheck
--                              of a row updated concurrently (EvalPlanQual), the existing row of
--                              INSERT ... ON CONFLICT; read with a snapshot of its own.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_rls') THEN
        CREATE ROLE shiftguard_rls NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'shiftguard_rls', 'MEMBER') THEN
        GRANT shiftguard_rls TO CURRENT_USER;  -- a non-superuser must be a member to own its functions
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_rls_rows') THEN
        CREATE ROLE shiftguard_rls_rows NOLOGIN;  -- owns the views rls@<oid>:rows, nothing else
    END IF;
    IF NOT pg_has_role(current_user, 'shiftguard_rls_rows', 'MEMBER') THEN
        GRANT shiftguard_rls_rows TO CURRENT_USER;
    END IF;
END
$$;
-- The functions of the policies that read lookup tables and of the tables they are attached to
-- (see above) are in schema shiftguard_rows (schema.sql), which nobody else may look into: the
-- tables' policies call them by their oid (PostgreSQL asks for USAGE on a schema only when a
-- name is looked up), and nobody can write a call of their own.

CREATE TABLE IF NOT EXISTS shiftguard_rows.rls_policies (
    name          text PRIMARY KEY,
    alias         text,
    columns       jsonb NOT NULL DEFAULT '[]',   -- [{"colname": "a", "type": "integer"}, ...]
    predicate     text NOT NULL,                 -- as written (polqual)
    lookups       jsonb NOT NULL DEFAULT '[]',   -- tables the predicate reads
    modified_by   text NOT NULL,
    modified_time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.rls_relations (
    relation    oid PRIMARY KEY,
    enabled     boolean NOT NULL DEFAULT false,
    conjunction text NOT NULL DEFAULT 'and' CHECK (conjunction IN ('and', 'or'))
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.rls_attachments (
    policy       text NOT NULL REFERENCES shiftguard_rows.rls_policies (name),
    relation     oid NOT NULL,
    grantee      text NOT NULL,                 -- '' for PUBLIC
    grantee_kind text NOT NULL CHECK (grantee_kind IN ('user', 'role', 'public')),
    grantor      text NOT NULL,
    PRIMARY KEY (policy, relation, grantee_kind, grantee)
);
REVOKE ALL ON shiftguard_rows.rls_policies, shiftguard_rows.rls_relations, shiftguard_rows.rls_attachments FROM PUBLIC;

-- Superusers and sys:secadmin manage policies; table owners do not (reference §5).
CREATE OR REPLACE FUNCTION shiftguard.require_rls_admin__keyed(p_key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT (shiftguard.role_is_superuser(v_caller) OR pg_has_role(v_caller, 'sys:secadmin', 'USAGE')) THEN
        -- UNVERIFIED wording: Redshift documents who may, not the error.
        RAISE EXCEPTION 'permission denied: only a superuser or sys:secadmin can manage RLS policies'
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is require_rls_admin__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.require_rls_admin() RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.require_rls_admin__keyed(shiftguard.caller_key()) $$;

-- Exempt from RLS: superusers and whoever holds IGNORE RLS (sys:secadmin does by default).
-- These two run once per statement (as uncorrelated subqueries of the table's policy), as
-- PL/pgSQL so that their plans are cached per session.
CREATE OR REPLACE FUNCTION shiftguard.rls_exempt__keyed(p_key text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    RETURN v_caller::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard')
        OR EXISTS (SELECT FROM shiftguard_rows.users u WHERE u.name = v_caller::text AND u.superuser)
        OR EXISTS (SELECT FROM shiftguard_rows.system_privileges sp JOIN pg_roles r ON r.rolname = sp.role
                    WHERE sp.privilege = 'IGNORE RLS' AND pg_has_role(v_caller, r.oid, 'USAGE'));
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.rls_exempt__keyed(text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is rls_exempt__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.rls_exempt() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.rls_exempt__keyed(shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_exempt() TO PUBLIC;

-- Does policy p, attached to the relation, reach the querying user (directly, through a role
-- they hold, or through PUBLIC)?
CREATE OR REPLACE FUNCTION shiftguard.rls_applies__keyed(p_policy text, p_relation oid, p_key text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    RETURN EXISTS (
        SELECT FROM shiftguard_rows.rls_attachments a
         WHERE a.policy = p_policy AND a.relation = p_relation
           AND (a.grantee_kind = 'public'
                OR (a.grantee_kind = 'user' AND a.grantee = v_caller::text)
                OR (a.grantee_kind = 'role' AND EXISTS (
                        SELECT FROM pg_roles r WHERE r.rolname = a.grantee
                           AND pg_has_role(v_caller, r.oid, 'USAGE')))));
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.rls_applies__keyed(text, oid, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is rls_applies__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.rls_applies(p_policy text, p_relation oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.rls_applies__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_applies(text, oid) TO PUBLIC;

-- Does the policy read tables (its function is the set-returning form, see the header)?
CREATE OR REPLACE FUNCTION shiftguard.rls_reads_tables(p_policy text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_proc WHERE pronamespace = 'shiftguard_rows'::regnamespace
                     AND proname = 'rls:' || p_policy AND proretset)
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_reads_tables(text) FROM PUBLIC;

-- The age (as age(xid) counts) of the oldest transaction the statement's snapshot may not see:
-- a row whose xmin is no older may be a version that snapshot does not see (see the header).
-- Once per statement, as an uncorrelated subquery of the table's policy.
CREATE OR REPLACE FUNCTION shiftguard.rls_horizon() RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT age(((pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::text)::xid)
$$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_horizon() TO PUBLIC;

-- The table's functions rls@<oid> and rls@<oid>:latest no longer read it: their view goes, and
-- they return NULL (no row passes). With p_drop (the table has no policy reading lookup tables
-- any more, or is being dropped) they go too, and so do those of an older version (without the
-- reader), unless something else calls them (a user's view may: then they stay, reading
-- nothing). What a user made over the view goes with it (they
-- cannot read it; it would only stop shiftguard from changing the table's row security).
CREATE OR REPLACE FUNCTION shiftguard.rls_unbind(p_relation oid, p_drop boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_function regprocedure;
    v_old      boolean;
BEGIN
    FOR v_function, v_old IN SELECT oid, pronargs = 1 FROM pg_proc WHERE pronamespace = 'shiftguard_rows'::regnamespace
                                AND proname IN ('rls@' || p_relation, 'rls@' || p_relation || ':latest') LOOP
        IF (p_drop OR v_old) AND NOT EXISTS (SELECT FROM pg_depend WHERE refclassid = 'pg_proc'::regclass
                                                         AND refobjid = v_function) THEN
            EXECUTE format('DROP FUNCTION %s', v_function);
        ELSE
            EXECUTE format('CREATE OR REPLACE FUNCTION %s RETURNS pg_catalog.bool LANGUAGE sql STABLE SECURITY DEFINER '
                           'BEGIN ATOMIC SELECT NULL::pg_catalog.bool; END', v_function);
        END IF;
    END LOOP;
    IF to_regclass(format('shiftguard.%I', 'rls@' || p_relation || ':rows')) IS NOT NULL THEN
        EXECUTE format('DROP VIEW shiftguard.%I CASCADE', 'rls@' || p_relation || ':rows');
    END IF;
    IF EXISTS (SELECT FROM pg_policy WHERE polrelid = p_relation AND polname = 'shiftguard_rls_rows') THEN
        EXECUTE format('DROP POLICY shiftguard_rls_rows ON %s', p_relation::regclass);
    END IF;
    IF EXISTS (SELECT FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = p_relation AND a.grantee = 'shiftguard_rls_rows'::regrole) THEN
        EXECUTE format('REVOKE ALL ON %s FROM shiftguard_rls_rows', p_relation::regclass);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_unbind(oid, boolean) FROM PUBLIC;

-- The table's row security as shiftguard made it goes (its policies; its rls@<oid> functions
-- read nothing, or go with p_drop); rls_sync makes it again.
CREATE OR REPLACE FUNCTION shiftguard.rls_clear(p_relation oid, p_drop boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_policy name;
BEGIN
    FOR v_policy IN SELECT polname FROM pg_policy WHERE polrelid = p_relation
                       AND polname IN ('shiftguard_rls', 'shiftguard_mask') LOOP
        EXECUTE format('DROP POLICY %I ON %s', v_policy, p_relation::regclass);
    END LOOP;
    PERFORM shiftguard.rls_unbind(p_relation, p_drop);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_clear(oid, boolean) FROM PUBLIC;

-- The table's functions rls@<oid> (the statement's snapshot) and rls@<oid>:latest (a snapshot of
-- its own: VOLATILE) for the attached policies that read lookup tables (see the header); the
-- table's policy evaluates the others itself. With several such policies attached, both give
-- the verdict of all of them for the reader ($2): which of them reach the reader is written
-- into the body from the attachments (as rls_applies asks: rls_sync runs again whenever they
-- change; role membership is asked at each call, by the role's oid while that oid keeps its
-- name, else by name). With one, the table's policy calls them only for users it reaches
-- (rls_applies), and they give its predicate's verdict on the row (asking again whom it
-- reaches costs a third of the call, for nothing but a caller that schema shiftguard_rows
-- keeps out). SECURITY DEFINER, and executable by everyone (the table's policy calls them as
-- the querying user): the first argument is any ctid, and what is read is the row there, never
-- a value of the caller's; the second is the policy's current_user. Every name is qualified;
-- the predicates themselves were bound when their policies were created. A policy every row
-- must pass (all under AND when it reaches everyone, or the only one) is joined in (PostgreSQL
-- then reads its lookup tables as a join, no hash table per call); the others are EXISTS tests
-- under the OR or NOT of who they reach.
CREATE OR REPLACE FUNCTION shiftguard.rls_bind(p_relation oid, p_conjunction text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name      text := 'rls@' || p_relation;
    v_policy    shiftguard_rows.rls_policies;
    v_count     integer := (SELECT count(DISTINCT policy) FROM shiftguard_rows.rls_attachments
                             WHERE relation = p_relation AND shiftguard.rls_reads_tables(policy));
    v_columns   text[] := '{}';
    v_args      text;
    v_call      text;
    v_applies   text;
    v_joins     text := '';
    v_where     text[] := ARRAY['r.ctid OPERATOR(pg_catalog.=) $1'];
    v_any       text[] := '{}';
    v_each      text[] := '{}';
    v_everyone  boolean := false;
    v_body      text;
BEGIN
    FOR v_policy IN SELECT p.* FROM shiftguard_rows.rls_policies p
                     WHERE p.name IN (SELECT policy FROM shiftguard_rows.rls_attachments WHERE relation = p_relation)
                       AND shiftguard.rls_reads_tables(p.name)
                     ORDER BY p.name LOOP
        SELECT CASE WHEN bool_or(a.grantee_kind = 'public') THEN 'true' ELSE string_agg(CASE
                   WHEN a.grantee_kind = 'user' THEN format(
                       '$2::pg_catalog.text OPERATOR(pg_catalog.=) %L::pg_catalog.text', a.grantee)
                   WHEN r.oid IS NULL THEN format(
                       'coalesce(pg_catalog.pg_has_role($2, pg_catalog.to_regrole(%L), %L), false)',
                       quote_ident(a.grantee), 'USAGE')
                   ELSE format('CASE WHEN pg_catalog.pg_get_userbyid(%s::pg_catalog.oid) OPERATOR(pg_catalog.=) '
                               '%L::pg_catalog.name THEN pg_catalog.pg_has_role($2, %s::pg_catalog.oid, %L) '
                               'ELSE coalesce(pg_catalog.pg_has_role($2, pg_catalog.to_regrole(%L), %L), '
                               'false) END', r.oid, a.grantee, r.oid, 'USAGE', quote_ident(a.grantee), 'USAGE') END,
                   ' OR ' ORDER BY a.grantee_kind, a.grantee) END
          INTO v_applies
          FROM shiftguard_rows.rls_attachments a LEFT JOIN pg_roles r ON a.grantee_kind = 'role' AND r.rolname = a.grantee
         WHERE a.policy = v_policy.name AND a.relation = p_relation;
        v_columns := v_columns || ARRAY(SELECT c->>'colname' FROM jsonb_array_elements(v_policy.columns) c);
        v_args := (SELECT string_agg(format(', r.%I', c->>'colname'), '' ORDER BY n)
                     FROM jsonb_array_elements(v_policy.columns) WITH ORDINALITY AS x (c, n));
        v_call := format('shiftguard_rows.%I($2%s)', 'rls:' || v_policy.name, coalesce(v_args, ''));
        v_everyone := v_everyone OR v_applies = 'true';
        IF v_count = 1 OR (p_conjunction = 'and' AND v_applies = 'true') THEN
            -- its function returns (true) when the row passes, none else
            v_joins := v_joins || format(' CROSS JOIN LATERAL %s AS %I (ok)', v_call, 'p' || cardinality(v_where));
            v_where := v_where || format('%I.ok', 'p' || cardinality(v_where));
            CONTINUE;
        END IF;
        v_call := format('EXISTS (SELECT FROM %s AS x (ok) WHERE x.ok)', v_call);
        v_any := v_any || v_applies;
        v_each := v_each || CASE WHEN v_applies = 'true' THEN v_call
                                 WHEN p_conjunction = 'and' THEN format('(NOT (%s) OR %s)', v_applies, v_call)
                                 ELSE format('((%s) AND %s)', v_applies, v_call) END;
    END LOOP;
    IF cardinality(v_each) > 0 THEN
        v_where := v_where || format('(%s)', array_to_string(v_each, CASE p_conjunction WHEN 'and' THEN ' AND '
                                                                                     ELSE ' OR ' END));
    END IF;
    IF p_conjunction = 'and' AND NOT v_everyone AND cardinality(v_any) > 0 THEN  -- and one reaches them
        v_where := v_where || format('(%s)', array_to_string(v_any, ' OR '));
    END IF;
    EXECUTE format('GRANT SELECT ON %s TO shiftguard_rls_rows', p_relation::regclass);
    EXECUTE format('CREATE VIEW shiftguard.%I AS SELECT t.ctid%s FROM ONLY %s AS t', v_name || ':rows',
                   (SELECT string_agg(format(', t.%I', c), '' ORDER BY c) FROM (SELECT DISTINCT unnest(v_columns) c) x),
                   p_relation::regclass);
    EXECUTE format('ALTER VIEW shiftguard.%I OWNER TO shiftguard_rls_rows', v_name || ':rows');
    EXECUTE format('GRANT SELECT ON shiftguard.%I TO shiftguard_rls', v_name || ':rows');
    EXECUTE format('CREATE POLICY shiftguard_rls_rows ON %s AS PERMISSIVE FOR SELECT TO shiftguard_rls_rows '
                   'USING (true)', p_relation::regclass);
    v_body := format('SELECT true FROM shiftguard.%I AS r%s WHERE %s', v_name || ':rows', v_joins,
                     array_to_string(v_where, ' AND '));
    -- No SET search_path: a BEGIN ATOMIC body is parsed here, under this function's pinned path,
    -- and stored bound to the objects it names; nothing in it is looked up when it runs.
    EXECUTE format('CREATE OR REPLACE FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) RETURNS pg_catalog.bool '
                   'LANGUAGE sql STABLE SECURITY DEFINER BEGIN ATOMIC %s; END', v_name, v_body);
    EXECUTE format('CREATE OR REPLACE FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) RETURNS pg_catalog.bool '
                   'LANGUAGE sql VOLATILE SECURITY DEFINER BEGIN ATOMIC %s; END', v_name || ':latest', v_body);
    EXECUTE format('ALTER FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) OWNER TO shiftguard_rls', v_name);
    EXECUTE format('ALTER FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) OWNER TO shiftguard_rls',
                   v_name || ':latest');
    EXECUTE format('GRANT EXECUTE ON FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) TO PUBLIC', v_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION shiftguard_rows.%I(pg_catalog.tid, pg_catalog.name) TO PUBLIC',
                   v_name || ':latest');
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_bind(oid, text) FROM PUBLIC;

-- Make the table's PostgreSQL row security say what the private tables say.
CREATE OR REPLACE FUNCTION shiftguard.rls_sync(p_relation oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel     shiftguard_rows.rls_relations;
    v_policy  shiftguard_rows.rls_policies;
    v_applies text;
    v_call    text;
    v_any     text[] := '{}';
    v_each    text[] := '{}';
    v_reading text[] := '{}';   -- "applies" of the policies that read lookup tables
    v_rows    text;
    v_expr    text;
    v_masked  boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = p_relation) THEN
        RETURN;
    END IF;
    SELECT * INTO v_rel FROM shiftguard_rows.rls_relations WHERE relation = p_relation;
    v_masked := EXISTS (SELECT FROM shiftguard_rows.masking_attachments WHERE relation = p_relation);
    PERFORM shiftguard.rls_clear(p_relation, false);
    IF NOT coalesce(v_rel.enabled, false) AND NOT v_masked THEN
        PERFORM shiftguard.rls_unbind(p_relation, true);
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY',
                       p_relation::regclass);
        RETURN;
    END IF;
    IF NOT coalesce(v_rel.enabled, false) THEN
        v_rel.conjunction := 'none';  -- masking only: every row
    END IF;
    FOR v_policy IN SELECT p.* FROM shiftguard_rows.rls_policies p
                     WHERE p.name IN (SELECT policy FROM shiftguard_rows.rls_attachments WHERE relation = p_relation)
                     ORDER BY p.name LOOP
        v_applies := format('(SELECT shiftguard.rls_applies(%L, %s))', v_policy.name, p_relation);
        v_any := v_any || v_applies;
        IF shiftguard.rls_reads_tables(v_policy.name) THEN
            v_reading := v_reading || v_applies;
            CONTINUE;
        END IF;
        v_call := format('shiftguard.%I(%s)', 'rls:' || v_policy.name,
                         (SELECT coalesce(string_agg(format('%I', c->>'colname'), ', ' ORDER BY n), '')
                            FROM jsonb_array_elements(v_policy.columns) WITH ORDINALITY AS x (c, n)));
        v_each := v_each || CASE v_rel.conjunction
            WHEN 'and' THEN format('(NOT %s OR %s)', v_applies, v_call)
            ELSE format('(%s AND %s)', v_applies, v_call) END;
    END LOOP;
    IF cardinality(v_reading) > 0 AND v_rel.conjunction <> 'none' THEN
        PERFORM shiftguard.rls_bind(p_relation, v_rel.conjunction);
        v_rows := format('(ctid OPERATOR(pg_catalog.=) %L::pg_catalog.tid OR shiftguard_rows.%I(ctid, current_user) '
                         'OR (pg_catalog.age(xmin) OPERATOR(pg_catalog.<=) (SELECT shiftguard.rls_horizon()) '
                         'AND shiftguard_rows.%I(ctid, current_user)))',
                         '(4294967295,0)', 'rls@' || p_relation, 'rls@' || p_relation || ':latest');
        v_each := v_each || CASE v_rel.conjunction
            WHEN 'and' THEN format('(NOT (%s) OR %s)', array_to_string(v_reading, ' OR '), v_rows)
            ELSE format('((%s) AND %s)', array_to_string(v_reading, ' OR '), v_rows) END;
    ELSE
        PERFORM shiftguard.rls_unbind(p_relation, true);
    END IF;
    v_expr := CASE WHEN v_rel.conjunction = 'none' THEN 'true' ELSE '(SELECT shiftguard.rls_exempt())' END;
    IF cardinality(v_each) > 0 AND v_rel.conjunction <> 'none' THEN
        v_expr := v_expr || ' OR ' || CASE v_rel.conjunction
            WHEN 'and' THEN format('((%s) AND %s)', array_to_string(v_any, ' OR '), array_to_string(v_each, ' AND '))
            ELSE array_to_string(v_each, ' OR ') END;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', p_relation::regclass);
    IF NOT v_masked THEN
        EXECUTE format('CREATE POLICY shiftguard_rls ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (true)',
                       p_relation::regclass, v_expr);
        RETURN;
    END IF;
    -- Masked (catalog/masking.sql): Redshift users reading the table directly pass the masking
    -- guard; the masking view, reading as shiftguard_mask, sees the rows RLS allows the querying user.
    EXECUTE format('CREATE POLICY shiftguard_rls ON %s AS PERMISSIVE FOR ALL TO shiftguard_users '
                   'USING ((SELECT shiftguard.mask_guard(%s)) AND (%s)) WITH CHECK (true)',
                   p_relation::regclass, p_relation, v_expr);
    EXECUTE format('CREATE POLICY shiftguard_mask ON %s AS PERMISSIVE FOR SELECT TO shiftguard_mask USING (%s)',
                   p_relation::regclass, v_expr);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_sync(oid) FROM PUBLIC;

-- The policy's predicate function, "rls:<policy>"(col, ...). p_policy (written and
-- signed by the proxy, see create_rls_policy): name, alias, columns, predicate (as written),
-- expression (one expression printed back by PostgreSQL's parser, the querying user written
-- $1), lookups (the tables it reads), inline (the expression over bare column names, the user
-- written current_user, when it reads no table). p_search_path: the creator's, which resolves the names now, once:
-- both forms are SQL-standard bodies, parsed here (pg_catalog first, pg_temp last), so no table
-- or function made later, temporary or not, can stand in for them, and what they read cannot
-- be dropped while the policy exists. Only the body is parsed with the creator's path; and
-- whatever it binds to must be trusted (shiftguard.untrusted_reference): a planted better match
-- for an operator or function (public.=(varchar, varchar)) is refused, not bound. The body is
-- read with standard_conforming_strings on, as the proxy prints it.
--   Without lookups: RETURN expr, not SECURITY DEFINER, which PostgreSQL inlines into the
--   query: no function call per row (a UDF in it needs EXECUTE by the querying user, as on
--   Redshift).
--   With lookups: "rls:<policy>"(reader, col, ...) in schema shiftguard_rows, the reader the
--   querying user, RETURNS SETOF boolean (one row, true, when the
--   predicate holds, none otherwise), SECURITY INVOKER, owned by shiftguard_rls, which alone is
--   granted SELECT on the lookup tables and alone may execute it: PostgreSQL inlines it into
--   the table's function rls@<oid> (see the header), which runs as shiftguard_rls on the
--   table's own rows and so can read the lookup tables as a join. The columns are a one-row
--   derived table named by the alias, so alias.col, col and correlated references from lookup
--   subqueries resolve as they would against the table. Created by an older version as a
--   SECURITY DEFINER function that everyone could call, or without the reader, or of the other
--   form before ALTER RLS POLICY: dropped first (the caller has cleared the tables that used it).
--   Without lookups: in schema shiftguard (the table's policy inlines it; everyone may call it).
CREATE OR REPLACE FUNCTION shiftguard.rls_define(p_policy jsonb, p_search_path text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on AS $$
DECLARE
    v_reads     boolean := p_policy->>'inline' IS NULL;
    v_function  text := format('%I.%I', CASE WHEN v_reads THEN 'shiftguard_rows' ELSE 'shiftguard' END,
                               'rls:' || (p_policy->>'name'));
    v_path      text := 'pg_catalog, ' || p_search_path || ', pg_temp';  -- the creator's, for the body
    v_column    jsonb;
    v_type      regtype;
    v_params    text[] := '{}';
    v_types     text[] := '{}';
    v_select    text[] := '{}';
    v_lookup    text;
    v_table     regclass;
    v_old       regprocedure;
BEGIN
    -- Everything but the body resolves in pg_catalog: column types are built-in ones (Redshift has
    -- no user-defined types), so no domain of anyone's (its CHECK runs code) stands in for one.
    IF v_reads THEN  -- the reader, unnamed: $1
        v_params := ARRAY['pg_catalog.name'];
        v_types := ARRAY['pg_catalog.name'];
    END IF;
    FOR v_column IN SELECT jsonb_array_elements(p_policy->'columns') LOOP
        v_type := to_regtype(v_column->>'type');
        IF v_type IS NULL THEN
            RAISE EXCEPTION 'type "%" does not exist', v_column->>'type' USING ERRCODE = '42704';
        END IF;
        v_params := v_params || format('%I %s', v_column->>'colname', v_type);
        v_types := v_types || v_type::text;
        v_select := v_select || format('$%s AS %I', cardinality(v_params), v_column->>'colname');
    END LOOP;
    FOR v_old IN SELECT oid FROM pg_proc WHERE proname = 'rls:' || (p_policy->>'name')
                    AND pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace)
                    AND (pronamespace <> CASE WHEN v_reads THEN 'shiftguard_rows' ELSE 'shiftguard' END::regnamespace
                         OR proretset <> v_reads OR prosecdef OR pronargs <> cardinality(v_params)) LOOP
        EXECUTE format('DROP FUNCTION %s', v_old);
    END LOOP;
    IF NOT v_reads THEN
        PERFORM shiftguard.caller_execute(format(
            'CREATE OR REPLACE FUNCTION %s(%s) RETURNS boolean LANGUAGE sql STABLE SECURITY INVOKER '
            'RETURN coalesce((%s)::pg_catalog.bool, false)',
            v_function, array_to_string(v_params, ', '), p_policy->>'inline'), v_path);
    ELSE
        FOR v_lookup IN SELECT jsonb_array_elements_text(p_policy->'lookups') LOOP
            v_table := shiftguard.caller_regclass(v_lookup, v_path);
            IF v_table IS NULL THEN
                RAISE EXCEPTION 'relation "%" does not exist', v_lookup USING ERRCODE = '42P01';
            END IF;
            IF (SELECT relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                                        'shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace,
                                        'pg_toast'::regnamespace)
                  FROM pg_class WHERE oid = v_table) THEN
                RAISE EXCEPTION 'RLS policies cannot read the catalog table "%"', v_lookup USING ERRCODE = '0A000';
            END IF;
            -- (locked as DDL that adds code to it locks it: what comes later sees the policy)
            EXECUTE format('LOCK TABLE ONLY %s IN SHARE UPDATE EXCLUSIVE MODE', v_table);
            PERFORM shiftguard.require_no_read_code(v_table, p_policy->>'name');
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO shiftguard_rls',
                           (SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                             WHERE c.oid = v_table));
            EXECUTE format('GRANT SELECT ON %s TO shiftguard_rls', v_table);
        END LOOP;
        PERFORM shiftguard.caller_execute(format(
            'CREATE OR REPLACE FUNCTION %s(%s) RETURNS SETOF boolean LANGUAGE sql STABLE SECURITY INVOKER '
            'BEGIN ATOMIC SELECT true FROM (SELECT %s) AS %I WHERE (%s)::pg_catalog.bool; END',
            v_function, array_to_string(v_params, ', '),
            CASE WHEN cardinality(v_select) = 0 THEN '1 AS "?column?"' ELSE array_to_string(v_select, ', ') END,
            coalesce(p_policy->>'alias', p_policy->>'name'), p_policy->>'expression'), v_path);
        EXECUTE format('ALTER FUNCTION %s(%s) OWNER TO shiftguard_rls', v_function, array_to_string(v_params, ', '));
        EXECUTE format('REVOKE ALL ON FUNCTION %s(%s) FROM PUBLIC', v_function, array_to_string(v_params, ', '));
    END IF;
    PERFORM shiftguard.require_trusted_body(format('%s(%s)', v_function, array_to_string(v_types, ', '))::regprocedure,
                                            format('RLS policy "%s"', p_policy->>'name'));
    IF NOT v_reads THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s(%s) TO PUBLIC', v_function, array_to_string(v_params, ', '));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_define(jsonb, text) FROM PUBLIC;

DROP PROCEDURE IF EXISTS shiftguard.create_rls_policy(jsonb, text);
DROP PROCEDURE IF EXISTS shiftguard.alter_rls_policy(jsonb, text);

-- A policy's text must be one the proxy parsed and signed (shiftguard.signed): rls_define
-- turns it into SQL run by the management role.
CREATE OR REPLACE FUNCTION shiftguard.rls_payload(p_text text, p_signature text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT shiftguard.signed('rls', p_text, p_signature) THEN
        RAISE EXCEPTION 'permission denied: RLS policies are created and altered with CREATE | ALTER RLS POLICY'
            USING ERRCODE = '42501';
    END IF;
    RETURN p_text::jsonb;
END
$$;

CREATE OR REPLACE PROCEDURE shiftguard.create_rls_policy__keyed(p_text text, p_signature text, p_search_path text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    p_policy jsonb;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    p_policy := shiftguard.rls_payload(p_text, p_signature);
    IF EXISTS (SELECT FROM shiftguard_rows.rls_policies WHERE name = p_policy->>'name') THEN
        RAISE EXCEPTION 'policy "%" already exists', p_policy->>'name' USING ERRCODE = '42710';
    END IF;
    INSERT INTO shiftguard_rows.rls_policies (name, alias, columns, predicate, lookups, modified_by)
    VALUES (p_policy->>'name', p_policy->>'alias', p_policy->'columns', p_policy->>'predicate',
            p_policy->'lookups', v_caller);
    PERFORM shiftguard.rls_define(p_policy, p_search_path);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_rls_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_rls_policy(p_text text, p_signature text, p_search_path text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_rls_policy__keyed($1, $2, $3, shiftguard.caller_key()) $$;

-- ALTER RLS POLICY p USING (...): only the predicate changes. The attached tables' row
-- security is made again (whether the predicate reads tables may have changed, and with it the
-- function's form), so the change holds from the next statement on.
CREATE OR REPLACE PROCEDURE shiftguard.alter_rls_policy__keyed(p_text text, p_signature text, p_search_path text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_stored   shiftguard_rows.rls_policies;
    p_policy   jsonb;
    v_relation oid;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    p_policy := shiftguard.rls_payload(p_text, p_signature);
    SELECT * INTO v_stored FROM shiftguard_rows.rls_policies WHERE name = p_policy->>'name' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy "%" does not exist', p_policy->>'name' USING ERRCODE = '42704';
    END IF;
    UPDATE shiftguard_rows.rls_policies
       SET predicate = p_policy->>'predicate', lookups = p_policy->'lookups', modified_by = v_caller,
           modified_time = now() AT TIME ZONE 'utc'
     WHERE name = v_stored.name;
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = v_stored.name LOOP
        PERFORM shiftguard.rls_clear(v_relation, false);
    END LOOP;
    PERFORM shiftguard.rls_define(p_policy || jsonb_build_object('alias', v_stored.alias, 'columns', v_stored.columns),
                                 p_search_path);
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = v_stored.name LOOP
        PERFORM shiftguard.rls_sync(v_relation);
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is alter_rls_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.alter_rls_policy(p_text text, p_signature text, p_search_path text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.alter_rls_policy__keyed($1, $2, $3, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_rls_policy__keyed(p_name text, p_missing_ok boolean, p_cascade boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_stored   shiftguard_rows.rls_policies;
    v_relation oid;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    SELECT * INTO v_stored FROM shiftguard_rows.rls_policies WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        IF p_missing_ok THEN
            RAISE NOTICE 'policy "%" does not exist, skipping', p_name;
            RETURN;
        END IF;
        RAISE EXCEPTION 'policy "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    DELETE FROM shiftguard_rows.rls_attachments
     WHERE policy = p_name AND NOT EXISTS (SELECT FROM pg_class WHERE oid = relation);
    IF EXISTS (SELECT FROM shiftguard_rows.rls_attachments WHERE policy = p_name) AND NOT p_cascade THEN
        -- UNVERIFIED wording.
        RAISE EXCEPTION 'cannot drop RLS policy "%" because it is attached to a relation', p_name
            USING ERRCODE = '2BP01', HINT = 'Detach it first, or use DROP RLS POLICY ... CASCADE.';
    END IF;
    FOR v_relation IN DELETE FROM shiftguard_rows.rls_attachments WHERE policy = p_name RETURNING relation LOOP
        PERFORM shiftguard.rls_sync(v_relation);
    END LOOP;
    DELETE FROM shiftguard_rows.rls_policies WHERE name = p_name;
    PERFORM set_config('search_path', 'pg_catalog, shiftguard', true);
    EXECUTE format('DROP FUNCTION %s', (SELECT p.oid::regprocedure FROM pg_proc p
                                          WHERE p.pronamespace IN ('shiftguard'::regnamespace,
                                                                   'shiftguard_rows'::regnamespace)
                                            AND p.proname = 'rls:' || p_name));
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_rls_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_rls_policy(p_name text, p_missing_ok boolean, p_cascade boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_rls_policy__keyed($1, $2, $3, shiftguard.caller_key()) $$;

-- A relation that may carry RLS: an ordinary table of this database, not a catalog, not temporary.
CREATE OR REPLACE FUNCTION shiftguard.rls_target(p_relation oid) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_class pg_class;
BEGIN
    SELECT * INTO v_class FROM pg_class WHERE oid = p_relation;
    IF v_class.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'RLS policies can be attached to tables only; "%" is not a table', v_class.relname
            USING ERRCODE = '0A000';
    END IF;
    IF v_class.relpersistence = 't' OR v_class.relnamespace IN ('pg_catalog'::regnamespace,
            'information_schema'::regnamespace, 'shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace) THEN
        RAISE EXCEPTION 'RLS cannot be used on the temporary or system table "%"', v_class.relname
            USING ERRCODE = '0A000';
    END IF;
END
$$;

-- ATTACH / DETACH RLS POLICY p ON t, ... TO / FROM grantee, ...
CREATE OR REPLACE PROCEDURE shiftguard.attach_rls_policy__keyed(p_name text, p_relations oid[], p_grantees jsonb,
                                                        p_attach boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_stored   shiftguard_rows.rls_policies;
    v_relation oid;
    v_grantee  jsonb;
    v_missing  text;
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    SELECT * INTO v_stored FROM shiftguard_rows.rls_policies WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    FOREACH v_relation IN ARRAY p_relations LOOP
        PERFORM shiftguard.rls_target(v_relation);
        IF p_attach THEN
            SELECT c->>'colname' INTO v_missing FROM jsonb_array_elements(v_stored.columns) c
             WHERE NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = v_relation AND attnum > 0
                                 AND NOT attisdropped AND attname = c->>'colname')
             LIMIT 1;
            IF v_missing IS NOT NULL THEN
                RAISE EXCEPTION 'column "%" of RLS policy "%" does not exist in relation "%"',
                    v_missing, p_name, v_relation::regclass USING ERRCODE = '42703';
            END IF;
            IF EXISTS (SELECT FROM shiftguard_rows.rls_attachments a JOIN shiftguard_rows.rls_policies p ON p.name = a.policy
                        WHERE a.relation = v_relation AND p.alias IS DISTINCT FROM v_stored.alias) THEN
                RAISE EXCEPTION 'all RLS policies on relation "%" must use the same alias', v_relation::regclass
                    USING ERRCODE = '42P17';
            END IF;
        END IF;
        FOR v_grantee IN SELECT jsonb_array_elements(p_grantees) LOOP
            IF p_attach THEN
                IF v_grantee->>'kind' = 'user' THEN
                    PERFORM shiftguard.require_user(v_grantee->>'name');
                    IF (SELECT superuser FROM shiftguard_rows.users WHERE name = v_grantee->>'name') THEN
                        RAISE EXCEPTION 'RLS policies cannot be attached to the superuser "%"', v_grantee->>'name'
                            USING ERRCODE = '22023';
                    END IF;
                ELSIF v_grantee->>'kind' = 'role' THEN
                    PERFORM shiftguard.require_role(v_grantee->>'name');
                END IF;
                INSERT INTO shiftguard_rows.rls_attachments (policy, relation, grantee, grantee_kind, grantor)
                VALUES (p_name, v_relation, v_grantee->>'name', v_grantee->>'kind', v_caller)
                ON CONFLICT DO NOTHING;
            ELSE
                DELETE FROM shiftguard_rows.rls_attachments
                 WHERE policy = p_name AND relation = v_relation
                   AND grantee = v_grantee->>'name' AND grantee_kind = v_grantee->>'kind';
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'RLS policy "%" is not attached to relation "%" for %', p_name,
                        v_relation::regclass,
                        CASE v_grantee->>'kind' WHEN 'public' THEN 'PUBLIC' ELSE v_grantee->>'name' END
                        USING ERRCODE = '42704';
                END IF;
            END IF;
        END LOOP;
        PERFORM shiftguard.rls_sync(v_relation);
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is attach_rls_policy__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.attach_rls_policy(p_name text, p_relations oid[], p_grantees jsonb,
                                                        p_attach boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.attach_rls_policy__keyed($1, $2, $3, $4, shiftguard.caller_key()) $$;

-- ALTER TABLE t ROW LEVEL SECURITY {ON | OFF} [CONJUNCTION TYPE {AND | OR}].
CREATE OR REPLACE PROCEDURE shiftguard.set_table_rls__keyed(p_relation oid, p_enabled boolean, p_conjunction text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    PERFORM shiftguard.require_rls_admin__keyed(p_key => p_key);
    PERFORM shiftguard.rls_target(p_relation);
    IF p_enabled THEN
        PERFORM shiftguard.require_no_inheritance(p_relation, 'row-level security');
        PERFORM shiftguard.require_no_row_code(p_relation, 'row-level security');  -- catalog/row_code.sql
    END IF;
    DELETE FROM shiftguard_rows.rls_relations r WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = r.relation);
    DELETE FROM shiftguard_rows.rls_attachments a WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = a.relation);
    INSERT INTO shiftguard_rows.rls_relations (relation, enabled, conjunction)
    VALUES (p_relation, p_enabled, coalesce(p_conjunction, 'and'))
    ON CONFLICT (relation) DO UPDATE
       SET enabled = excluded.enabled,
           conjunction = coalesce(p_conjunction, shiftguard_rows.rls_relations.conjunction);
    PERFORM shiftguard.rls_sync(p_relation);
    PERFORM shiftguard.mask_bump();  -- the proxies read rls_tables() again
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is set_table_rls__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.set_table_rls(p_relation oid, p_enabled boolean, p_conjunction text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.set_table_rls__keyed($1, $2, $3, shiftguard.caller_key()) $$;

-- The tables with RLS on, for the proxy's refusal of inheritance and partitioning
-- (statements.py; guard_inheritance is what holds): schema, name.
CREATE OR REPLACE FUNCTION shiftguard.rls_tables(OUT schema_name text, OUT table_name text) RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname::text, c.relname::text
      FROM shiftguard_rows.rls_relations r JOIN pg_class c ON c.oid = r.relation
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE r.enabled
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_tables() FROM PUBLIC;

-- Catalog views (reference §5). Superusers and sys:secadmin see every row; others none
-- (UNVERIFIED: the documentation's editions disagree on who else sees what).
CREATE OR REPLACE FUNCTION shiftguard.sees_rls__keyed(p_key text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.role_is_superuser(shiftguard.key_owner(p_key)) OR pg_has_role(shiftguard.key_owner(p_key), 'sys:secadmin', 'USAGE')
$$;

GRANT EXECUTE ON FUNCTION shiftguard.sees_rls__keyed(text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is sees_rls__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.sees_rls() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.sees_rls__keyed(shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.sees_rls() TO PUBLIC;

CREATE OR REPLACE VIEW shiftguard.svv_rls_policy WITH (security_barrier) AS
    SELECT current_database()::text AS poldb, name AS polname, alias AS polalias,
           (SELECT '[' || coalesce(string_agg(format('{"colname":%s,"type":%s}', to_json(c->>'colname'),
                                                     to_json(c->>'type')), ',' ORDER BY n), '') || ']'
              FROM jsonb_array_elements(columns) WITH ORDINALITY AS x (c, n)) AS polatts,
           predicate AS polqual, true AS polenabled, modified_by AS polmodifiedby,
           modified_time AS polmodifiedtime
      FROM shiftguard_rows.rls_policies WHERE shiftguard.sees_rls();

CREATE OR REPLACE VIEW shiftguard.svv_rls_relation WITH (security_barrier) AS
    SELECT current_database()::text AS datname, n.nspname::text AS relschema, c.relname::text AS relname,
           CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS relkind, r.enabled AS is_rls_on,
           false AS is_rls_datashare_on, r.conjunction::char(3) AS rls_conjunction_type,
           'and'::char(3) AS rls_datashare_conjunction_type
      FROM shiftguard_rows.rls_relations r JOIN pg_class c ON c.oid = r.relation
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE shiftguard.sees_rls();

CREATE OR REPLACE VIEW shiftguard.svv_rls_attached_policy WITH (security_barrier) AS
    SELECT n.nspname::text AS relschema, c.relname::text AS relname,
           CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS relkind, a.policy AS polname,
           a.grantor, CASE a.grantee_kind WHEN 'public' THEN 'public' ELSE a.grantee END AS grantee,
           CASE a.grantee_kind WHEN 'role' THEN 'role' ELSE 'user' END AS granteekind, true AS is_pol_on,
           coalesce(r.enabled, false) AS is_rls_on, coalesce(r.conjunction, 'and')::char(3) AS rls_conjunction_type
      FROM shiftguard_rows.rls_attachments a JOIN pg_class c ON c.oid = a.relation
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN shiftguard_rows.rls_relations r ON r.relation = a.relation
     WHERE shiftguard.sees_rls();

GRANT SELECT ON shiftguard.svv_rls_policy, shiftguard.svv_rls_relation, shiftguard.svv_rls_attached_policy TO PUBLIC;

-- Row security cannot be switched off from inside PostgreSQL either: a table owner's
-- ALTER TABLE ... DISABLE ROW LEVEL SECURITY or CREATE/ALTER/DROP POLICY, from a DO block or a
-- function the proxy never sees, fails here. Only the management role (running the procedures
-- above) changes them. Event triggers need a superuser to create; on an external backend whose
-- management role is not one, the proxy's refusal of these statements is the only guard.
-- Has the relation masking policies attached (catalog/masking.sql, loaded after this file)?
CREATE OR REPLACE FUNCTION shiftguard.masked(p_relation oid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN EXISTS (SELECT FROM shiftguard_rows.masking_attachments WHERE relation = p_relation);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.masked(oid) TO PUBLIC;

-- Why the relation must stay out of table inheritance and partitioning (NULL: it need not).
-- PostgreSQL applies the row security of the table a query names: rows read through a parent
-- get the parent's policies (none of the child's), a partition read directly gets its own (none
-- of the parent's), and a masked table's rows read through a parent are not masked. Redshift
-- has neither feature; a table with RLS on or masking attached takes no part in pg_inherits.
CREATE OR REPLACE FUNCTION shiftguard.row_protection(p_relation oid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN CASE WHEN EXISTS (SELECT FROM shiftguard_rows.rls_relations WHERE relation = p_relation AND enabled)
                THEN 'row-level security on'
                WHEN EXISTS (SELECT FROM shiftguard_rows.masking_attachments WHERE relation = p_relation)
                THEN 'a masking policy attached' END;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.row_protection(oid) TO PUBLIC;

-- RLS ON or ATTACH MASKING POLICY on a table that is a parent, a child or a partition (or
-- partitioned): refused. The table is locked first (as INHERIT, ATTACH PARTITION and
-- CREATE TABLE ... PARTITION OF | INHERITS lock it), so a link made meanwhile is seen here, or
-- its own guard (guard_inheritance) sees the protection. VOLATILE: a fresh snapshot after the lock.
CREATE OR REPLACE FUNCTION shiftguard.require_no_inheritance(p_relation oid, p_feature text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('LOCK TABLE ONLY %s IN SHARE UPDATE EXCLUSIVE MODE', p_relation::regclass);
    IF (SELECT relkind = 'p' FROM pg_class WHERE oid = p_relation)
            OR EXISTS (SELECT FROM pg_inherits WHERE p_relation IN (inhrelid, inhparent)) THEN
        RAISE EXCEPTION '% cannot be used on "%": it takes part in table inheritance or partitioning',
            p_feature, (SELECT relname FROM pg_class WHERE oid = p_relation)
            USING ERRCODE = '0A000',
                  DETAIL = 'Rows read through a parent table, or a partition read directly, would escape the '
                           'table''s row-level security and masking.',
                  HINT = 'Amazon Redshift has no table inheritance or partitioning; copy the rows into a table of its own.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.require_no_inheritance(oid, text) FROM PUBLIC;

-- Is the relation's row security as the private tables say (or not ours at all)?
CREATE OR REPLACE FUNCTION shiftguard.rls_intact(p_relation oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT NOT EXISTS (
        SELECT FROM pg_class c LEFT JOIN shiftguard_rows.rls_relations r ON r.relation = c.oid
         WHERE c.oid = p_relation
           AND (c.relrowsecurity, c.relforcerowsecurity)
               IS DISTINCT FROM (coalesce(r.enabled, false) OR shiftguard.masked(c.oid),
                                 coalesce(r.enabled, false) OR shiftguard.masked(c.oid)))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_intact(oid) TO PUBLIC;

-- Forget the attachments of relations that no longer exist (anyone may: it only tidies). A
-- table with RLS on gone moves the version the proxies read rls_tables() by.
CREATE OR REPLACE FUNCTION shiftguard.rls_forget_dropped() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM shiftguard_rows.rls_attachments a WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = a.relation);
    WITH gone AS (DELETE FROM shiftguard_rows.rls_relations r WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = r.relation)
                  RETURNING r.enabled)
    SELECT shiftguard.mask_bump() WHERE EXISTS (SELECT FROM gone WHERE enabled);
$$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_forget_dropped() TO PUBLIC;

-- These run as whoever ran the command (not SECURITY DEFINER): current_user is the
-- management role only inside the procedures above.
CREATE OR REPLACE FUNCTION shiftguard.guard_row_security() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
BEGIN
    IF current_user::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard') THEN
        RETURN;  -- our own procedures (rename_relation checks masked columns itself)
    END IF;
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        -- Masked columns keep their names (or the policy would no longer mask them); the view
        -- gains new columns.
        IF v_command.command_tag = 'ALTER TABLE' AND shiftguard.masked(v_command.objid) THEN
            PERFORM shiftguard.mask_refresh(v_command.objid);
        END IF;
    END LOOP;
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF v_command.command_tag IN ('CREATE POLICY', 'ALTER POLICY') THEN
            RAISE EXCEPTION 'PostgreSQL''s row security policies are not supported; use CREATE RLS POLICY'
                USING ERRCODE = '0A000';
        END IF;
        IF v_command.command_tag = 'ALTER TABLE' AND NOT shiftguard.rls_intact(v_command.objid) THEN
            RAISE EXCEPTION 'row-level security is changed with ALTER TABLE ... ROW LEVEL SECURITY ON | OFF'
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$$;

-- An RLS policy whose predicate reads the table (or a table of the schema), if any: DROP
-- through the proxy refuses it (privileges.sql drop_objects), as guard_drop refuses it elsewhere.
CREATE OR REPLACE FUNCTION shiftguard.rls_policy_reading(p_type text, p_object oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT substr(p.proname, 5) FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_class c ON c.oid = d.refobjid
     WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass
       AND p.pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace) AND p.proname LIKE 'rls:%'
       AND CASE p_type WHEN 'schema' THEN c.relnamespace = p_object ELSE c.oid = p_object END
     ORDER BY 1 LIMIT 1
$$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_policy_reading(text, oid) TO PUBLIC;  -- (what pg_depend shows anyone)

CREATE OR REPLACE FUNCTION shiftguard.guard_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_policy text;
BEGIN
    IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table') THEN
        PERFORM shiftguard.rls_forget_dropped();  -- a dropped table takes its attachments along
        PERFORM shiftguard.table_attributes_forget_dropped();  -- and its Redshift attributes
        PERFORM shiftguard.table_writes_forget_dropped();  -- and its writes (sys_query_detail)
    END IF;
    IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE object_type = 'view') THEN
        PERFORM shiftguard.late_binding_views_forget_dropped();  -- a late-binding view's function
    END IF;
    IF current_user::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard') THEN
        RETURN;
    END IF;
    -- A policy dropped by itself (not along with its table) is a row-security change.
    IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE object_type = 'policy' AND original) THEN
        RAISE EXCEPTION 'PostgreSQL''s row security policies are not supported; use DROP RLS POLICY'
            USING ERRCODE = '0A000';
    END IF;
    -- A lookup table's owner dropping it with CASCADE would take the policy's function along,
    -- and with it the row security of every table the policy is attached to.
    SELECT substr(object_identity, strpos(object_identity, '"rls:') + 5) INTO v_policy
      FROM pg_event_trigger_dropped_objects()
     WHERE object_type = 'function' AND schema_name IN ('shiftguard', 'shiftguard_rows')
       AND object_identity LIKE '%."rls:%' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'RLS policy "%" reads what this drops', split_part(v_policy, '"(', 1)
            USING ERRCODE = '2BP01', HINT = 'Change the policy with ALTER RLS POLICY, or drop it, first.';
    END IF;
END
$$;

-- No table with RLS on or masking attached takes part in inheritance or partitioning (see
-- row_protection): ALTER TABLE ... INHERIT | ATTACH PARTITION and CREATE TABLE ... INHERITS |
-- PARTITION OF, also from a DO block or a function the proxy never sees, fail here when a
-- table they link (either end of a pg_inherits row touching the command's table) is protected.
-- NO INHERIT and DETACH PARTITION leave no link to see; with this guard there is none to undo.
CREATE OR REPLACE FUNCTION shiftguard.guard_inheritance() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link record;
BEGIN
    SELECT l.relation, l.protection, l.other INTO v_link
      FROM pg_event_trigger_ddl_commands() c
      JOIN pg_inherits i ON c.objid IN (i.inhrelid, i.inhparent)
     CROSS JOIN LATERAL (VALUES (i.inhrelid, i.inhparent), (i.inhparent, i.inhrelid)) AS x (relation, other)
     CROSS JOIN LATERAL (SELECT x.relation, x.other, shiftguard.row_protection(x.relation) AS protection) AS l
     WHERE c.classid = 'pg_class'::regclass AND l.protection IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table "%" has %: it cannot take part in table inheritance or partitioning (with "%")',
            (SELECT relname FROM pg_class WHERE oid = v_link.relation), v_link.protection,
            (SELECT relname FROM pg_class WHERE oid = v_link.other)
            USING ERRCODE = '0A000',
                  DETAIL = 'Rows read through a parent table, or a partition read directly, would escape its '
                           'row-level security and masking.',
                  HINT = 'Amazon Redshift has no table inheritance or partitioning.';
    END IF;
END
$$;

-- A view is checked with its owner's rights, and PostgreSQL exempts a superuser owner from row
-- security, while Redshift applies the querying user's policies through every view. So a view a
-- superuser creates is handed to shiftguard_views, a role with SELECT on what the view reads
-- and nothing else, which row security does not exempt. Superusers still alter and drop it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_views') THEN
        CREATE ROLE shiftguard_views NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;

-- Gives shiftguard_views USAGE on a schema or SELECT on a relation (p_catalog: pg_namespace or
-- pg_class) when it lacks a grant of its own (through PUBLIC, which may be revoked later, does
-- not count). Only when missing: a GRANT rewrites the object's catalog row, and two sessions
-- creating views on one schema at once (dbt's threads) would meet on it ("tuple concurrently
-- updated"). One that finds the grant missing waits for any other that may be making it (a lock
-- per object, held to the end of the transaction) and looks again before it grants.
CREATE OR REPLACE FUNCTION shiftguard.lend_to_views_role(p_catalog regclass, p_object oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_schema    boolean := p_catalog = 'pg_catalog.pg_namespace'::regclass;
    v_privilege text := CASE WHEN v_schema THEN 'USAGE' ELSE 'SELECT' END;
BEGIN
    FOR v_look IN 1..2 LOOP
        IF EXISTS (SELECT FROM aclexplode(CASE WHEN v_schema THEN (SELECT nspacl FROM pg_catalog.pg_namespace WHERE oid = p_object)
                                               ELSE (SELECT relacl FROM pg_catalog.pg_class WHERE oid = p_object) END) a
                    WHERE a.grantee = 'shiftguard_views'::regrole AND a.privilege_type = v_privilege) THEN
            RETURN;
        END IF;
        IF v_look = 1 THEN
            PERFORM shiftguard.lock_object('lend_to_views_role', p_object);
        END IF;
    END LOOP;
    EXECUTE CASE WHEN v_schema THEN format('GRANT USAGE ON SCHEMA %s TO shiftguard_views', p_object::regnamespace)
                 ELSE format('GRANT SELECT ON %s TO shiftguard_views', p_object::regclass) END;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.lend_to_views_role(regclass, oid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.views_of_superusers() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
    v_read    record;
BEGIN
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands()
                      WHERE command_tag = 'CREATE VIEW' AND object_type = 'view'
                        AND schema_name NOT IN ('shiftguard', 'shiftguard_rows', 'pg_catalog', 'information_schema') LOOP
        IF NOT (SELECT r.rolsuper OR r.rolname = 'shiftguard_views'
                  FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = v_command.objid) THEN
            CONTINUE;
        END IF;
        FOR v_read IN SELECT DISTINCT d.refobjid AS relation, c.relnamespace AS schema
                        FROM pg_rewrite w JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                        JOIN pg_class c ON c.oid = d.refobjid
                       WHERE w.ev_class = v_command.objid AND d.refclassid = 'pg_class'::regclass
                         AND d.refobjid <> v_command.objid
                         AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                       ORDER BY c.relnamespace, d.refobjid LOOP  -- the locks in one order
            PERFORM shiftguard.lend_to_views_role('pg_namespace', v_read.schema);
            PERFORM shiftguard.lend_to_views_role('pg_class', v_read.relation);
        END LOOP;
        EXECUTE format('ALTER VIEW %s OWNER TO shiftguard_views', v_command.objid::regclass);
    END LOOP;
END
$$;

SELECT shiftguard.ensure_event_trigger('shiftguard_views_of_superusers', 'ddl_command_end',
                                       ARRAY['CREATE VIEW'], 'shiftguard.views_of_superusers');

SELECT shiftguard.ensure_event_trigger('shiftguard_guard_row_security', 'ddl_command_end',
                                       ARRAY['ALTER TABLE', 'CREATE POLICY', 'ALTER POLICY'],
                                       'shiftguard.guard_row_security');
SELECT shiftguard.ensure_event_trigger('shiftguard_guard_drop', 'sql_drop', NULL, 'shiftguard.guard_drop');
SELECT shiftguard.ensure_event_trigger('shiftguard_guard_inheritance', 'ddl_command_end',
                                       ARRAY['CREATE TABLE', 'ALTER TABLE', 'CREATE FOREIGN TABLE',
                                             'ALTER FOREIGN TABLE'],
                                       'shiftguard.guard_inheritance');

-- Upgrade (run by the proxy after the catalog's SQL, store.py _upgrade_rls_policies): the
-- policies whose functions an older version made another way. The oldest made one that reads
-- tables a SECURITY DEFINER function that every user could call with values of their choosing
-- (see the header); later ones wrote the querying user as session_user, which an admin's
-- ANALYZE running a user's index expression makes the admin, without the reader parameter. The
-- proxy parses each one's predicate again and makes its function anew (rls_redefine); what
-- cannot be carried over is refused until ALTER RLS POLICY gives it again (rls_lost).
CREATE OR REPLACE FUNCTION shiftguard.rls_stale_policies() RETURNS SETOF shiftguard_rows.rls_policies
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.* FROM shiftguard_rows.rls_policies p
     WHERE EXISTS (SELECT FROM pg_proc f
                    WHERE f.proname = 'rls:' || p.name
                      AND f.pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace)
                      AND (f.prosecdef
                           OR (f.proretset AND f.pronargs <> jsonb_array_length(p.columns) + 1)
                           OR (NOT f.proretset AND pg_get_function_sqlbody(f.oid) LIKE '%SESSION_USER%')))
     ORDER BY p.name
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_stale_policies() FROM PUBLIC;

-- What the policy's functions are bound to (pg_depend), and the schemas of those objects.
CREATE OR REPLACE FUNCTION shiftguard.rls_bound_to(p_policy text, OUT objects text[], OUT schemas text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH bound AS (
        SELECT DISTINCT d.refclassid, d.refobjid, d.refobjsubid FROM pg_depend d JOIN pg_proc f ON f.oid = d.objid
         WHERE d.classid = 'pg_proc'::regclass AND d.refclassid <> 'pg_namespace'::regclass
           AND f.proname = 'rls:' || p_policy
           AND f.pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace)),
    spaces AS (
        SELECT DISTINCT CASE b.refclassid
                   WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = b.refobjid)
                   WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = b.refobjid)
                   WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = b.refobjid)
                   WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = b.refobjid) END AS nsp
          FROM bound b)
    SELECT (SELECT array_agg(format('%s %s %s', refclassid, refobjid, refobjsubid) ORDER BY 1) FROM bound),
           (SELECT string_agg(quote_ident(n.nspname), ', ' ORDER BY n.nspname) FROM spaces s
              JOIN pg_namespace n ON n.oid = s.nsp WHERE n.nspname <> 'pg_catalog')
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_bound_to(text) FROM PUBLIC;

-- The policy's function made again from p_policy (the proxy's parse of its stored predicate),
-- its names resolved in the schemas of what the old one was bound to (then checked: bound to
-- the same objects, or the change is undone and rls_lost called), and its tables' row
-- security made again.
CREATE OR REPLACE FUNCTION shiftguard.rls_redefine(p_policy jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name     text := p_policy->>'name';
    v_before   record := shiftguard.rls_bound_to(v_name);
    v_relation oid;
BEGIN
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = v_name LOOP
        PERFORM shiftguard.rls_clear(v_relation, false);
    END LOOP;
    PERFORM shiftguard.rls_define(p_policy, coalesce(v_before.schemas, 'public'));
    IF (SELECT objects FROM shiftguard.rls_bound_to(v_name)) IS DISTINCT FROM v_before.objects THEN
        RAISE EXCEPTION 'its predicate read again binds to other objects';
    END IF;
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = v_name LOOP
        PERFORM shiftguard.rls_sync(v_relation);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_redefine(jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.rls_policy_lost(p_policy text) RETURNS SETOF boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'RLS policy "%" could not be carried over from an older version of shiftguard', p_policy
        USING ERRCODE = '55000', HINT = format('A superuser gives its predicate again: ALTER RLS POLICY %I USING (...)',
                                               p_policy);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_policy_lost(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.rls_policy_lost(text) TO shiftguard_rls;

-- A policy rls_redefine could not carry over: its function (the form that reads tables, so the
-- table's policy calls it through rls@<oid>) raises until ALTER RLS POLICY gives it again; the
-- old ones go unless something else depends on them (then they stay, executable by nobody).
CREATE OR REPLACE FUNCTION shiftguard.rls_lost(p_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_policy   shiftguard_rows.rls_policies;
    v_old      regprocedure;
    v_params   text;
    v_relation oid;
BEGIN
    SELECT * INTO STRICT v_policy FROM shiftguard_rows.rls_policies WHERE name = p_name;
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = p_name LOOP
        PERFORM shiftguard.rls_clear(v_relation, false);
    END LOOP;
    FOR v_old IN SELECT oid FROM pg_proc WHERE proname = 'rls:' || p_name
                    AND pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace) LOOP
        BEGIN
            EXECUTE format('DROP FUNCTION %s', v_old);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_old);
        END;
    END LOOP;
    v_params := (SELECT string_agg(', ' || to_regtype(c->>'type')::text, '' ORDER BY n)
                   FROM jsonb_array_elements(v_policy.columns) WITH ORDINALITY AS x (c, n));
    EXECUTE format('CREATE OR REPLACE FUNCTION shiftguard_rows.%I(pg_catalog.name%s) RETURNS SETOF pg_catalog.bool '
                   'LANGUAGE sql STABLE BEGIN ATOMIC SELECT x FROM shiftguard.rls_policy_lost(%L) AS x; END',
                   'rls:' || p_name, coalesce(v_params, ''), p_name);
    EXECUTE format('ALTER FUNCTION shiftguard_rows.%I(pg_catalog.name%s) OWNER TO shiftguard_rls',
                   'rls:' || p_name, coalesce(v_params, ''));
    EXECUTE format('REVOKE ALL ON FUNCTION shiftguard_rows.%I(pg_catalog.name%s) FROM PUBLIC',
                   'rls:' || p_name, coalesce(v_params, ''));
    FOR v_relation IN SELECT DISTINCT relation FROM shiftguard_rows.rls_attachments WHERE policy = p_name LOOP
        PERFORM shiftguard.rls_sync(v_relation);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.rls_lost(text) FROM PUBLIC;
