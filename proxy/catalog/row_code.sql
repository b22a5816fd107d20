-- Code over the rows of a protected table (docs/row-level-security-and-masking.md).
-- Run after rls.sql and masking.sql.
--
-- PostgreSQL applies row security (and so shiftguard's masking guard) to queries. It does not
-- apply it to what it evaluates over a table's rows by itself: an index build computes its
-- expressions and predicate over every row; adding a CHECK, foreign key or exclusion constraint
-- validates every row; a table rewrite (ALTER COLUMN ... TYPE, a generated or volatile default
-- column) computes every row anew; triggers and rules receive the rows other users write, and
-- a default or a domain's CHECK runs in their statements (where current_query() is their SQL);
-- foreign keys check and act as the table's owner without row security (deleting a key tells
-- whether a hidden row holds it; CASCADE changes hidden rows). A function of the table's owner in any of these sees (and can print, keep or
-- raise) the rows RLS hides from the owner and the raw values of columns masked for it; a
-- built-in one fails with an error that quotes a value (a cast), or counts them (the size of a
-- partial index, the statistics of an expression index). Amazon Redshift has none of these
-- features, so a table with RLS on or masking attached ("protected", row_protection in rls.sql)
-- has none of them either:
--   * RLS ON and ATTACH MASKING POLICY refuse a table that has any (require_no_row_code);
--   * an event trigger at the end of the DDL that could add one (guard_row_code) refuses it on
--     a protected table, also from DO blocks and function bodies: nothing of it has run yet;
--   * a table rewrite of a protected table that computes rows from their values is refused
--     before it reads a row (table_rewrite);
--   * what runs during the command itself (an index build, a constraint's validation, the scan
--     of ATTACH PARTITION) cannot wait for the end: at the start of ALTER TABLE and CREATE INDEX
--     (guard_row_code_start), unless the proxy has judged the statement (below), shiftguard opens
--     an empty cursor on every protected table the user may alter, and PostgreSQL then refuses
--     to ALTER or index those tables ("being used by active queries in this session") before
--     reading a row; the end trigger closes the cursors. Statements from DO blocks and function
--     bodies are never judged by the proxy, so there a protected table cannot be altered or
--     indexed at all (renames, which check no such thing, still work).
-- The proxy refuses the statements it sees with a clearer error (policy/statements.py) and marks
-- each ALTER TABLE and CREATE INDEX it forwards: /*shiftguard:no-row-code*/ when the statement
-- evaluates nothing over rows, /*shiftguard:row-code*/ when it does (it then holds as above:
-- the proxy's list of protected tables may be a moment old, and it reads an unqualified name as
-- public's). It refuses client SQL holding the first mark, so a statement at the top level (no
-- function between it and the client) that carries it, in a message with no second mark, is one
-- the proxy judged.
-- Trusted roles (superusers, the management role) are exempt from the refusals at DDL time:
-- they see every row anyway, and shiftguard's own procedures alter protected tables.

