-- Materialized views in Redshift's form (policy/dialect.py takes out BACKUP, DISTSTYLE, DISTKEY,
-- SORTKEY and AUTO REFRESH): PostgreSQL's own materialized views, so PostgreSQL checks SELECT on
-- them, GRANT and REVOKE work as on tables, and REFRESH is the owner's only. Their attributes are
-- a table's (table_attributes: svv_table_info, pg_table_def, the pg_class and pg_attribute
-- views), with the statement as written and the last refresh; svv_mv_info and stv_mv_info show
-- them, and pg_views and information_schema.views list them with that statement as their
-- definition, as Redshift's do (dbt finds materialized views there). And the writes of tables,
-- which both their staleness and SYS_QUERY_DETAIL (dbt's source freshness from metadata) read.
-- Run after schema.sql.
--
-- Writes. The base tables of materialized views get a statement trigger (shiftguard_writes), when
-- a view over them is made or refreshed, that notes which transaction wrote them, when, as whom,
-- and whether it inserted or deleted (table_writes): the last of each kind, and those a view's
-- last refresh missed. Only those: the trigger costs every write statement of its table
-- (pgbench's transactions ran at 55-60% of their rate with it on its tables).
--
-- Staleness. A view is stale when a base table was written by a transaction its last refresh
-- could not see (not visible in the snapshot taken before the refresh), or by the refreshing
-- transaction after the refresh; 'u' (unknown, as Redshift says of views over external tables)
-- when a base table is not tracked (a foreign table, or its owner dropped the trigger); 't'
-- always when the query calls a function that is not immutable, as Redshift documents.
-- AUTO REFRESH YES: the proxy refreshes the stale ones itself, as Redshift does "on its own
-- schedule": at once after a write to a base table commits (request_refresh), and at each poll
-- (server.py) in the cluster database. UNVERIFIED when Redshift would.

CREATE TABLE IF NOT EXISTS shiftguard_rows.table_writes (
    table_id   oid NOT NULL,
    xid        xid8 NOT NULL,
    step_name  text NOT NULL,  -- Redshift's: 'insert' (INSERT, COPY, UPDATE's new rows), 'delete'
    written_at timestamptz NOT NULL,
    user_id    oid NOT NULL,
    restamp    boolean NOT NULL DEFAULT false,  -- a refresh in the transaction saw it: stamp the next write
    PRIMARY KEY (table_id, xid, step_name)
);
REVOKE ALL ON shiftguard_rows.table_writes FROM PUBLIC;
-- Which materialized views refresh themselves, read at every write (note_write): an index of the
-- few, made only where missing (making it locks the table).
DO $$ BEGIN
    IF to_regclass('shiftguard_rows.table_attributes_autorefresh') IS NULL THEN
        CREATE INDEX table_attributes_autorefresh ON shiftguard_rows.table_attributes (table_id)
            WHERE attrs @> '{"autorefresh": true}';
    END IF;
END $$;

-- The relations a materialized view reads, through the views it reads (not late-binding ones,
-- which name their tables only when run).
CREATE OR REPLACE FUNCTION shiftguard.mv_bases(p_view oid) RETURNS TABLE (table_id oid, kind "char")
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE reads(relation, kind) AS (
        SELECT p_view, 'm'::"char"
        UNION
        SELECT d.refobjid, c.relkind
          FROM reads JOIN pg_rewrite r ON r.ev_class = reads.relation
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> reads.relation
          JOIN pg_class c ON c.oid = d.refobjid
         WHERE reads.relation = p_view OR reads.kind = 'v'
    )
    SELECT relation, kind FROM reads WHERE relation <> p_view AND kind IN ('r', 'p', 'm', 'f')
$$;

-- Forget p_table's writes that nothing needs: those of finished transactions that a later
-- finished write of the same step follows (sys_query_detail keeps the last of each) and that no
-- materialized view's last refresh missed (is_stale reads those). Rows another transaction is
-- forgetting are skipped, never waited for.
CREATE OR REPLACE FUNCTION shiftguard.forget_writes(p_table oid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM shiftguard_rows.table_writes w WHERE w.ctid = ANY (ARRAY(
        SELECT o.ctid FROM shiftguard_rows.table_writes o
         WHERE o.table_id = p_table AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
           AND EXISTS (SELECT FROM shiftguard_rows.table_writes n
                        WHERE n.table_id = p_table AND n.step_name = o.step_name AND n.written_at > o.written_at
                          AND n.xid < pg_snapshot_xmin(pg_current_snapshot()))
           AND NOT EXISTS (SELECT FROM shiftguard_rows.table_attributes a
                            WHERE a.attrs ? 'refreshed_snapshot'
                              AND p_table IN (SELECT table_id FROM shiftguard.mv_bases(a.table_id))
                              AND NOT pg_visible_in_snapshot(o.xid, (a.attrs->>'refreshed_snapshot')::pg_snapshot))
           FOR UPDATE SKIP LOCKED))
$$;
REVOKE ALL ON FUNCTION shiftguard.forget_writes(oid) FROM PUBLIC;

-- The writes of tables that no longer exist go too (rls.sql guard_drop; anyone may: it only
-- tidies): every table is tracked, and dbt drops one or two at each run of a table model; a
-- later table given a dropped one's OID would show its writes. Rows another transaction is
-- forgetting are skipped, never waited for.
CREATE OR REPLACE FUNCTION shiftguard.table_writes_forget_dropped() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM shiftguard_rows.table_writes w WHERE w.ctid = ANY (ARRAY(
        SELECT o.ctid FROM shiftguard_rows.table_writes o WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = o.table_id)
           FOR UPDATE SKIP LOCKED))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.table_writes_forget_dropped() TO PUBLIC;

-- Note a write of p_table by this transaction, once per step: the time of its first write (of
-- the first again after a refresh in it saw the ones before). Only the transaction's own rows
-- are written, so writers of one table never wait for each other, and each row once (a row
-- updated by every statement of a long transaction would grow a chain of versions that each
-- next statement walks). Whether a row was written.
CREATE OR REPLACE FUNCTION shiftguard.note_writes(p_table oid, p_steps text[]) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rows integer;
BEGIN
    INSERT INTO shiftguard_rows.table_writes (table_id, xid, step_name, written_at, user_id)
    SELECT p_table, pg_current_xact_id(), step, clock_timestamp(), (SELECT oid FROM pg_roles WHERE rolname = session_user)
      FROM unnest(p_steps) step
        ON CONFLICT (table_id, xid, step_name) DO UPDATE SET written_at = excluded.written_at, restamp = false
     WHERE shiftguard_rows.table_writes.restamp;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows > 0;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.note_writes(oid, text[]) FROM PUBLIC;

-- The databases whose AUTO REFRESH views may be stale, for the proxy to look at (catalog/store.py
-- refresh_stale_views). One queue for the cluster (store.py CLUSTER_TABLES): a write in another
-- database adds its name through the foreign table, and the trigger's NOTIFY, sent in the
-- cluster database where the row is written, wakes the proxy when the write commits (a NOTIFY
-- sent in another database reaches no listener). No unique key: a request is made in the
-- transaction of the write (or view) that asks, and one waiting on another's key would wait
-- for that transaction to end, which a user may leave open (every write of a base table of an
-- AUTO REFRESH view, by anyone, waited behind it). A request already visible is not made again.
CREATE TABLE IF NOT EXISTS shiftguard_rows.refresh_requests (
    database name NOT NULL
);
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'shiftguard_rows.refresh_requests'::regclass) = 'r' THEN
        ALTER TABLE shiftguard_rows.refresh_requests DROP CONSTRAINT IF EXISTS refresh_requests_pkey;
    END IF;
