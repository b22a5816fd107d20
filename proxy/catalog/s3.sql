-- COPY ... FROM 's3://...' and UNLOAD against directories of the database server (proxy/s3.py,
-- policy/s3.py). Installed only where the management role is a superuser: the server's COPY to
-- and from files needs it. Run after schema.sql, in the same bootstrap transaction. Idempotent.
--
-- Who names the files: the proxy resolves bucket and prefix to absolute paths, checks that they
-- stay inside the bucket's directory, and signs them (HMAC-SHA-256 under the backend secret).
-- The SECURITY DEFINER functions below touch only the files of a ticket whose signature
-- verifies, so a user calling them directly reaches no other file.
-- Who touches the rows: the user. s3_copy and s3_unload are SECURITY INVOKER: the INSERT of the
-- loaded rows and the UNLOAD query run as the session's own role, so PostgreSQL applies its
-- privileges (table and column), row-level security and triggers (DESIGN principle 1). The
-- definer functions only move text between files and rows: s3_read returns a file's fields,
-- s3_write copies out a temporary table of this session that its user owns (the query's result).
--
-- Function bodies use chr() instead of backslashes or E'' strings: sessions read string literals
-- with standard_conforming_strings off, the bootstrap with it on.

CREATE OR REPLACE FUNCTION shiftguard.s3_ticket(p_ticket text, p_signature text, p_op text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket jsonb;
BEGIN
    IF NOT shiftguard.signed('s3', p_ticket, p_signature) THEN  -- of 's3:' || issued || ':' || ticket
        RAISE EXCEPTION 'not a valid S3 ticket' USING ERRCODE = '42501',
            HINT = 'COPY and UNLOAD with S3 locations go through shiftguard';
    END IF;
    v_ticket := p_ticket::jsonb;
    IF v_ticket->>'op' IS DISTINCT FROM p_op THEN
        RAISE EXCEPTION 'not a valid S3 ticket' USING ERRCODE = '42501';
    END IF;
    IF v_ticket->>'iam_role' IS NOT NULL THEN
        PERFORM shiftguard.require_assumerole(v_ticket->>'iam_role', CASE p_op WHEN 'read' THEN 'COPY' ELSE 'UNLOAD' END);
    END IF;
    RETURN v_ticket;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.s3_ticket(text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.s3_shell_quote(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    -- 'text' for /bin/sh, a quote inside written as '\''
    SELECT chr(39) || replace(p_text, chr(39), chr(39) || chr(92) || chr(39) || chr(39)) || chr(39)
$$;

-- The COPY options of a ticket: FORMAT, DELIMITER, NULL, QUOTE (csv), HEADER (writing).
CREATE OR REPLACE FUNCTION shiftguard.s3_copy_options(p_ticket jsonb, p_writing boolean) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('FORMAT %s, DELIMITER %L, NULL %L', CASE WHEN p_ticket->>'format' = 'csv' THEN 'csv' ELSE 'text' END,
                  p_ticket->>'delimiter', p_ticket->>'null')
        || CASE WHEN p_ticket->>'format' = 'csv' THEN format(', QUOTE %L', p_ticket->>'quote') ELSE '' END
        || CASE WHEN p_writing AND (p_ticket->>'header')::boolean THEN ', HEADER true' ELSE '' END
$$;

-- The fields of every file of a read ticket, as text arrays of p_columns elements, in file order.
CREATE OR REPLACE FUNCTION shiftguard.s3_read(p_ticket text, p_signature text, p_columns integer)
RETURNS SETOF text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket jsonb := shiftguard.s3_ticket(p_ticket, p_signature, 'read');
    v_table text := 'shiftguard_s3_' || md5(random()::text || clock_timestamp()::text);
    v_header integer := coalesce((v_ticket->>'ignoreheader')::integer, 0);
    v_file text;
    v_source text;
    v_program text;
BEGIN
    IF p_columns NOT BETWEEN 1 AND 1600 THEN
        RAISE EXCEPTION 'COPY needs between 1 and 1600 columns' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('CREATE TEMP TABLE %I (%s)', v_table,
                   (SELECT string_agg(format('c%s text', n), ', ' ORDER BY n) FROM generate_series(1, p_columns) n));
    FOR v_file IN SELECT jsonb_array_elements_text(v_ticket->'files') LOOP
        -- IGNOREHEADER n skips n lines of each file (PostgreSQL's HEADER skips one and parses it).
        -- In a pipeline the shell reports only the last command's status, so gzip -t checks
        -- the file first: an unreadable or broken file fails the COPY instead of loading nothing.
        v_program := CASE
            WHEN (v_ticket->>'gzip')::boolean AND v_header > 0 THEN
                'gzip -t -- ' || shiftguard.s3_shell_quote(v_file) || ' && gzip -dc -- '
                || shiftguard.s3_shell_quote(v_file) || ' | tail -n +' || (v_header + 1)
            WHEN (v_ticket->>'gzip')::boolean THEN 'gzip -dc -- ' || shiftguard.s3_shell_quote(v_file)
            WHEN v_header > 0 THEN 'tail -n +' || (v_header + 1) || ' -- ' || shiftguard.s3_shell_quote(v_file)
        END;
        v_source := CASE WHEN v_program IS NULL THEN quote_literal(v_file) ELSE 'PROGRAM ' || quote_literal(v_program) END;
        EXECUTE format('COPY pg_temp.%I FROM %s WITH (%s)', v_table, v_source,
                       shiftguard.s3_copy_options(v_ticket, false));
    END LOOP;
    RETURN QUERY EXECUTE format('SELECT ARRAY[%s] FROM pg_temp.%I',
                                (SELECT string_agg(format('c%s', n), ', ' ORDER BY n) FROM generate_series(1, p_columns) n),
                                v_table);
    EXECUTE format('DROP TABLE pg_temp.%I', v_table);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.s3_read(text, text, integer) TO PUBLIC;

-- COPY table [(columns)] FROM 's3://...': the files' fields are inserted by the caller. Empty
-- fields of non-character columns load as NULL, as Redshift's COPY does (EMPTYASNULL and
-- BLANKSASNULL extend that to character columns); character columns are not cast, so a value
-- too long for varchar(n) fails as Redshift's does instead of being cut.
DROP PROCEDURE IF EXISTS shiftguard.s3_copy(text, text[], text, text);
CREATE OR REPLACE PROCEDURE shiftguard.s3_copy(p_table text, p_columns text[], p_ticket text, p_signature text,
                                              p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relation regclass := shiftguard.caller_regclass(p_table, p_search_path);
    v_options jsonb := p_ticket::jsonb;  -- only its flags are read here; s3_read verifies it
    v_names text[] := '{}';
    v_values text[] := '{}';
    v_column record;
    v_field text;
    v_rows bigint;
BEGIN
    IF v_relation IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', p_table USING ERRCODE = '42P01';
    END IF;
    FOR v_column IN
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type,
               (SELECT t.typcategory FROM pg_type t WHERE t.oid = a.atttypid) AS category
          FROM pg_attribute a
         WHERE a.attrelid = v_relation AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
           AND CASE WHEN cardinality(p_columns) = 0 THEN a.attidentity = '' ELSE a.attname = ANY (p_columns) END
         ORDER BY CASE WHEN cardinality(p_columns) = 0 THEN a.attnum
                       ELSE array_position(p_columns, a.attname::text) END
    LOOP
        v_names := v_names || format('%I', v_column.attname);
        v_field := format('f.r[%s]', cardinality(v_values) + 1);
        IF v_column.category = 'S' THEN
            IF (v_options->>'blanksasnull')::boolean THEN
                v_field := format('CASE WHEN btrim(%s) = %L THEN NULL ELSE %s END', v_field, '', v_field);
            ELSIF (v_options->>'emptyasnull')::boolean THEN
                v_field := format('nullif(%s, %L)', v_field, '');
            END IF;
        ELSE
            v_field := format('nullif(%s, %L)::%s', v_field, '', v_column.type);
        END IF;
        v_values := v_values || v_field;
    END LOOP;
    IF cardinality(p_columns) > 0 AND cardinality(v_names) <> cardinality(p_columns) THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist',
            (SELECT c FROM unnest(p_columns) c
              WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = v_relation AND a.attname = c
                                   AND a.attnum > 0 AND NOT a.attisdropped) LIMIT 1),
            (SELECT relname FROM pg_class WHERE oid = v_relation) USING ERRCODE = '42703';
    END IF;
    IF cardinality(v_names) = 0 THEN
        RAISE EXCEPTION 'relation "%" has no columns to load', p_table USING ERRCODE = '42P10';
    END IF;
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM shiftguard.s3_read($1, $2, %s) AS f(r)', v_relation,
                   array_to_string(v_names, ', '), array_to_string(v_values, ', '), cardinality(v_names))
        USING p_ticket, p_signature;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- UNVERIFIED wording: what Redshift's COPY reports, as clients show it.
    RAISE INFO 'Load into table ''%'' completed, % record(s) loaded successfully.',
        (SELECT relname FROM pg_class WHERE oid = v_relation), v_rows;
END
$$;

-- Copy a temporary table of this session, owned by the session's user, to a write ticket's file.
CREATE OR REPLACE FUNCTION shiftguard.s3_write(p_table regclass, p_ticket text, p_signature text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket jsonb := shiftguard.s3_ticket(p_ticket, p_signature, 'write');
    v_file text := v_ticket->>'file';
    v_target text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c
                    WHERE c.oid = p_table AND c.relkind = 'r' AND c.relpersistence = 't'
                      AND c.relnamespace = pg_my_temp_schema()
                      AND c.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = session_user)) THEN
        RAISE EXCEPTION 'UNLOAD writes only the rows of its own query' USING ERRCODE = '42501';
    END IF;
    IF NOT (v_ticket->>'allowoverwrite')::boolean AND pg_stat_file(v_file, true) IS NOT NULL THEN
        RAISE EXCEPTION 'Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.'
            USING ERRCODE = '58P02';
    END IF;
    IF (v_ticket->>'gzip')::boolean THEN
        -- The server runs programs with umask 077; the file is for people to read.
        v_target := 'PROGRAM ' || quote_literal('umask 022; gzip -c > ' || shiftguard.s3_shell_quote(v_file));
    ELSE
        v_target := quote_literal(v_file);
    END IF;
    EXECUTE format('COPY %s TO %s WITH (%s)', p_table, v_target, shiftguard.s3_copy_options(v_ticket, true));
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.s3_write(regclass, text, text) TO PUBLIC;

-- UNLOAD ('select ...') TO 's3://...': the query runs as the caller into a temporary table,
-- which s3_write copies out. p_query is one SELECT, printed back by PostgreSQL's parser (its
-- string constants read the same under either standard_conforming_strings); it alone runs with
-- the caller's search_path.
DROP PROCEDURE IF EXISTS shiftguard.s3_unload(text, text, text);
CREATE OR REPLACE PROCEDURE shiftguard.s3_unload(p_query text, p_ticket text, p_signature text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_table text := 'shiftguard_unload_' || md5(random()::text || clock_timestamp()::text);
    v_rows bigint;
BEGIN
    PERFORM shiftguard.caller_execute(format('CREATE TEMP TABLE %I AS %s', v_table, p_query), p_search_path);
    EXECUTE format('SELECT count(*) FROM pg_temp.%I', v_table) INTO v_rows;
    PERFORM shiftguard.s3_write(format('pg_temp.%I', v_table)::regclass, p_ticket, p_signature);
    EXECUTE format('DROP TABLE pg_temp.%I', v_table);
    -- UNVERIFIED wording.
    RAISE INFO 'UNLOAD completed, % record(s) unloaded successfully.', v_rows;
END
$$;