-- What on the relation makes PostgreSQL run code over its rows, one description each (empty:
-- nothing). Functions, operators and types count as a user's unless a trusted role owns them.
CREATE OR REPLACE FUNCTION shiftguard.row_code(p_relation oid) RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('trigger "%s"', tgname) FROM pg_trigger WHERE tgrelid = p_relation AND NOT tgisinternal
       AND tgfoid <> 'shiftguard.note_write()'::regprocedure  -- notes the writing transaction, reads no row
    UNION ALL
    SELECT format('rule "%s"', rulename) FROM pg_rewrite WHERE ev_class = p_relation AND rulename <> '_RETURN'
    UNION ALL
    SELECT format('index "%s" (on expressions or with a WHERE clause)', c.relname)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = p_relation AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
    UNION ALL
    SELECT format('%s "%s"', CASE contype WHEN 'c' THEN 'CHECK constraint' WHEN 'x' THEN 'exclusion constraint'
                                          ELSE 'foreign key' END, conname)
      FROM pg_constraint WHERE conrelid = p_relation AND contype IN ('c', 'x', 'f')
    UNION ALL
    SELECT format('foreign key "%s" of "%s"', n.conname, c.relname)
      FROM pg_constraint n JOIN pg_class c ON c.oid = n.conrelid
     WHERE n.confrelid = p_relation AND n.contype = 'f' AND n.conrelid <> p_relation
    UNION ALL
    SELECT format('generated column "%s"', attname) FROM pg_attribute
     WHERE attrelid = p_relation AND attnum > 0 AND NOT attisdropped AND attgenerated <> ''
    UNION ALL
    SELECT format('the default of column "%s" (it calls %s)', a.attname, pg_describe_object(d.refclassid, d.refobjid, 0))
      FROM pg_attrdef ad
      JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
     WHERE ad.adrelid = p_relation AND a.attgenerated = ''
       AND NOT coalesce(CASE d.refclassid
               WHEN 'pg_proc'::regclass THEN (SELECT shiftguard.trusted_role(proowner) FROM pg_proc WHERE oid = d.refobjid)
               WHEN 'pg_operator'::regclass THEN (SELECT shiftguard.trusted_role(oprowner) FROM pg_operator
                                                    WHERE oid = d.refobjid)
               WHEN 'pg_type'::regclass THEN (SELECT shiftguard.trusted_role(typowner) FROM pg_type WHERE oid = d.refobjid)
               ELSE true END, false)
    UNION ALL
    SELECT format('column "%s" of the type %s', a.attname, format_type(a.atttypid, a.atttypmod))
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
       AND NOT (shiftguard.trusted_role(t.typowner) AND (e.oid IS NULL OR shiftguard.trusted_role(e.typowner)))
    UNION ALL
    SELECT format('statistics object "%s" (on expressions)', stxname) FROM pg_statistic_ext
     WHERE stxrelid = p_relation AND stxexprs IS NOT NULL
$$;
GRANT EXECUTE ON FUNCTION shiftguard.row_code(oid) TO PUBLIC;  -- it reads only what the catalogs show anyone