END
$$;
REVOKE ALL ON shiftguard_rows.refresh_requests FROM PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.refresh_requested() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('shiftguard_mv_refresh', '');  -- delivered at commit
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.refresh_requested() FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'shiftguard_rows.refresh_requests'::regclass) = 'r'
       AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'wake_proxy'
                          AND tgrelid = 'shiftguard_rows.refresh_requests'::regclass) THEN
        CREATE TRIGGER wake_proxy AFTER INSERT ON shiftguard_rows.refresh_requests
            FOR EACH STATEMENT EXECUTE FUNCTION shiftguard.refresh_requested();
    END IF;
END
$$;

-- This database's AUTO REFRESH views may be stale: the proxy looks at them when the caller's
-- transaction commits. Anyone may ask (ALTER ... AUTO REFRESH YES runs as its caller), as anyone
-- may NOTIFY: the proxy refreshes only views that are stale, and each database is queued once
-- (but by transactions at the same time: the proxy takes them all at once).
CREATE OR REPLACE FUNCTION shiftguard.request_refresh() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO shiftguard_rows.refresh_requests (database) SELECT current_database()
     WHERE NOT EXISTS (SELECT FROM shiftguard_rows.refresh_requests WHERE database = current_database())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.request_refresh() TO PUBLIC;

-- The statement trigger on tracked tables (track_writes). UPDATE is a delete and an insert, as
-- Redshift's steps are; TRUNCATE deletes. Past a transaction's first write of the table it
-- costs one lookup.
CREATE OR REPLACE FUNCTION shiftguard.note_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF shiftguard.note_writes(TG_RELID, CASE TG_OP WHEN 'INSERT' THEN ARRAY['insert']
                                                   WHEN 'UPDATE' THEN ARRAY['delete', 'insert']
                                                   ELSE ARRAY['delete'] END) THEN
        IF random() < 0.02 THEN  -- now and then: forgetting at every transaction halved pgbench's rate
            PERFORM shiftguard.forget_writes(TG_RELID);
        END IF;
        IF EXISTS (SELECT FROM shiftguard_rows.table_attributes a
                    WHERE a.attrs @> '{"autorefresh": true}'
                      AND TG_RELID IN (SELECT table_id FROM shiftguard.mv_bases(a.table_id))) THEN
            PERFORM shiftguard.request_refresh();
        END IF;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.note_write() FROM PUBLIC;

