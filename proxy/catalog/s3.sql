-- COPY ... FROM 's3://...' and UNLOAD against directories of the database server (proxy/s3.py,
-- policy/s3.py). Installed only where the management role is a superuser: the server's COPY to
-- and from files needs it. Run after schema.sql, in the same bootstrap transaction. Idempotent.
--
-- Who names the files: the proxy resolves bucket and prefix to absolute paths, checks that they
-- stay inside the bucket's directory, judges the statement's AWS credentials and their IAM
-- policies (iam/s3access.py), and signs the result (HMAC-SHA-256 under the backend secret): a
-- ticket for one session user, and for UNLOAD one query. The SECURITY DEFINER functions below
-- touch only the files of a ticket whose signature verifies, for its own user and query, so a
-- user calling them directly reaches no other file and writes no other rows.
-- Who touches the rows: the user. s3_copy and s3_unload are SECURITY INVOKER: the INSERT of the
-- loaded rows and the UNLOAD query run as the session's own role, so PostgreSQL applies its
-- privileges (table and column), row-level security and triggers (DESIGN principle 1). The
-- definer functions only move text between files and rows: s3_read returns a file's fields,
-- s3_write copies out a temporary table of this session that its user owns (the query's result).
--
-- Function bodies use chr() instead of backslashes or E'' strings: sessions read string literals
-- with standard_conforming_strings off, the bootstrap with it on.

-- S3's error as Redshift reports it (iam/s3access.py s3_error).
CREATE OR REPLACE FUNCTION shiftguard.s3_refuse(p_message text, p_code text, p_status integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'S3ServiceException:%,Status %,Error %,Rid %,CanRetry 1', p_message, p_status, p_code,
        upper(substr(md5(random()::text), 1, 16)) USING ERRCODE = '42501';
END
$$;

-- A ticket the proxy signed, just now (shiftguard.signed), for this operation and this session's
-- user, whose credentials still hold: the proxy judged the credentials and the principal's
-- policies (iam/s3access.py); what only this database knows is read here. An IAM role must be
-- one the user holds ASSUMEROLE on and one associated with the cluster (IAM_ROLE DEFAULT: the
-- cluster's default role); an STS session must exist and not have expired; and the role so
-- found must be one whose policies the proxy found to allow the requests (the ticket's roles).
CREATE OR REPLACE FUNCTION shiftguard.s3_ticket__keyed(p_ticket text, p_signature text, p_op text, p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_ticket jsonb;
    v_arn text;
    v_session record;
BEGIN
    IF NOT shiftguard.signed('s3', p_ticket, p_signature) THEN  -- of 's3:' || issued || ':' || ticket
        RAISE EXCEPTION 'not a valid S3 ticket' USING ERRCODE = '42501',
            HINT = 'COPY and UNLOAD with S3 locations go through shiftguard';
    END IF;
    v_ticket := p_ticket::jsonb;
    IF v_ticket->>'op' IS DISTINCT FROM p_op OR v_ticket->>'user' IS DISTINCT FROM v_caller THEN
        RAISE EXCEPTION 'not a valid S3 ticket' USING ERRCODE = '42501';
    END IF;
    IF v_ticket ? 'iam_role' THEN
        PERFORM shiftguard.require_assumerole__keyed(v_ticket->>'iam_role', CASE p_op WHEN 'read' THEN 'COPY' ELSE 'UNLOAD' END, p_key => p_key);
        IF v_ticket->>'iam_role' = 'default' THEN
            v_arn := (SELECT role_arn FROM shiftguard_rows.cluster_iam_roles WHERE is_default);
            IF v_arn IS NULL THEN
                -- UNVERIFIED wording.
                RAISE EXCEPTION 'Default IAM role is not set for the cluster' USING ERRCODE = '42501',
                    HINT = 'Set one with ModifyClusterIamRoles --default-iam-role-arn, or cluster.default_iam_role.';
            END IF;
        ELSE
            v_arn := v_ticket->>'iam_role';
        END IF;
        IF NOT EXISTS (SELECT FROM shiftguard_rows.cluster_iam_roles WHERE role_arn = v_arn) THEN
            -- Redshift's wording for a role the cluster cannot assume (UNVERIFIED for one not associated).
            RAISE EXCEPTION 'User %/% is not authorized to assume IAM Role %', v_ticket->>'dbuser', v_caller, v_arn
                USING ERRCODE = '42501',
                      HINT = 'Associate the role with the cluster: ModifyClusterIamRoles, or cluster.iam_roles.';
        END IF;
    ELSIF v_ticket ? 'sts' THEN
        SELECT format('arn:aws:iam::%s:role/%s', s.account, s.role) AS arn, s.expires INTO v_session
          FROM shiftguard_rows.sts_sessions s WHERE s.access_key_id = v_ticket->>'sts';
        IF NOT FOUND THEN
            PERFORM shiftguard.s3_refuse('The AWS Access Key Id you provided does not exist in our records.',
                                         'InvalidAccessKeyId', 403);
        END IF;
        IF v_session.expires <= now() THEN
            PERFORM shiftguard.s3_refuse('The provided token has expired.', 'ExpiredToken', 400);
        END IF;
        v_arn := v_session.arn;
    END IF;
    IF v_arn IS NOT NULL AND NOT coalesce(v_ticket->'roles' ? v_arn, false) THEN
        PERFORM shiftguard.s3_refuse('Access Denied', 'AccessDenied', 403);
    END IF;
    RETURN v_ticket;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.s3_ticket__keyed(text, text, text, text) FROM PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is s3_ticket__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.s3_ticket(p_ticket text, p_signature text, p_op text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.s3_ticket__keyed($1, $2, $3, shiftguard.caller_key()) $$;
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
CREATE OR REPLACE FUNCTION shiftguard.s3_read__keyed(p_ticket text, p_signature text, p_columns integer, p_key text)
RETURNS SETOF text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_ticket jsonb := shiftguard.s3_ticket__keyed(p_ticket, p_signature, 'read', p_key => p_key);
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

GRANT EXECUTE ON FUNCTION shiftguard.s3_read__keyed(text, text, integer, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is s3_read__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.s3_read(p_ticket text, p_signature text, p_columns integer) RETURNS SETOF text[]
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT * FROM shiftguard.s3_read__keyed($1, $2, $3, shiftguard.caller_key()) $$;
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

-- Copy a temporary table of this session, owned by the session's user, to a write ticket's file;
-- returns how many rows it wrote. Only for shiftguard.s3_unload, which filled the table with the
-- query p_query, the one the ticket names (so a ticket is good for its own query, never for other
-- rows).
DROP FUNCTION IF EXISTS shiftguard.s3_write(regclass, text, text);
CREATE OR REPLACE FUNCTION shiftguard.s3_write(p_table regclass, p_query text, p_ticket text, p_signature text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_context text;
    v_ticket jsonb;
    v_file text;
    v_target text;
    v_rows bigint;
BEGIN
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    -- The caller's line, as PostgreSQL writes it (an assignment of a simple expression adds no
    -- "SQL statement" line): a function of another schema, or one named with a newline, is
    -- written otherwise (qualified or quoted).
    IF split_part(v_context, chr(10), 2) !~ '^PL/pgSQL function shiftguard[.]s3_unload[(]text,text,text,text[)] line [0-9]+ at assignment$' THEN
        RAISE EXCEPTION 'permission denied: shiftguard.s3_write is for shiftguard''s own use' USING ERRCODE = '42501';
    END IF;
    v_ticket := shiftguard.s3_ticket__keyed(p_ticket, p_signature, 'write',  -- the session user's, as the ticket names
                                            p_key => shiftguard.role_key((SELECT oid FROM pg_roles WHERE rolname = session_user)));
    IF v_ticket->>'query' IS DISTINCT FROM encode(sha256(convert_to(p_query, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'not a valid S3 ticket for this query' USING ERRCODE = '42501';
    END IF;
    v_file := v_ticket->>'file';
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
    IF pg_stat_file(v_ticket->>'directory', true) IS NULL THEN
        -- The prefix's directories, made only now that the statement runs; the proxy checked that
        -- they stay inside the bucket's directory. (The server runs programs with umask 077.) No
        -- rows, and the program reads its input to the end: it never closes the pipe under the
        -- server's feet (EPIPE would fail the statement).
        EXECUTE format('COPY (SELECT WHERE false) TO PROGRAM %L',
                       'umask 022; mkdir -p -- ' || shiftguard.s3_shell_quote(v_ticket->>'directory')
                       || ' && cat > /dev/null');
    END IF;
    IF (v_ticket->>'gzip')::boolean THEN
        v_target := 'PROGRAM ' || quote_literal('umask 022; gzip -c > ' || shiftguard.s3_shell_quote(v_file));
    ELSE
        v_target := quote_literal(v_file);
    END IF;
    EXECUTE format('COPY %s TO %s WITH (%s)', p_table, v_target, shiftguard.s3_copy_options(v_ticket, true));
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.s3_write(regclass, text, text, text) TO PUBLIC;

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
    v_rows := shiftguard.s3_write(format('pg_temp.%I', v_table)::regclass, p_query, p_ticket, p_signature);
    EXECUTE format('DROP TABLE pg_temp.%I', v_table);
    -- UNVERIFIED wording.
    RAISE INFO 'UNLOAD completed, % record(s) unloaded successfully.', v_rows;
END
$$;