-- The sentence that lists them (the first ten), or NULL.
CREATE OR REPLACE FUNCTION shiftguard.row_code_list(p_relation oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(what, ', ' ORDER BY n) FILTER (WHERE n <= 10) || CASE WHEN count(*) > 10 THEN ', ...' ELSE '' END
      FROM (SELECT what, row_number() OVER (ORDER BY what) AS n FROM shiftguard.row_code(p_relation) AS what) x
$$;
GRANT EXECUTE ON FUNCTION shiftguard.row_code_list(oid) TO PUBLIC;

-- ROW LEVEL SECURITY ON or ATTACH MASKING POLICY on a table that has any: refused. The caller
-- has locked the table (require_no_inheritance), as every DDL that adds one locks it, so what is
-- seen here is all there is, and what comes later sees the protection (guard_row_code).
CREATE OR REPLACE FUNCTION shiftguard.require_no_row_code(p_relation oid, p_feature text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_list text := shiftguard.row_code_list(p_relation);
BEGIN
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION '% cannot be used on "%": it has %', p_feature,
            (SELECT relname FROM pg_class WHERE oid = p_relation), v_list
            USING ERRCODE = '0A000',
                  DETAIL = 'PostgreSQL runs these over every row of the table, or over the rows other users write, '
                           'whatever row-level security and masking hide from the code''s owner.',
                  HINT = 'Drop them first; Amazon Redshift has no triggers, rules, CHECK or foreign key constraints '
                         '(enforced), indexes, generated columns or user-defined types.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.require_no_row_code(oid, text) FROM PUBLIC;

-- May the role alter (or index) a protected table: does it have the privileges of the owner of one?
-- The tables RLS policies read (their lookup tables): held as protected tables are (below),
-- so that CREATE INDEX CONCURRENTLY, which commits an index before the end of the command can
-- refuse it, cannot give one code the planner runs (read_code).
CREATE OR REPLACE FUNCTION shiftguard.rls_lookup_tables() RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT d.refobjid FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
     WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass
       AND p.pronamespace IN ('shiftguard'::regnamespace, 'shiftguard_rows'::regnamespace) AND p.proname LIKE 'rls:%'
$$;
GRANT EXECUTE ON FUNCTION shiftguard.rls_lookup_tables() TO PUBLIC;  -- (what pg_depend shows anyone)

CREATE OR REPLACE FUNCTION shiftguard.alters_protected(p_role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_class c
                    WHERE c.oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                                    UNION SELECT relation FROM shiftguard_rows.masking_attachments
                                    UNION SELECT shiftguard.rls_lookup_tables())
                      AND pg_has_role(p_role, c.relowner, 'USAGE'))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.alters_protected(oid) TO PUBLIC;

-- An empty cursor on each protected table the role may alter (see the top of this file): until
-- it is closed, PostgreSQL refuses ALTER TABLE and CREATE INDEX on the table in this session.
-- Opened as shiftguard (no privilege or row security of the user's applies; LIMIT 0 returns
-- nothing, runs nothing, and keeps the scan open). Anyone may call it: it holds tables in the
-- caller's own session only.
DROP FUNCTION IF EXISTS shiftguard.hold_protected(oid);
CREATE OR REPLACE FUNCTION shiftguard.hold_protected(p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the caller's own tables (by key: schema.sql caller_key; a role named by its caller let
    -- anyone hold every protected table of the management role's, holding up their owners)
    v_role     oid := (SELECT oid FROM pg_roles WHERE rolname = shiftguard.caller_of(p_key));
    v_relation oid;
    v_cursor   refcursor;
BEGIN
    FOR v_relation IN SELECT c.oid FROM pg_class c
                       WHERE c.oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                                       UNION SELECT relation FROM shiftguard_rows.masking_attachments
                                       UNION SELECT shiftguard.rls_lookup_tables())
                         AND pg_has_role(v_role, c.relowner, 'USAGE') LOOP
        -- A name of our own each time: a cursor the user named like ours holds nothing of ours.
        v_cursor := 'shiftguard hold ' || gen_random_uuid();
        OPEN v_cursor FOR EXECUTE format('SELECT FROM ONLY %s LIMIT 0', v_relation::regclass);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.hold_protected(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.release_protected() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN SELECT name FROM pg_cursors WHERE name LIKE 'shiftguard hold %' LOOP
        EXECUTE format('CLOSE %I', v_name);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.release_protected() TO PUBLIC;

-- The text of the statements that a DDL command runs inside, from the error context (the SQL
-- statement lines of PL/pgSQL and other languages' SPI calls) and the bodies of the SQL
-- functions it names (whose lines hold no text). NULL when a SQL function of the context cannot
-- be found (fail closed).
CREATE OR REPLACE FUNCTION shiftguard.context_text(p_context text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name   text;
    v_bodies text;
    v_text   text := p_context;
BEGIN
    FOR v_name IN SELECT (regexp_matches(line, '^SQL function "(.*)" (statement [0-9]+|during startup)$'))[1]
                    FROM regexp_split_to_table(p_context, chr(10)) AS line LOOP
        SELECT string_agg(prosrc, chr(10)) INTO v_bodies FROM pg_proc WHERE proname = v_name;
        IF v_bodies IS NULL THEN
            RETURN NULL;
        END IF;
        v_text := v_text || chr(10) || v_bodies;
    END LOOP;
    RETURN v_text;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.context_text(text) TO PUBLIC;

-- The first protected table that the role may alter and that p_text names (as a word of its
-- own, or quoted), with why it is protected; NULL when none. Over-approximate by design: a word
-- in a string or a comment counts, and so does any Unicode-escaped name (U&"...").
CREATE OR REPLACE FUNCTION shiftguard.protected_named(p_role oid, p_text text, OUT relation oid, OUT protection text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.oid, shiftguard.row_protection(c.oid) FROM pg_class c
     WHERE c.oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                     UNION SELECT relation FROM shiftguard_rows.masking_attachments)
       AND pg_has_role(p_role, c.relowner, 'USAGE')
       AND (strpos(lower(p_text), 'u&') > 0
            OR strpos(p_text, '"' || replace(c.relname, '"', '""') || '"') > 0
            OR lower(c.relname) IN (SELECT w FROM regexp_split_to_table(lower(p_text), '[^[:alnum:]_$]+') AS w)
            OR (octet_length(c.relname) >= 63  -- longer names are cut to the first 63 bytes
                AND EXISTS (SELECT FROM regexp_split_to_table(lower(p_text), '[^[:alnum:]_$]+') AS w
                             WHERE left(w, length(c.relname)) = lower(c.relname))))
     ORDER BY c.oid LIMIT 1
$$;
GRANT EXECUTE ON FUNCTION shiftguard.protected_named(oid, text) TO PUBLIC;

-- At the start of ALTER TABLE and CREATE INDEX, as whoever ran it (see the top of this file).
CREATE OR REPLACE FUNCTION shiftguard.guard_row_code_start() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_role    oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    v_context text;
    v_text    text;
    v_named   record;
BEGIN
    IF shiftguard.trusted_role(v_role) OR NOT shiftguard.alters_protected(v_role) THEN
        RETURN;
    END IF;
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    IF strpos(v_context, chr(10)) = 0 THEN
        -- At the top level: the SQL the proxy sent, all of the message.
        v_text := current_query();
        IF strpos(v_text, '/*shiftguard:no-row-code*/') > 0 AND strpos(v_text, '/*shiftguard:row-code*/') = 0 THEN
            RETURN;
        END IF;
    ELSE
        v_text := shiftguard.context_text(v_context);
    END IF;
    IF tg_tag = 'ALTER TABLE' THEN
        -- ATTACH PARTITION reads the table it attaches (validates it, builds the parent's indexes
        -- on it, validates the parent's foreign keys), and that table is not the one altered.
        IF v_text IS NULL THEN
            RAISE EXCEPTION 'shiftguard cannot tell which tables this ALTER TABLE links, inside a SQL function it cannot find'
                USING ERRCODE = '0A000';
        END IF;
        IF EXISTS (SELECT FROM regexp_split_to_table(lower(v_text), '[^[:alnum:]_$]+') AS w
                    WHERE w IN ('attach', 'inherit')) THEN
            SELECT * INTO v_named FROM shiftguard.protected_named(v_role, v_text);
            IF v_named.relation IS NOT NULL THEN
                RAISE EXCEPTION 'table "%" has %: it cannot take part in table inheritance or partitioning',
                    (SELECT relname FROM pg_class WHERE oid = v_named.relation), v_named.protection
                    USING ERRCODE = '0A000',
                          DETAIL = 'Rows read through a parent table, or a partition read directly, would escape its '
                                   'row-level security and masking; attaching a partition reads all its rows.',
                          HINT = 'Amazon Redshift has no table inheritance or partitioning.';
            END IF;
        END IF;
    END IF;
    PERFORM shiftguard.hold_protected(shiftguard.caller_key());
END
$$;

-- A rewrite of a protected table that computes its rows anew from their values (the USING
-- expression or the cast of ALTER COLUMN ... TYPE, a generated column) is refused before it
-- reads a row. Rewrites that compute nothing from the rows (SET LOGGED | UNLOGGED, SET ACCESS
-- METHOD, a column added with a volatile default such as a sequence's) are not: a default sees
-- no column, and one calling a user's function is refused at the end (guard_row_code).
CREATE OR REPLACE FUNCTION shiftguard.guard_row_code_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relation   oid := pg_event_trigger_table_rewrite_oid();
    v_reason     integer := pg_event_trigger_table_rewrite_reason();
    v_protection text := shiftguard.row_protection(v_relation);
BEGIN
    IF v_protection IS NULL OR shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
        RETURN;
    END IF;
    IF (v_reason & 4) = 0 AND ((v_reason & 2) = 0 OR NOT EXISTS (
            SELECT FROM pg_attribute WHERE attrelid = v_relation AND attnum > 0 AND NOT attisdropped
               AND attgenerated <> '')) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'table "%" has %: it cannot be rewritten (a column''s type changed, a generated column added)',
        (SELECT relname FROM pg_class WHERE oid = v_relation), v_protection
        USING ERRCODE = '0A000',
              DETAIL = 'A rewrite computes every row anew, including the rows row-level security hides and the raw '
                       'values of masked columns, and its errors quote them.',
              HINT = 'Amazon Redshift changes a column''s type only to a longer VARCHAR, which needs no rewrite.';
END
$$;

-- The names the proxies know the protected tables by (rls_tables(), masked_tables()) moved: an
-- ALTER TABLE ... RENAME | SET SCHEMA or ALTER SCHEMA ... RENAME. Then the version they poll
-- moves. Anyone may call it: it moves the version only when the names differ from the last seen.
INSERT INTO shiftguard_rows.settings VALUES ('protected_names', '') ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION shiftguard.protected_names_moved() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_names text := (SELECT md5(coalesce(string_agg(format('%s %s %s', c.oid, c.relnamespace, c.relname), ',' ORDER BY c.oid), ''))
                       FROM pg_class c
                      WHERE c.oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                                      UNION SELECT relation FROM shiftguard_rows.masking_attachments))
                    || (SELECT md5(coalesce(string_agg(format('%s %s', n.oid, n.nspname), ',' ORDER BY n.oid), ''))
                          FROM pg_namespace n
                         WHERE n.oid IN (SELECT relnamespace FROM pg_class
                                          WHERE oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                                                        UNION SELECT relation FROM shiftguard_rows.masking_attachments)));
BEGIN
    UPDATE shiftguard_rows.settings SET value = v_names WHERE name = 'protected_names' AND value IS DISTINCT FROM v_names;
    IF FOUND THEN
        PERFORM shiftguard.mask_bump();
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.protected_names_moved() TO PUBLIC;

-- The table a DDL command's object is of: the table itself, or the index's, the trigger's, the
-- rule's, the statistics object's.
CREATE OR REPLACE FUNCTION shiftguard.ddl_relation(p_classid oid, p_objid oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_classid
        WHEN 'pg_class'::regclass THEN coalesce((SELECT indrelid FROM pg_index WHERE indexrelid = p_objid), p_objid)
        WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = p_objid)
        WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = p_objid)
        WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = p_objid) END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.ddl_relation(oid, oid) TO PUBLIC;

-- What of a table's own code PostgreSQL evaluates when it plans a query that reads it, as
-- whoever runs the query: its index expressions and predicates, CHECK constraints (constraint
-- exclusion) and statistics on expressions, simplified where their functions are IMMUTABLE
-- (eval_const_expressions), and all of these of its inheritance children and partitions. An
-- RLS policy reads its lookup tables as shiftguard_rls (rls.sql): a lookup table has none of
-- them (rls_define, guard_row_code), or its owner's functions would run as shiftguard_rls.
CREATE OR REPLACE FUNCTION shiftguard.read_code(p_relation oid) RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('index "%s" (on expressions or with a WHERE clause)', c.relname)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = p_relation AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
    UNION ALL
    SELECT format('CHECK constraint "%s"', conname) FROM pg_constraint WHERE conrelid = p_relation AND contype = 'c'
    UNION ALL
    SELECT format('statistics object "%s" (on expressions)', stxname) FROM pg_statistic_ext
     WHERE stxrelid = p_relation AND stxexprs IS NOT NULL
    UNION ALL
    SELECT 'a part in table inheritance or partitioning'
     WHERE (SELECT relkind = 'p' FROM pg_class WHERE oid = p_relation)
        OR EXISTS (SELECT FROM pg_inherits WHERE p_relation IN (inhrelid, inhparent))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.read_code(oid) TO PUBLIC;  -- it reads only what the catalogs show anyone

-- A table an RLS policy reads that has any of read_code: refused, naming the policy.
CREATE OR REPLACE FUNCTION shiftguard.require_no_read_code(p_relation oid, p_policy text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_list text := (SELECT string_agg(what, ', ' ORDER BY what) FROM shiftguard.read_code(p_relation) AS what);
BEGIN
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'table "%", which RLS policy "%" reads, cannot have %',
            (SELECT relname FROM pg_class WHERE oid = p_relation), p_policy, v_list
            USING ERRCODE = '0A000',
                  DETAIL = 'PostgreSQL evaluates them when it plans a query of the table, and the policy reads it '
                           'as a role of shiftguard''s: a function in them would run with that role''s rights.',
                  HINT = 'Amazon Redshift has no indexes, CHECK constraints (enforced) or table inheritance.';
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.require_no_read_code(oid, text) TO PUBLIC;

-- The protected tables a DDL command's object concerns: the table (or the index's, the
-- trigger's, the rule's, the statistics object's) and the tables its foreign keys reference.
CREATE OR REPLACE FUNCTION shiftguard.row_code_targets(p_classid oid, p_objid oid) RETURNS SETOF oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relation oid;
BEGIN
    v_relation := shiftguard.ddl_relation(p_classid, p_objid);
    RETURN QUERY SELECT DISTINCT r FROM (SELECT v_relation AS r
                                        UNION ALL
                                        SELECT confrelid FROM pg_constraint WHERE conrelid = v_relation AND contype = 'f') x
                  WHERE r IS NOT NULL AND shiftguard.row_protection(r) IS NOT NULL;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.row_code_targets(oid, oid) TO PUBLIC;

-- At the end of the DDL that could give a table code over its rows, as whoever ran it: the
-- cursors of guard_row_code_start closed; a protected table that now has any refused (nothing
-- of it has run: a trigger or rule fires for later statements, a default or a CHECK for later
-- rows; what runs during the command was held off at its start). Also: names moved.
CREATE OR REPLACE FUNCTION shiftguard.guard_row_code() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command  record;
    v_relation oid;
    v_list     text;
    v_policy   text;
BEGIN
    PERFORM shiftguard.release_protected();
    IF current_user::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard') THEN
        RETURN;  -- our own procedures (rename_relation moves the names itself)
    END IF;
    IF tg_tag IN ('ALTER TABLE', 'ALTER SCHEMA') THEN
        PERFORM shiftguard.protected_names_moved();
    END IF;
    IF shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
        RETURN;
    END IF;
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        -- PostgreSQL 15 turns an empty table into a view given an ON SELECT rule: whatever read
        -- the table by its oid (an RLS policy's lookup, a view) would run its owner's query, and
        -- the functions in it, as the reader (shiftguard_rls, for a lookup table).
        IF v_command.classid = 'pg_rewrite'::regclass
                AND (SELECT ev_type FROM pg_rewrite WHERE oid = v_command.objid) = '1' THEN
            RAISE EXCEPTION 'a table cannot be turned into a view by CREATE RULE ... ON SELECT; use CREATE VIEW'
                USING ERRCODE = '0A000', HINT = 'Amazon Redshift has no rules.';
        END IF;
        -- the lookup tables of RLS policies it concerns (the table, its parents and children)
        FOR v_relation IN SELECT r FROM (SELECT shiftguard.ddl_relation(v_command.classid, v_command.objid) AS r) x
                          UNION SELECT i.inhparent FROM pg_inherits i
                           WHERE i.inhrelid = shiftguard.ddl_relation(v_command.classid, v_command.objid)
                          UNION SELECT i.inhrelid FROM pg_inherits i
                           WHERE i.inhparent = shiftguard.ddl_relation(v_command.classid, v_command.objid) LOOP
            v_policy := shiftguard.rls_policy_reading('table', v_relation);
            IF v_policy IS NOT NULL THEN
                PERFORM shiftguard.require_no_read_code(v_relation, v_policy);
            END IF;
        END LOOP;
        FOR v_relation IN SELECT * FROM shiftguard.row_code_targets(v_command.classid, v_command.objid) LOOP
            v_list := shiftguard.row_code_list(v_relation);
            IF v_list IS NOT NULL THEN
                RAISE EXCEPTION 'table "%" has %: it cannot have %', (SELECT relname FROM pg_class WHERE oid = v_relation),
                    shiftguard.row_protection(v_relation), v_list
                    USING ERRCODE = '0A000',
                          DETAIL = 'PostgreSQL would run them over every row of the table, or over the rows other users '
                                   'write, whatever row-level security and masking hide from their owner.',
                          HINT = 'Amazon Redshift has no triggers, rules, CHECK or foreign key constraints (enforced), '
                                 'indexes, generated columns or user-defined types.';
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Protected tables that have code over their rows already (protected by an older version, or
-- given it by a superuser): the proxy logs them at start, for an admin to drop.
CREATE OR REPLACE FUNCTION shiftguard.protected_row_code() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%s: %s', c.oid::regclass, shiftguard.row_code_list(c.oid)) FROM pg_class c
     WHERE c.oid IN (SELECT relation FROM shiftguard_rows.rls_relations WHERE enabled
                     UNION SELECT relation FROM shiftguard_rows.masking_attachments)
       AND shiftguard.row_code_list(c.oid) IS NOT NULL
     ORDER BY c.oid
$$;
REVOKE ALL ON FUNCTION shiftguard.protected_row_code() FROM PUBLIC;

SELECT shiftguard.ensure_event_trigger('shiftguard_guard_row_code_start', 'ddl_command_start',
                                       ARRAY['ALTER TABLE', 'CREATE INDEX'], 'shiftguard.guard_row_code_start');
SELECT shiftguard.ensure_event_trigger('shiftguard_guard_row_code_rewrite', 'table_rewrite', NULL,
                                       'shiftguard.guard_row_code_rewrite');
SELECT shiftguard.ensure_event_trigger('shiftguard_guard_row_code', 'ddl_command_end',
                                       ARRAY['ALTER TABLE', 'CREATE INDEX', 'CREATE TABLE', 'CREATE TRIGGER',
                                             'CREATE RULE', 'CREATE STATISTICS', 'ALTER SCHEMA'],
                                       'shiftguard.guard_row_code');