-- Track p_table's writes (a base table of a materialized view: mv_refreshed). Creating a trigger
-- needs the table's owner or a superuser, and shiftguard's guards refuse triggers on some
-- tables: a table it cannot track stays untracked (its views' is_stale 'u', no rows in
-- sys_query_detail), and the statement goes on. Creating a trigger rewrites the table's pg_class
-- row, which a concurrent ANALYZE may be writing too ("tuple concurrently updated"): tried again.
-- So does the grant a superuser's view over the table gives shiftguard_views
-- (rls.sql lend_to_views_role): the same lock per table keeps the two apart (dbt's threads make a
-- view and a materialized view over one table at once); mv_refreshed takes them in its order.
--   Made in the caller's transaction only where the caller owns the table (or is shiftguard or a
-- superuser): CREATE TRIGGER's lock (SHARE ROW EXCLUSIVE) and the table's object_locks row last to
-- the transaction's end, and a user who may only read a table, making a materialized view over it
-- in a transaction left open, would stop its owner's writes for as long as they liked. For
-- another's table the trigger is asked for (track_requests) and the proxy makes it in a short
-- transaction of its own, once the caller's commits (track_requested). Until then the view is
-- 'u'. A write committed between the view's refresh and the trigger is not noted, and that
-- time is not the proxy's to keep short: the table's owner may be writing it in a transaction
-- held open (its lock keeps the trigger out until it commits), and nor is a write while the
-- table's owner had dropped the trigger. So the transaction that made the trigger is kept
-- (tracked, whoever made it), and a view whose last refresh did not see that transaction is
-- stale (mv_is_stale).
--   No unique key: a request waiting on another's (a key the other's open transaction inserted)
-- would hold the caller's CREATE MATERIALIZED VIEW and REFRESH until that transaction ended, and
-- the proxy's tracking on a row the caller locked. A request already visible is not made again
-- (concurrent ones may be: the proxy takes each table once).
CREATE TABLE IF NOT EXISTS shiftguard_rows.track_requests (
    table_id oid NOT NULL,  -- of this database
    tracked  xid8,          -- the transaction that made the trigger (track_writes); NULL: asked for
    tried    timestamptz    -- when the proxy last found the table locked
);
ALTER TABLE shiftguard_rows.track_requests DROP CONSTRAINT IF EXISTS track_requests_pkey,
    ADD COLUMN IF NOT EXISTS tracked xid8, ADD COLUMN IF NOT EXISTS tried timestamptz;
CREATE INDEX IF NOT EXISTS track_requests_table ON shiftguard_rows.track_requests (table_id);
REVOKE ALL ON shiftguard_rows.track_requests FROM PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.track_writes__keyed(p_table oid, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p_table AND tgname = 'shiftguard_writes') THEN
        RETURN;
    END IF;
    IF NOT (shiftguard.role_is_superuser(v_caller)
            OR v_caller::text = (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shiftguard')
            OR pg_has_role(v_caller, (SELECT relowner FROM pg_class WHERE oid = p_table), 'USAGE')) THEN
        INSERT INTO shiftguard_rows.track_requests (table_id) SELECT p_table
         WHERE NOT EXISTS (SELECT FROM shiftguard_rows.track_requests WHERE table_id = p_table AND tracked IS NULL);
        PERFORM shiftguard.request_refresh();  -- wakes the proxy when the caller's transaction commits
        RETURN;
    END IF;
    PERFORM shiftguard.lock_object('lend_to_views_role', p_table);
    FOR v_attempt IN 1..5 LOOP
        IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p_table AND tgname = 'shiftguard_writes') THEN
            RETURN;
        END IF;
        BEGIN
            EXECUTE format('CREATE TRIGGER shiftguard_writes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION shiftguard.note_write()', p_table::regclass);
            -- From this transaction on, the table's writes are noted (mv_is_stale).
            DELETE FROM shiftguard_rows.track_requests WHERE table_id = p_table AND tracked IS NOT NULL;
            INSERT INTO shiftguard_rows.track_requests (table_id, tracked) VALUES (p_table, pg_current_xact_id());
            RETURN;
        EXCEPTION WHEN internal_error THEN
            PERFORM pg_sleep(0.01 * v_attempt);
        WHEN OTHERS THEN
            RETURN;
        END;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.track_writes__keyed(oid, text) FROM PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is track_writes__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.track_writes(p_table oid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.track_writes__keyed($1, shiftguard.caller_key()) $$;
REVOKE ALL ON FUNCTION shiftguard.track_writes(oid) FROM PUBLIC;

-- The proxy's (catalog/store.py track_requested): the tables whose triggers are asked for, the
-- longest waiting first (those found locked go to the back: a user's many tables held locked
-- keep no one else's waiting); requests of tables dropped since are forgotten.
DROP FUNCTION IF EXISTS shiftguard.track_requested();
CREATE OR REPLACE FUNCTION shiftguard.track_requests_pending() RETURNS SETOF oid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM shiftguard_rows.track_requests r WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = r.table_id);
    RETURN QUERY SELECT table_id FROM shiftguard_rows.track_requests WHERE tracked IS NULL
                  GROUP BY table_id ORDER BY min(tried) NULLS FIRST, table_id;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.track_requests_pending() FROM PUBLIC;
-- The proxy's, each table in a short transaction of its own: its lock (SHARE ROW EXCLUSIVE) is
-- held only while its trigger is made, never while the proxy waits for another table's. A
-- table whose lock someone holds is left asked for, after a wait of at most 100 ms (writers
-- queued behind the proxy's request wait as long): false. One that cannot be tracked
-- (track_writes), or is tracked already, is not asked for again.
CREATE OR REPLACE FUNCTION shiftguard.track_requested(p_table oid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM set_config('lock_timeout', '100ms', true);
    BEGIN
        IF (SELECT relkind FROM pg_class WHERE oid = p_table) IN ('r', 'p')
           AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p_table AND tgname = 'shiftguard_writes') THEN
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p_table::regclass);
            PERFORM shiftguard.track_writes(p_table);
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        UPDATE shiftguard_rows.track_requests SET tried = clock_timestamp() WHERE table_id = p_table AND tracked IS NULL;
        RETURN false;
    WHEN OTHERS THEN
        NULL;
    END;
    DELETE FROM shiftguard_rows.track_requests WHERE table_id = p_table AND tracked IS NULL;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.track_requested(oid) FROM PUBLIC;

-- With cluster.track_table_writes on (the cluster's setting, copied into every database), every
-- table made from then on is tracked from its making (sys_query_detail: dbt's source freshness
-- from metadata reads when a table was last written): CREATE TABLE, and CREATE TABLE AS and
-- SELECT INTO, whose rows, written before the trigger exists, count as the making transaction's
-- insert. Not temporary tables, nor shiftguard's own. Off (the default: the trigger costs every
-- write statement), and for tables made before, a table is tracked once a materialized view
-- reads it (mv_refreshed).
CREATE OR REPLACE FUNCTION shiftguard.track_new_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
BEGIN
    IF session_user = shiftguard.management_role()
       OR (SELECT value FROM shiftguard_rows.settings WHERE name = 'track_table_writes') IS DISTINCT FROM 'on' THEN
        RETURN;  -- shiftguard's own tables, or cluster.track_table_writes is off
    END IF;
    FOR v_command IN SELECT d.objid, d.command_tag FROM pg_event_trigger_ddl_commands() d
                       JOIN pg_class c ON c.oid = d.objid
                      WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND c.relkind IN ('r', 'p')
                        AND c.relpersistence <> 't' AND c.relnamespace::regnamespace::text NOT LIKE 'shiftguard%' LOOP
        PERFORM shiftguard.track_writes__keyed(v_command.objid,  -- for the table's owner
                                               p_key => shiftguard.role_key((SELECT relowner FROM pg_class WHERE oid = v_command.objid)));
        IF v_command.command_tag IN ('CREATE TABLE AS', 'SELECT INTO') THEN
            PERFORM shiftguard.note_writes(v_command.objid, ARRAY['insert']);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.track_new_tables() FROM PUBLIC;
SELECT shiftguard.ensure_event_trigger('shiftguard_track_new_tables', 'ddl_command_end',
                                       ARRAY['CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO'],
                                       'shiftguard.track_new_tables');


-- After a refresh (or the creation) of p_view, whose query read with p_snapshot: recorded, its
-- base tables tracked, and the writes that no materialized view needs any more forgotten. The
-- caller must own the view (record_table checks), and be one of the three routines below that
-- have just refreshed or made it: its owner calling this directly could record any snapshot,
-- and stale data would look fresh to svv_mv_info and AUTO REFRESH. (The routines run as their
-- caller, whose query it is, so EXECUTE cannot be kept from the owner; the call stack is
-- checked instead, as lend_create's: nobody else can make a function in schema shiftguard.)
-- They call it in an assignment, which PostgreSQL evaluates without a statement of its own: the
-- line after this function's in PG_CONTEXT is then the routine's. A call from a statement
-- (PERFORM, EXECUTE) puts that statement's text there, and a text may hold newlines, so the
-- lines after it would be the caller's to write (a quoted alias holding a newline and the line
-- of a routine allowed, in an EXECUTE of the owner's).
CREATE OR REPLACE FUNCTION shiftguard.mv_refreshed(p_view regclass, p_snapshot pg_snapshot) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_base    oid;
    v_context text;
    v_owner   text;  -- the view's owner's key (schema.sql role_key)
BEGIN
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    -- (Its caller's assignment: the routine's line, next. E'...': compiled in the caller's
    -- session, maybe with standard_conforming_strings off.)
    IF split_part(v_context, E'\n', 2) !~ (E'^PL/pgSQL function shiftguard\\.(create_materialized_view\\(text,text,jsonb,text,text\\)|'
                                           || E'refresh_materialized_view\\(text,text\\)|refresh_stale_view__keyed\\(oid,text\\)) line [0-9]+ at assignment$') THEN
        RAISE EXCEPTION 'permission denied: shiftguard.mv_refreshed is for shiftguard''s own use' USING ERRCODE = '42501';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = p_view) <> 'm' THEN
        RAISE EXCEPTION '"%" is not a materialized view', p_view USING ERRCODE = '42809';
    END IF;
    v_owner := shiftguard.role_key((SELECT relowner FROM pg_class WHERE oid = p_view));  -- acting for it
    PERFORM shiftguard.record_table__keyed(p_view, '{}', p_key => v_owner);  -- its owner's only
    PERFORM shiftguard.write_table_attributes(p_view, jsonb_build_object(
        'refreshed_snapshot', p_snapshot::text, 'refreshed_xid', pg_current_xact_id()::text,
        'refreshed_at', clock_timestamp()));
    PERFORM shiftguard.note_writes(p_view, ARRAY['delete', 'insert']);  -- for the views that read this one
    UPDATE shiftguard_rows.table_writes SET restamp = true  -- this transaction's writes, which the refresh saw
     WHERE xid = pg_current_xact_id() AND table_id IN (SELECT table_id FROM shiftguard.mv_bases(p_view));
    -- (In lend_to_views_role's order of locks: schema, then table.)
    FOR v_base IN SELECT b.table_id FROM shiftguard.mv_bases(p_view) b JOIN pg_class c ON c.oid = b.table_id
                   ORDER BY c.relnamespace, b.table_id LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = v_base) IN ('r', 'p') THEN
            PERFORM shiftguard.track_writes__keyed(v_base, p_key => v_owner);
        END IF;
        PERFORM shiftguard.forget_writes(v_base);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.mv_refreshed(regclass, pg_snapshot) TO PUBLIC;  -- it checks its caller

-- 't', 'f' or 'u' (above), for svv_mv_info and stv_mv_info; NULL for a caller who may not see
-- the view there.
CREATE OR REPLACE FUNCTION shiftguard.mv_is_stale__keyed(p_view oid, p_key text) RETURNS char(1)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN a.attrs->>'refreshed_snapshot' IS NULL THEN 't'
        WHEN EXISTS (SELECT FROM pg_rewrite r
                       JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                       AND d.refclassid = 'pg_proc'::regclass
                       JOIN pg_proc p ON p.oid = d.refobjid
                      WHERE r.ev_class = p_view AND p.provolatile <> 'i') THEN 't'
        WHEN EXISTS (SELECT FROM shiftguard.mv_bases(p_view) b JOIN shiftguard_rows.table_writes w USING (table_id)
                      WHERE CASE WHEN w.xid = (a.attrs->>'refreshed_xid')::xid8  -- the refreshing transaction's own:
                                 THEN w.written_at > (a.attrs->>'refreshed_at')::timestamptz  -- no snapshot tells
                                 ELSE NOT pg_visible_in_snapshot(w.xid, (a.attrs->>'refreshed_snapshot')::pg_snapshot)
                            END) THEN 't'
        -- (a base table tracked since the refresh, by another transaction: its writes until then are unknown)
        WHEN EXISTS (SELECT FROM shiftguard.mv_bases(p_view) b JOIN shiftguard_rows.track_requests r USING (table_id)
                      WHERE r.tracked IS NOT NULL AND r.tracked <> (a.attrs->>'refreshed_xid')::xid8
                        AND NOT pg_visible_in_snapshot(r.tracked, (a.attrs->>'refreshed_snapshot')::pg_snapshot)) THEN 't'
        WHEN EXISTS (SELECT FROM shiftguard.mv_bases(p_view) b
                      WHERE b.kind = 'f' OR (b.kind IN ('r', 'p') AND NOT EXISTS (
                          SELECT FROM pg_trigger WHERE tgrelid = b.table_id AND tgname = 'shiftguard_writes'
                                                   AND tgenabled <> 'D'))) THEN 'u'
        ELSE 'f' END
      FROM (SELECT (SELECT attrs FROM shiftguard_rows.table_attributes WHERE table_id = p_view) AS attrs) a
     WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = p_view AND c.relkind = 'm'  -- what stv_mv_info would show
                     AND (shiftguard.role_is_superuser(shiftguard.key_owner(p_key)) OR has_schema_privilege(shiftguard.key_owner(p_key), c.relnamespace, 'USAGE')))
$$;

GRANT EXECUTE ON FUNCTION shiftguard.mv_is_stale__keyed(oid, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is mv_is_stale__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.mv_is_stale(p_view oid) RETURNS char(1)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.mv_is_stale__keyed($1, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.mv_is_stale(oid) TO PUBLIC;

-- CREATE MATERIALIZED VIEW: p_sql is PostgreSQL's form as the proxy judged it, run as the caller
-- with the caller's search_path; p_view the name as written, p_definition the statement as
-- written (what pg_views shows).
CREATE OR REPLACE PROCEDURE shiftguard.create_materialized_view(p_sql text, p_view text, p_attrs jsonb,
                                                                p_definition text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snapshot pg_snapshot := pg_current_snapshot();  -- before the query runs: a write meanwhile is stale
    v_existed  regclass := shiftguard.caller_regclass(p_view, p_search_path);
    -- Anyone may call this with SQL of their own (it runs as them): only a view p_sql made is
    -- fresh, not one it renamed to p_view.
    v_views    oid[] := ARRAY(SELECT oid FROM pg_class WHERE relkind = 'm');
    v_view     regclass;
    v_recorded text;
BEGIN
    PERFORM shiftguard.caller_execute(p_sql, p_search_path);
    v_view := shiftguard.caller_regclass(p_view, p_search_path);
    IF v_existed IS NOT NULL OR v_view = ANY (v_views) THEN
        RETURN;  -- IF NOT EXISTS, and it did: left as it was
    END IF;
    PERFORM shiftguard.record_table(v_view, p_attrs || jsonb_build_object(
        'definition', rtrim(p_definition, E'; \t\r\n') || ';'));
    v_recorded := shiftguard.mv_refreshed(v_view, v_snapshot);  -- an assignment: mv_refreshed checks
END
$$;
GRANT EXECUTE ON PROCEDURE shiftguard.create_materialized_view(text, text, jsonb, text, text) TO PUBLIC;

CREATE OR REPLACE PROCEDURE shiftguard.refresh_materialized_view(p_view text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snapshot pg_snapshot := pg_current_snapshot();
    v_view     regclass := shiftguard.caller_relation(p_view, p_search_path);
    v_recorded text;
BEGIN
    PERFORM shiftguard.caller_execute(format('REFRESH MATERIALIZED VIEW %s', v_view), p_search_path);
    v_recorded := shiftguard.mv_refreshed(v_view, v_snapshot);  -- an assignment: mv_refreshed checks
END
$$;
GRANT EXECUTE ON PROCEDURE shiftguard.refresh_materialized_view(text, text) TO PUBLIC;

-- COMMENT ON VIEW v IS ...: Redshift's statement for its materialized views too (policy/dialect.py
-- _view_comment), PostgreSQL's COMMENT ON MATERIALIZED VIEW for them. Runs as the caller:
-- PostgreSQL checks that the caller owns the view.
CREATE OR REPLACE PROCEDURE shiftguard.comment_on_view(p_view text, p_comment text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_view regclass := shiftguard.caller_relation(p_view, p_search_path);
BEGIN
    EXECUTE format('COMMENT ON %s %s IS %L',
                   CASE WHEN (SELECT relkind FROM pg_class WHERE oid = v_view) = 'm' THEN 'MATERIALIZED VIEW'
                        ELSE 'VIEW' END, v_view, p_comment);
END
$$;
GRANT EXECUTE ON PROCEDURE shiftguard.comment_on_view(text, text, text) TO PUBLIC;

-- ALTER MATERIALIZED VIEW mv AUTO REFRESH {YES | NO} and ALTER DISTSTYLE/DISTKEY/SORTKEY: recorded.
CREATE OR REPLACE PROCEDURE shiftguard.alter_materialized_view(p_view text, p_attrs jsonb, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_view regclass := shiftguard.caller_relation(p_view, p_search_path);
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = v_view) <> 'm' THEN
        RAISE EXCEPTION '"%" is not a materialized view', p_view USING ERRCODE = '42809';
    END IF;
    PERFORM shiftguard.record_table(v_view, p_attrs);
    IF (p_attrs->>'autorefresh')::boolean THEN
        PERFORM shiftguard.request_refresh();  -- stale already: refreshed soon after, too
    END IF;
END
$$;
GRANT EXECUTE ON PROCEDURE shiftguard.alter_materialized_view(text, jsonb, text) TO PUBLIC;

-- The stale AUTO REFRESH YES views of this database, refreshed by the management role (the
-- proxy, catalog/store.py refresh_stale_views), each in a transaction of its own
-- (refresh_stale_view); PostgreSQL runs each view's query as its owner. Each view's owner
-- decides how its refresh may fail, and no failure of one stops the others: its query's
-- functions may raise query_canceled or assert_failure, which WHEN OTHERS leaves to abort the
-- whole call, and its owner may hold it or its tables locked (the refresh gives up after a
-- second rather than wait for the proxy's command timeout). Not one statement for them all: a
-- user's seventy views held locked made it outlast that timeout, which undid every view's
-- refresh, at every pass.
DROP FUNCTION IF EXISTS shiftguard.refresh_stale_views();
CREATE OR REPLACE FUNCTION shiftguard.stale_autorefresh_views() RETURNS SETOF oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.table_id FROM shiftguard_rows.table_attributes a JOIN pg_class c ON c.oid = a.table_id
     WHERE c.relkind = 'm' AND (a.attrs->>'autorefresh')::boolean AND shiftguard.mv_is_stale(a.table_id) = 't'
     ORDER BY a.table_id
$$;
REVOKE ALL ON FUNCTION shiftguard.stale_autorefresh_views() FROM PUBLIC;
-- The tables a materialized view's query names, locked ACCESS SHARE (REFRESH's mode), in the
-- order of their OIDs (not those behind a view it names, nor those its functions read).
-- LOCK runs no one's code. (refresh_stale_view)
CREATE OR REPLACE FUNCTION shiftguard.lock_base_tables(p_view oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_table oid;
BEGIN
    FOR v_table IN SELECT DISTINCT d.refobjid FROM pg_depend d
                     JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class c ON c.oid = d.refobjid
                    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                      AND w.ev_class = p_view AND d.refobjid <> p_view AND c.relkind IN ('r', 'p')
                    ORDER BY 1 LOOP
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE', v_table::regclass);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.lock_base_tables(oid) FROM PUBLIC;

-- Refreshed (true), or not (a warning says why), or no longer a stale AUTO REFRESH view (true).
-- PostgreSQL runs the view's query as its owner, but session_user stays the session's: in the
-- proxy's, the management role's, whose every check of session_user the owner's code in the
-- query passed (it read another's late-binding view, whose function asks whether session_user
-- may SELECT it). So it runs only where session_user is the view's owner (the proxy sets it:
-- SET LOCAL SESSION AUTHORIZATION, store.py _refresh_stale_views), or both are trusted (a
-- superuser's view); hence SECURITY DEFINER, and anyone's to call on their own views. A
-- management role that is no superuser cannot take another's session authorization: it
-- refreshes as itself, as before (a hole left open there).
CREATE OR REPLACE FUNCTION shiftguard.refresh_stale_view__keyed(p_view oid, p_key text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_view     regclass := p_view;
    v_snapshot pg_snapshot;
    v_recorded text;
    v_session  oid := (SELECT oid FROM pg_roles WHERE rolname = v_caller);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = p_view
                      AND (c.relowner = v_session OR shiftguard.trusted_role(c.relowner) AND shiftguard.trusted_role(v_session)
                           OR v_session = (SELECT nspowner FROM pg_namespace WHERE nspname = 'shiftguard')
                              AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = v_session))) THEN
        RAISE EXCEPTION 'must be owner of materialized view %', p_view USING ERRCODE = '42501';
    END IF;
    PERFORM set_config('lock_timeout', '1s', true);
    -- A refresh is background work: in a deadlock with a user's statement (DROP OWNED BY, DROP
    -- TABLE ... CASCADE: the base table's lock held, the view's wanted; REFRESH: the other way
    -- round) it is the refresh that gives way. PostgreSQL ends the waiter whose deadlock_timeout
    -- runs out first, so the refresh's is short (a superuser's setting: where the management role
    -- is none, the refresh keeps the default and either side may lose); and it takes the view's
    -- base tables' locks before the view's, in a DROP's order, so most such cycles never form.
    BEGIN
        PERFORM set_config('deadlock_timeout', '50ms', true);
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    IF NOT EXISTS (SELECT FROM shiftguard_rows.table_attributes a JOIN pg_class c ON c.oid = a.table_id
                    WHERE a.table_id = p_view AND c.relkind = 'm' AND (a.attrs->>'autorefresh')::boolean
                      AND shiftguard.mv_is_stale__keyed(a.table_id, p_key => p_key) = 't') THEN
        RETURN true;  -- dropped, or refreshed since
    END IF;
    BEGIN
        PERFORM shiftguard.lock_base_tables(p_view);
        v_snapshot := pg_current_snapshot();
        EXECUTE format('REFRESH MATERIALIZED VIEW %s', v_view);
        v_recorded := shiftguard.mv_refreshed(v_view, v_snapshot);  -- an assignment: mv_refreshed checks
        RETURN true;
    EXCEPTION WHEN OTHERS OR query_canceled OR assert_failure THEN
        RAISE WARNING 'could not refresh materialized view %: %', v_view, SQLERRM;
        RETURN false;
    END;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.refresh_stale_view__keyed(oid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.refresh_stale_view__keyed(oid, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is refresh_stale_view__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.refresh_stale_view(p_view oid) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.refresh_stale_view__keyed($1, shiftguard.caller_key()) $$;
REVOKE ALL ON FUNCTION shiftguard.refresh_stale_view(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.refresh_stale_view(oid) TO PUBLIC;  -- (above: the session's own views)

-- Redshift's pg_views and information_schema.views list materialized views too, their
-- definition the CREATE MATERIALIZED VIEW statement (policy/statements.py points queries naming
-- them here when the dialect is on). One that was not made through the proxy shows a statement
-- made from its query. pg_views shows every row to everyone, as PostgreSQL's does (no barrier);
-- information_schema.views filters, as PostgreSQL's does.
CREATE OR REPLACE FUNCTION shiftguard.mv_definition(p_view oid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT attrs->>'definition' FROM shiftguard_rows.table_attributes WHERE table_id = p_view),
                    format('create materialized view %s as (%s);', p_view::regclass,
                           rtrim(pg_get_viewdef(p_view), E'; \n')))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.mv_definition(oid) TO PUBLIC;

CREATE OR REPLACE VIEW shiftguard.pg_views AS
    SELECT v.schemaname, v.viewname, v.viewowner, v.definition FROM pg_catalog.pg_views v
    UNION ALL
    SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner), shiftguard.mv_definition(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'm';

-- Names as text, not sql_identifier (a name: it would cut a long name to 63 bytes again).
DO $$ BEGIN  -- once, from the shape with sql_identifier names (a view's column types stay as they are)
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = to_regclass('shiftguard.information_schema_views')
         AND attname = 'table_name') <> 'text'::regtype THEN
        DROP VIEW shiftguard.information_schema_views;
    END IF;
END $$;
CREATE OR REPLACE VIEW shiftguard.information_schema_views WITH (security_barrier) AS
    SELECT v.table_catalog, shiftguard.long_name(v.table_schema) AS table_schema,
           shiftguard.long_name(v.table_name) AS table_name, v.view_definition, v.check_option, v.is_updatable,
           v.is_insertable_into, v.is_trigger_updatable, v.is_trigger_deletable, v.is_trigger_insertable_into
      FROM information_schema.views v
    UNION ALL  -- who sees which, and whose definition, as information_schema.views decides for views
    SELECT current_database()::information_schema.sql_identifier,
           shiftguard.long_name(n.nspname), shiftguard.long_name(c.relname),
           (CASE WHEN pg_has_role(c.relowner, 'USAGE') THEN shiftguard.mv_definition(c.oid) END)
               ::information_schema.character_data,
           'NONE'::information_schema.character_data, 'NO'::information_schema.yes_or_no,
           'NO'::information_schema.yes_or_no, 'NO'::information_schema.yes_or_no,
           'NO'::information_schema.yes_or_no, 'NO'::information_schema.yes_or_no
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'm' AND NOT pg_is_other_temp_schema(n.oid)
       AND (pg_has_role(c.relowner, 'USAGE')
            OR has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
            OR has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'));

-- SVV_MV_INFO: superusers see every row, others their own views'. state 0: "fully recomputed
-- when refreshed", as every refresh here is; autorewrite 'f': no query is rewritten to read one.
CREATE OR REPLACE VIEW shiftguard.svv_mv_info WITH (security_barrier) AS
    SELECT current_database()::text AS database_name, n.nspname::text AS schema_name,
           pg_get_userbyid(c.relowner)::text AS user_name, c.relname::text AS name,
           shiftguard.mv_is_stale(c.oid) AS is_stale, 0 AS state,
           (CASE WHEN coalesce((a.attrs->>'autorefresh')::boolean, false) THEN 't' ELSE 'f' END)::char(1) AS autorefresh,
           'f'::char(1) AS autorewrite
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = c.oid
     WHERE c.relkind = 'm' AND (shiftguard.caller_is_superuser() OR pg_has_role(current_user, c.relowner, 'USAGE'));

-- STV_MV_INFO: the views in schemas the user may use; updated_upto_xid the last refresh's.
CREATE OR REPLACE VIEW shiftguard.stv_mv_info WITH (security_barrier) AS
    SELECT current_database()::text AS db_name, n.nspname::text AS schema, c.relname::text AS name,
           (a.attrs->>'refreshed_xid')::bigint AS updated_upto_xid, shiftguard.mv_is_stale(c.oid) AS is_stale,
           pg_get_userbyid(c.relowner)::text AS owner_user_name, 0 AS state,
           (CASE WHEN coalesce((a.attrs->>'autorefresh')::boolean, false) THEN 't' ELSE 'f' END)::char(1) AS autorefresh,
           'f'::char(1) AS autorewrite
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = c.oid
     WHERE c.relkind = 'm' AND (shiftguard.caller_is_superuser() OR has_schema_privilege(current_user, n.oid, 'USAGE'));

GRANT SELECT ON shiftguard.pg_views, shiftguard.information_schema_views, shiftguard.svv_mv_info,
                shiftguard.stv_mv_info TO PUBLIC;

-- SYS_QUERY_DETAIL: the writes of the tracked tables (those made since shiftguard tracks new
-- tables, and those materialized views read), a row per
-- table, transaction and step, the time of the transaction's first
-- write (note_writes) as the step's start and end (UTC, as Redshift's timestamps), in Redshift's column order as far as
-- the metrics it has; what is not measured is NULL. Superusers (and SYSLOG ACCESS UNRESTRICTED)
-- see every row, others their own. query_id is NULL: a trigger does not know the proxy's query.
CREATE OR REPLACE VIEW shiftguard.sys_query_detail WITH (security_barrier) AS
    SELECT w.user_id::integer AS user_id, NULL::bigint AS query_id, 1 AS child_query_sequence,
           NULL::integer AS stream_id, NULL::integer AS segment_id, NULL::integer AS step_id, w.step_name,
           w.table_id::integer AS table_id, c.relname::text AS table_name, 'f'::char(1) AS is_rrscan,
           (w.written_at AT TIME ZONE 'UTC') AS start_time, (w.written_at AT TIME ZONE 'UTC') AS end_time,
           NULL::bigint AS duration, NULL::text AS alert, NULL::bigint AS input_bytes, NULL::bigint AS input_rows,
           NULL::bigint AS output_bytes, NULL::bigint AS output_rows
      FROM shiftguard_rows.table_writes w LEFT JOIN pg_class c ON c.oid = w.table_id
     WHERE (SELECT shiftguard.sees_all_rows()) OR w.user_id = (SELECT oid FROM pg_roles WHERE rolname = current_user);
GRANT SELECT ON shiftguard.sys_query_detail TO PUBLIC;
