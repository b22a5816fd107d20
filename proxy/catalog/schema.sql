-- shiftguard's private schemas: the Redshift-level state PostgreSQL has no place for, and the
-- procedures that change it. Idempotent; run by every proxy at start under the bootstrap lock
-- (store.py _BOOTSTRAP_LOCK), as the management role. Ordinary roles may call the procedures
-- (each checks its caller, by session_user: sessions log in as the user's own role and never
-- switch identity) and read the catalog views of schema shiftguard, nothing else. The tables are
-- in schema shiftguard_rows, which no user may look into: a name a user cannot look up is
-- refused before anything is locked, whereas PostgreSQL takes some locks on a table it can name
-- before it checks the privilege (CREATE RULE, CREATE TRIGGER), and such a request, queued
-- behind a lock the user keeps, would hold up everyone after it (store.py _move_private_tables).
-- Error wordings marked UNVERIFIED are not documented by Redshift; they are our best guess.

CREATE SCHEMA IF NOT EXISTS shiftguard;
REVOKE ALL ON SCHEMA shiftguard FROM PUBLIC;
GRANT USAGE ON SCHEMA shiftguard TO PUBLIC;
CREATE SCHEMA IF NOT EXISTS shiftguard_rows;
REVOKE ALL ON SCHEMA shiftguard_rows FROM PUBLIC;

CREATE TABLE IF NOT EXISTS shiftguard_rows.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
REVOKE ALL ON shiftguard_rows.settings FROM PUBLIC;

-- Locks that serialise shiftguard's own work on one object (a schema, a relation), held to the
-- end of the transaction: a row per (purpose, object), locked FOR UPDATE. Not advisory locks:
-- any user can compute an advisory lock's key and hold it in a session for as long as they like,
-- stopping everyone's CREATE in a lent schema, views and materialized views; nobody but the
-- management role (and superusers) may lock these rows. A row is made at the object's first use
-- (a second maker waits for the first's transaction, as on the lock) and goes with the object
-- (privileges.sql forget_dropped_objects). A REPEATABLE READ or SERIALIZABLE transaction whose
-- snapshot is older than the row of a key it then needs fails with a serialization failure, once
-- per key, to be retried as any.
CREATE TABLE IF NOT EXISTS shiftguard_rows.object_locks (
    purpose text NOT NULL,
    object  oid NOT NULL,
    PRIMARY KEY (purpose, object)
);
REVOKE ALL ON shiftguard_rows.object_locks FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.lock_object(p_purpose text, p_object oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM FROM shiftguard_rows.object_locks WHERE purpose = p_purpose AND object = p_object FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO shiftguard_rows.object_locks VALUES (p_purpose, p_object) ON CONFLICT DO NOTHING;
        PERFORM FROM shiftguard_rows.object_locks WHERE purpose = p_purpose AND object = p_object FOR UPDATE;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.lock_object(text, oid) FROM PUBLIC;

-- One row per Redshift user. The user's PostgreSQL role has the same name; what PostgreSQL can
-- hold itself (superuser, CREATEDB, CONNECTION LIMIT, VALID UNTIL, SET parameters) is also set
-- on that role, so that PostgreSQL enforces it.
CREATE TABLE IF NOT EXISTS shiftguard_rows.users (
    name         text PRIMARY KEY,
    -- 'md5' || md5(password || name), as Redshift stores a clear-text password.
    password_md5 text CHECK (password_md5 ~ '^md5[0-9a-f]{32}$'),
    superuser    boolean NOT NULL DEFAULT false,
    created      timestamptz NOT NULL DEFAULT now()
);
-- Redshift's SHA-256 form: hex SHA256(password || salt) and the hex salt.
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS password_sha256 text CHECK (password_sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS password_salt text CHECK (password_salt ~ '^[0-9a-f]{64}$');
-- A SCRAM-SHA-256 verifier, kept when the password was given in clear text.
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS password_scram text CHECK (password_scram LIKE 'SCRAM-SHA-256$%');
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS createdb boolean NOT NULL DEFAULT false;
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS syslog_unrestricted boolean NOT NULL DEFAULT false;
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS valid_until timestamptz;
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS connection_limit integer CHECK (connection_limit >= 0);
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS session_timeout integer CHECK (session_timeout BETWEEN 60 AND 1728000);
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS external_id text;
ALTER TABLE shiftguard_rows.users ADD COLUMN IF NOT EXISTS last_ddl_ts timestamp;
-- The role's own SET defaults as ALTER USER ... SET left them (pg_db_role_setting.setconfig of
-- the role in every database). A role may change its own from a function body or DO block
-- (ALTER ROLE self SET ..., which PostgreSQL allows and no event trigger sees); a login puts
-- back what ALTER USER set (shiftguard.restore_role_settings). Existing users keep what they
-- have when the column is new.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'shiftguard_rows.users'::regclass AND attname = 'settings'
                      AND NOT attisdropped) THEN
        ALTER TABLE shiftguard_rows.users ADD COLUMN settings text[];
        UPDATE shiftguard_rows.users u SET settings = s.setconfig
          FROM pg_roles r JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0
         WHERE r.rolname = u.name;
    END IF;
END
$$;
REVOKE ALL ON shiftguard_rows.users FROM PUBLIC;

-- Redshift groups (filled by the groups issue); CREATE USER ... IN GROUP needs them to exist.
CREATE TABLE IF NOT EXISTS shiftguard_rows.groups (
    name text PRIMARY KEY,
    role text NOT NULL UNIQUE  -- the PostgreSQL role that stands for the group
);
REVOKE ALL ON shiftguard_rows.groups FROM PUBLIC;

-- Redshift RBAC roles (policy/roles.py). A role is the PostgreSQL role of the same name.
CREATE TABLE IF NOT EXISTS shiftguard_rows.roles (
    name        text PRIMARY KEY,
    owner       text NOT NULL,   -- the user who created it (a role admin)
    external_id text,
    created     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON shiftguard_rows.roles FROM PUBLIC;

-- System permissions granted to roles (GRANT CREATE USER TO ROLE r).
CREATE TABLE IF NOT EXISTS shiftguard_rows.system_privileges (
    role      text NOT NULL REFERENCES shiftguard_rows.roles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    privilege text NOT NULL,
    PRIMARY KEY (role, privilege)
);
REVOKE ALL ON shiftguard_rows.system_privileges FROM PUBLIC;

-- Redshift's system roles, present from the start (reference §3). Their permissions are
-- recorded; the proxy honours those for user and role management (see the procedures).
DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['sys:monitor', 'sys:operator', 'sys:dba', 'sys:secadmin', 'sys:superuser'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
        INSERT INTO shiftguard_rows.roles (name, owner) VALUES (v_role, 'rdsdb') ON CONFLICT DO NOTHING;
    END LOOP;
    IF NOT pg_has_role('sys:operator', 'sys:monitor', 'MEMBER') THEN
        GRANT "sys:monitor" TO "sys:operator";
    END IF;
    IF NOT pg_has_role('sys:dba', 'sys:operator', 'MEMBER') THEN
        GRANT "sys:operator" TO "sys:dba";
    END IF;
END
$$;
INSERT INTO shiftguard_rows.system_privileges (role, privilege)
SELECT role, privilege FROM (VALUES
    ('sys:monitor', 'ACCESS CATALOG'), ('sys:monitor', 'ACCESS SYSTEM TABLE'),
    ('sys:operator', 'ANALYZE'), ('sys:operator', 'VACUUM'), ('sys:operator', 'CANCEL'),
    ('sys:dba', 'CREATE SCHEMA'), ('sys:dba', 'DROP SCHEMA'), ('sys:dba', 'CREATE TABLE'),
    ('sys:dba', 'DROP TABLE'), ('sys:dba', 'TRUNCATE TABLE'), ('sys:dba', 'CREATE OR REPLACE PROCEDURE'),
    ('sys:dba', 'DROP PROCEDURE'), ('sys:dba', 'CREATE OR REPLACE FUNCTION'),
    ('sys:dba', 'CREATE OR REPLACE EXTERNAL FUNCTION'), ('sys:dba', 'CREATE OR REPLACE VIEW'), ('sys:dba', 'DROP VIEW'),
    ('sys:secadmin', 'CREATE USER'), ('sys:secadmin', 'ALTER USER'), ('sys:secadmin', 'DROP USER'),
    ('sys:secadmin', 'CREATE ROLE'), ('sys:secadmin', 'DROP ROLE'), ('sys:secadmin', 'IGNORE RLS'),
    ('sys:secadmin', 'EXPLAIN RLS'), ('sys:secadmin', 'EXPLAIN MASKING')) AS defaults (role, privilege)
UNION ALL
SELECT 'sys:superuser', privilege FROM unnest(ARRAY[
    'CREATE USER', 'DROP USER', 'ALTER USER', 'CREATE ROLE', 'DROP ROLE', 'ALTER ROLE', 'CREATE SCHEMA',
    'DROP SCHEMA', 'ALTER DEFAULT PRIVILEGES', 'ACCESS CATALOG', 'ACCESS SYSTEM TABLE', 'CREATE TABLE',
    'DROP TABLE', 'ALTER TABLE', 'TRUNCATE TABLE', 'CREATE OR REPLACE FUNCTION',
    'CREATE OR REPLACE EXTERNAL FUNCTION', 'DROP FUNCTION', 'CREATE OR REPLACE PROCEDURE', 'DROP PROCEDURE',
    'CREATE OR REPLACE VIEW', 'DROP VIEW', 'CREATE MODEL', 'DROP MODEL', 'CREATE DATASHARE', 'ALTER DATASHARE',
    'DROP DATASHARE', 'CREATE LIBRARY', 'DROP LIBRARY', 'ANALYZE', 'CANCEL', 'VACUUM', 'IGNORE RLS',
    'EXPLAIN RLS', 'EXPLAIN MASKING']) AS privilege
ON CONFLICT DO NOTHING;

-- Temporary credentials minted by the Redshift API (iam/tokens.py): what a login needs to check
-- a token (md5 over the prefixed user name, for MD5 logins), and revocation.
CREATE TABLE IF NOT EXISTS shiftguard_rows.iam_tokens (
    token_id uuid PRIMARY KEY,
    db_user  text NOT NULL,            -- IAM:alice, IAMA:alice, IAMR:role
    database text,
    md5      text NOT NULL,            -- md5(token || db_user), hex
    groups   text[] NOT NULL DEFAULT '{}',
    roles    text[] NOT NULL DEFAULT '{}',
    expires  timestamptz NOT NULL,
    revoked  boolean NOT NULL DEFAULT false,
    created  timestamptz NOT NULL DEFAULT now()
);
-- The database user a token logs in as, when it is not the name after the prefix:
-- GetClusterCredentialsWithIAM's users are named with their prefix ("IAMR:role").
ALTER TABLE shiftguard_rows.iam_tokens ADD COLUMN IF NOT EXISTS login_as text;
REVOKE ALL ON shiftguard_rows.iam_tokens FROM PUBLIC;

-- STS AssumeRole sessions (iam/sts.py): who holds which temporary access key, as which role,
-- until when. The secret key and the session token are not stored: each is an HMAC of the
-- access key id under the backend secret (Catalog.sts_secret), so every proxy on this backend
-- derives the same ones and a copy of this table does not sign requests.
CREATE TABLE IF NOT EXISTS shiftguard_rows.sts_sessions (
    access_key_id text PRIMARY KEY,     -- ASIA...
    role          text NOT NULL,
    account       text NOT NULL,
    session_name  text NOT NULL,
    caller        text NOT NULL,        -- the ARN of who assumed the role
    expires       timestamptz NOT NULL,
    created       timestamptz NOT NULL DEFAULT now()
);
-- A federated session's claims (AssumeRoleWithSAML, AssumeRoleWithWebIdentity): its condition
-- keys (saml:sub, ...) and the Redshift SAML attributes (DbUser, AutoCreate, DbGroups).
ALTER TABLE shiftguard_rows.sts_sessions ADD COLUMN IF NOT EXISTS federation jsonb;
REVOKE ALL ON shiftguard_rows.sts_sessions FROM PUBLIC;

-- SAML assertions already used with AssumeRoleWithSAML, kept until they expire so that none is
-- accepted twice by any proxy on this backend.
CREATE TABLE IF NOT EXISTS shiftguard_rows.saml_assertions (
    issuer  text NOT NULL,
    id      text NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (issuer, id)
);
REVOKE ALL ON shiftguard_rows.saml_assertions FROM PUBLIC;

-- Audit logs (audit/): the connection log and user activity, written in batches by the proxy;
-- the user log, written by the user procedures below in the changing transaction.
CREATE TABLE IF NOT EXISTS shiftguard_rows.connection_log (
    id bigserial PRIMARY KEY, event text NOT NULL, recordtime timestamp NOT NULL, remotehost text,
    remoteport text, pid integer, dbname text, username text, authmethod text, duration bigint,
    sslversion text, sslcipher text, mtu integer, sslcompression text, sslexpansion text, iamauthguid text,
    application_name text, os_version text, driver_version text, plugin_name text, protocol_version integer,
    session_id text, reason text
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.user_log (
    id bigserial PRIMARY KEY, userid integer, username text, oldusername text, action text,
    usecreatedb integer, usesuper integer, usecatupd integer, valuntil timestamp, pid integer, xid bigint,
    recordtime timestamp NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC')
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.query_log (
    id bigserial PRIMARY KEY, recordtime timestamp NOT NULL, db text, "user" text, pid integer,
    userid integer, xid bigint, sql text
);
-- A statement's end arrives after its row may be stored; (session_id, seq) names the row.
ALTER TABLE shiftguard_rows.query_log ADD COLUMN IF NOT EXISTS session_id text;
ALTER TABLE shiftguard_rows.query_log ADD COLUMN IF NOT EXISTS seq integer;
ALTER TABLE shiftguard_rows.query_log ADD COLUMN IF NOT EXISTS endtime timestamp;
ALTER TABLE shiftguard_rows.query_log ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'running';
ALTER TABLE shiftguard_rows.query_log ADD COLUMN IF NOT EXISTS error_message text NOT NULL DEFAULT '';
REVOKE ALL ON shiftguard_rows.connection_log, shiftguard_rows.user_log, shiftguard_rows.query_log FROM PUBLIC;

-- The cluster's state is kept in the cluster database; in every other one these tables are
-- foreign tables over it (catalog/store.py CLUSTER_TABLES), which take no index or trigger, and
-- whose inserted rows arrive with a NULL id (postgres_fdw sends every column; a foreign table
-- cannot use the cluster's sequence): filled in here.
CREATE OR REPLACE FUNCTION shiftguard.fill_log_id() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.id IS NULL THEN
        NEW.id := nextval(pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id'));
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.fill_log_id() FROM PUBLIC;
-- Made only where missing: making them locks their tables, and another proxy on this backend
-- may be writing its audit records there meanwhile (a CREATE OR REPLACE TRIGGER at every start
-- met its inserts in a deadlock).
DO $$
DECLARE
    v_table text;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'shiftguard_rows.users'::regclass) = 'r' THEN
        IF to_regclass('shiftguard_rows.iam_tokens_db_user') IS NULL THEN
            CREATE INDEX iam_tokens_db_user ON shiftguard_rows.iam_tokens (db_user);
        END IF;
        IF to_regclass('shiftguard_rows.query_log_statement') IS NULL THEN
            CREATE INDEX query_log_statement ON shiftguard_rows.query_log (session_id, seq);
        END IF;
        FOREACH v_table IN ARRAY ARRAY['connection_log', 'user_log', 'query_log'] LOOP
            IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'fill_id'
                              AND tgrelid = format('shiftguard_rows.%I', v_table)::regclass) THEN
                EXECUTE format('CREATE TRIGGER fill_id BEFORE INSERT ON shiftguard_rows.%I '
                               'FOR EACH ROW EXECUTE FUNCTION shiftguard.fill_log_id()', v_table);
            END IF;
        END LOOP;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION shiftguard.log_user(p_name text, p_action text, p_old text DEFAULT NULL)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO shiftguard_rows.user_log (userid, username, oldusername, action, usecreatedb, usesuper, usecatupd,
                                     valuntil, pid, xid)
    SELECT r.oid::integer, u.name, p_old, p_action, (u.createdb OR u.superuser)::integer, u.superuser::integer, 0,
           u.valid_until AT TIME ZONE 'UTC', pg_backend_pid(), txid_current()
      FROM shiftguard_rows.users u JOIN pg_roles r ON r.rolname = u.name WHERE u.name = p_name
$$;
REVOKE ALL ON FUNCTION shiftguard.log_user(text, text, text) FROM PUBLIC;

-- The version of each database's masked tables and tables with RLS on (masking.sql
-- masked_tables, rls.sql rls_tables), by the database's OID: every change adds one, and the
-- proxies poll them all here, in the cluster database, to read a database's again (server.py).
CREATE TABLE IF NOT EXISTS shiftguard_rows.masking_versions (
    database oid PRIMARY KEY,
    version  bigint NOT NULL DEFAULT 0
);
REVOKE ALL ON shiftguard_rows.masking_versions FROM PUBLIC;
-- A change adds a row here (mask_bump) rather than updating its database's version: that UPDATE
-- held the row's lock to the end of the changing transaction, so a masked table's owner's ALTER
-- TABLE in a transaction left open held up every masking and RLS change of the database. A
-- database's version is its masking_versions.version plus its rows here, which the proxies fold
-- into it (store.py masking_versions): a change counts once it commits, whatever the order of
-- the commits.
CREATE TABLE IF NOT EXISTS shiftguard_rows.masking_changes (
    database oid NOT NULL
);
REVOKE ALL ON shiftguard_rows.masking_changes FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.mask_bump() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO shiftguard_rows.masking_changes (database) SELECT oid FROM pg_database WHERE datname = current_database();
    SELECT pg_notify('shiftguard_masking', '');
$$;
REVOKE ALL ON FUNCTION shiftguard.mask_bump() FROM PUBLIC;

-- Redshift table attributes (DISTSTYLE, DISTKEY, SORTKEY, ENCODE, BACKUP) that PostgreSQL has no
-- place for, recorded from the DDL (policy/dialect.py) for svv_table_info, pg_table_def and the
-- pg_class and pg_attribute views. A table's row goes with it (table_attributes_forget_dropped,
-- from the drop guard and at every start), so its OID alone finds it, renamed or moved too;
-- schema_name and table_name say where it was when last recorded.
CREATE TABLE IF NOT EXISTS shiftguard_rows.table_attributes (
    table_id oid PRIMARY KEY,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    attrs jsonb NOT NULL
);
REVOKE ALL ON shiftguard_rows.table_attributes FROM PUBLIC;

-- Forget the attributes of tables that no longer exist (anyone may: it only tidies). Also run
-- here, at every start: temporary tables end with their session, where no drop guard sees them.
CREATE OR REPLACE FUNCTION shiftguard.table_attributes_forget_dropped() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM shiftguard_rows.table_attributes a WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = a.table_id)
$$;
GRANT EXECUTE ON FUNCTION shiftguard.table_attributes_forget_dropped() TO PUBLIC;
SELECT shiftguard.table_attributes_forget_dropped();

-- Cluster security groups (policy/connectivity.py): seeded from the YAML, changed through the
-- Redshift API (iam/api.py). Every change adds one to connectivity.version, which each proxy on
-- this backend polls; config_digest identifies the YAML section last applied, so that an
-- unchanged YAML does not undo API changes at a restart (docs/connectivity.md). Only the
-- management role reads or writes them.
CREATE TABLE IF NOT EXISTS shiftguard_rows.connectivity (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version bigint NOT NULL DEFAULT 0,
    config_digest text
);
INSERT INTO shiftguard_rows.connectivity (id) VALUES (1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS shiftguard_rows.security_groups (
    name text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    attached_position integer  -- NULL: not attached to the cluster
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.security_group_ingress (
    group_name text NOT NULL REFERENCES shiftguard_rows.security_groups (name) ON DELETE CASCADE,
    cidr text NOT NULL,  -- canonical (policy/connectivity.py canonical_cidr)
    added bigserial,
    PRIMARY KEY (group_name, cidr)
);
REVOKE ALL ON shiftguard_rows.connectivity, shiftguard_rows.security_groups, shiftguard_rows.security_group_ingress FROM PUBLIC;

-- IAM roles associated with the cluster, which COPY and UNLOAD may name (catalog/s3.sql,
-- iam/s3access.py), and the one IAM_ROLE DEFAULT names: seeded from cluster.iam_roles and
-- cluster.default_iam_role when those differ from what settings 'iam_roles_config' says was
-- applied last (so an unchanged YAML does not undo the API's changes at a restart), changed by
-- ModifyClusterIamRoles (iam/api.py). Read where a statement runs, so a change holds at once on
-- every proxy of this backend.
CREATE TABLE IF NOT EXISTS shiftguard_rows.cluster_iam_roles (
    role_arn   text PRIMARY KEY,
    is_default boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS cluster_iam_roles_default ON shiftguard_rows.cluster_iam_roles (is_default) WHERE is_default;
REVOKE ALL ON shiftguard_rows.cluster_iam_roles FROM PUBLIC;
-- Cluster parameter groups (policy/parameter_groups.py) and each cluster's management state,
-- changed through the Redshift API (iam/api.py). parameters holds the values set in a group
-- (source 'user'); the default group default.redshift-1.0 is not stored. A cluster's applied
-- values are those in force since its last RebootCluster; every change a proxy must act on
-- (a reboot, logging switched) adds one to version, which each proxy on this backend polls
-- (catalog/cluster.py). Only the management role reads or writes them.
CREATE TABLE IF NOT EXISTS shiftguard_rows.parameter_groups (
    name text PRIMARY KEY,
    family text NOT NULL,
    description text NOT NULL DEFAULT '',
    parameters jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS shiftguard_rows.clusters (
    identifier text PRIMARY KEY,
    parameter_group text NOT NULL DEFAULT 'default.redshift-1.0',
    applied_group text NOT NULL DEFAULT 'default.redshift-1.0',
    applied jsonb NOT NULL DEFAULT '{}',
    reboots bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    logging jsonb,  -- EnableLogging: bucket, prefix, exports; NULL: audit logs are not delivered
    tags jsonb NOT NULL DEFAULT '{}'  -- CreateTags: key -> value
);
REVOKE ALL ON shiftguard_rows.parameter_groups, shiftguard_rows.clusters FROM PUBLIC;

-- Redshift-only object privileges PostgreSQL has no bit for (DROP and ALTER on tables, ALTER
-- and DROP on schemas, ALTER and USAGE on databases): catalog/privileges.sql keeps and honours
-- them. grantee is a PostgreSQL role name ('' for PUBLIC).
CREATE TABLE IF NOT EXISTS shiftguard_rows.object_privileges (
    object_type  text NOT NULL CHECK (object_type IN ('table', 'schema', 'database')),
    object_oid   oid NOT NULL,
    grantee      text NOT NULL,
    privilege    text NOT NULL CHECK (privilege IN ('DROP', 'ALTER', 'USAGE')),
    grant_option boolean NOT NULL DEFAULT false,
    grantor      text NOT NULL,
    PRIMARY KEY (object_type, object_oid, grantee, privilege)
);
REVOKE ALL ON shiftguard_rows.object_privileges FROM PUBLIC;

-- Explicit Redshift-only grants, shaped like aclexplode() for the SVV_*_PRIVILEGES views. Not
-- for PUBLIC: those views read it with their owner's rights and show each user what it may see.
CREATE OR REPLACE VIEW shiftguard.redshift_acl AS
    SELECT o.object_type, o.object_oid, coalesce(r.oid, 0) AS grantee, o.privilege AS privilege_type,
           o.grant_option AS is_grantable
      FROM shiftguard_rows.object_privileges o LEFT JOIN pg_roles r ON r.rolname = o.grantee
     WHERE o.grantee = '' OR r.oid IS NOT NULL;
REVOKE ALL ON shiftguard.redshift_acl FROM PUBLIC;

DROP PROCEDURE IF EXISTS shiftguard.create_user(text, text, boolean, text);
DROP PROCEDURE IF EXISTS shiftguard.set_password(text, text);

-- Did the proxy write this, just now? p_signature is issued || ':' || HMAC-SHA-256 under the
-- backend secret of purpose || ':' || issued || ':' || payload, issued the Unix time the proxy
-- signed it (policy/signing.py). Procedures that turn text into SQL take only what the proxy
-- parsed and printed back, so a user calling them directly with text of their own gets nowhere;
-- and a signature seen once (pg_stat_activity, a log) is refused once it is more than 600 s
-- (signing.LIFETIME, either way: clocks differ) away from the start of the statement carrying
-- it (statement_timestamp(): the later statements of a long batch are still on time, and a
-- long-running statement takes no signature made more than 600 s after it started). The
-- comparison is of hashes of both sides, so its time says nothing about a forged signature.
CREATE OR REPLACE FUNCTION shiftguard.signed(p_purpose text, p_payload text, p_signature text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_key   bytea := decode((SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'), 'hex');
    v_issued text := substring(p_signature FROM '^([0-9]{1,12}):[0-9a-f]{64}$');
BEGIN
    IF v_issued IS NULL THEN
        RETURN false;
    END IF;
    -- Never NULL (a NULL payload or key): callers test IF NOT shiftguard.signed(...).
    IF NOT coalesce(sha256(convert_to(encode(shiftguard.hmac_sha256(v_key, convert_to(
                        p_purpose || ':' || v_issued || ':' || p_payload, 'UTF8')), 'hex'), 'UTF8'))
                    = sha256(convert_to(substr(p_signature, length(v_issued) + 2), 'UTF8')), false) THEN
        RETURN false;
    END IF;
    IF abs(extract(epoch FROM statement_timestamp()) - v_issued::numeric) > 600 THEN
        RAISE EXCEPTION 'permission denied: shiftguard''s signature on this statement is % seconds old',
                        round(extract(epoch FROM statement_timestamp()) - v_issued::numeric)
            USING ERRCODE = '42501',
                  HINT = 'What shiftguard signs must run within 10 minutes: send the statement again (or prepare it '
                         'again). If this keeps happening, the clocks of the proxy and of PostgreSQL differ.';
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.signed(text, text, text) FROM PUBLIC;

-- Event triggers need a superuser to create; where the management role is not one, this does
-- nothing (the files that use it say what then guards instead). A trigger of that name whose
-- event, tags or function differ, or that is disabled, is made again: a database bootstrapped by
-- an older version gets the guards this one installs.
CREATE OR REPLACE FUNCTION shiftguard.ensure_event_trigger(p_name text, p_event text, p_tags text[], p_function text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_existing pg_event_trigger;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    SELECT * INTO v_existing FROM pg_event_trigger WHERE evtname = p_name;
    IF FOUND THEN
        IF v_existing.evtevent = p_event AND v_existing.evtfoid = p_function::regproc::oid
                AND v_existing.evtenabled IN ('O', 'A')
                AND (SELECT array_agg(t ORDER BY t) FROM unnest(v_existing.evttags) t)  -- stored upper-cased
                    IS NOT DISTINCT FROM (SELECT array_agg(upper(t) ORDER BY upper(t)) FROM unnest(p_tags) t) THEN
            RETURN;
        END IF;
        EXECUTE format('DROP EVENT TRIGGER %I', p_name);
    END IF;
    EXECUTE format('CREATE EVENT TRIGGER %I ON %I %s EXECUTE FUNCTION %s()', p_name, p_event,
                   CASE WHEN p_tags IS NULL THEN ''
                        ELSE format('WHEN TAG IN (%s)', (SELECT string_agg(quote_literal(t), ', ') FROM unnest(p_tags) t))
                   END, p_function::regproc);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.ensure_event_trigger(text, text, text[], text) FROM PUBLIC;

-- Is the session's login role a Redshift superuser (or the management role itself)?
-- Who calls. shiftguard's SECURITY DEFINER functions run as the management role, so the caller
-- is not current_user there; session_user is not the caller either whenever code runs as someone
-- else in the session: an admin's ANALYZE (VACUUM, CREATE INDEX, REINDEX, CLUSTER, REFRESH)
-- runs the table owner's index expressions and view queries as the owner, with session_user
-- still the admin, and a SECURITY DEFINER function of one user runs in another's session. Any
-- check of session_user there took the owner's code for the admin (a user's index expression
-- made its owner a superuser during the admin's ANALYZE). The caller is current_user where the
-- call is made, as PostgreSQL's own checks take it: each role has a secret key, which only it
-- reads (view shiftguard.caller_key_of_current_user, filtered by current_user); every function
-- that asks who calls is an INVOKER wrapper, which reads the key where it is called and passes
-- it on to the function doing the work (name__keyed, SECURITY DEFINER), which looks the key up
-- (caller_of). A role's key is a hash of its OID and the backend secret (shiftguard_rows.settings,
-- copied into every database): every role has one, in every database, with no row to make
-- or to wait on. What a role reads is its key bound to the backend it reads it in (hashed with
-- the backend's pid and start time): one that code of a user's, run as an admin (the admin
-- reading the user's view), sends out is of no use in another session. Keys pass only as
-- function arguments (no setting, no log line holds one). The functions on the way from a key
-- to its role are PL/pgSQL: PostgreSQL plans a SQL function's queries again at every statement
-- that calls it (a PL/pgSQL function's once a session), and these run in most statements
-- shiftguard makes (caller_is_superuser took 0.4 ms a call as SQL, 0.08 ms as PL/pgSQL).

-- HMAC-SHA256 (RFC 2104), for keys of up to 64 bytes.
CREATE OR REPLACE FUNCTION shiftguard.hmac_sha256(p_key bytea, p_message bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_block bytea := p_key || decode(repeat('00', 64 - length(p_key)), 'hex');
    v_inner bytea := v_block;
    v_outer bytea := v_block;
BEGIN
    FOR i IN 0..63 LOOP
        v_inner := set_byte(v_inner, i, get_byte(v_block, i) # 54);  -- ipad, 0x36
        v_outer := set_byte(v_outer, i, get_byte(v_block, i) # 92);  -- opad, 0x5c
    END LOOP;
    RETURN sha256(v_outer || sha256(v_inner || p_message));
END
$$;

-- This backend's pid and start time. SECURITY DEFINER: the start time is hidden from a
-- current_user other than the backend's login role (SET SESSION AUTHORIZATION, an index
-- expression run as its owner); a management role that is no superuser sees only its own
-- backends' (grant it pg_read_all_stats), and elsewhere binds keys to the pid alone.
CREATE OR REPLACE FUNCTION shiftguard.backend_identity() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN pg_backend_pid()::text || ':'
           || coalesce((SELECT extract(epoch FROM a.backend_start)::text FROM pg_stat_get_activity(pg_backend_pid()) a), '');
END
$$;

-- A role's key bound to this backend: 'oid:' and sha256(key, backend_identity()), the role's
-- key being sha256('caller:<oid>:', secret). Plain hashes (HMAC in PL/pgSQL cost a millisecond
-- a call): the secret comes last, so no length extension reaches another role's key, and a
-- bound key, the only form a role sees, tells nothing of its key.
CREATE OR REPLACE FUNCTION shiftguard.bound_key(p_role oid, p_secret text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN p_role::text || ':' || encode(sha256(
               sha256(convert_to('caller:' || p_role::text || ':', 'UTF8') || decode(p_secret, 'hex'))
               || convert_to(':' || shiftguard.backend_identity(), 'UTF8')), 'hex');
END
$$;

-- current_user's key: current_user in a view is whoever queries it, not the view's owner, who
-- alone reads the secret.
CREATE OR REPLACE VIEW shiftguard.caller_key_of_current_user WITH (security_barrier) AS
    SELECT shiftguard.bound_key(r.oid, s.value) AS key
      FROM pg_roles r, shiftguard_rows.settings s
     WHERE r.rolname = current_user AND s.name = 'backend_secret'
       AND (EXISTS (SELECT FROM shiftguard_rows.users u WHERE u.name = r.rolname::text)
            OR r.oid = (SELECT nspowner FROM pg_namespace WHERE nspname = 'shiftguard'));
REVOKE ALL ON shiftguard.caller_key_of_current_user FROM PUBLIC;
GRANT SELECT ON shiftguard.caller_key_of_current_user TO PUBLIC;

-- The management role (the owner of schema shiftguard), as a name.
CREATE OR REPLACE FUNCTION shiftguard.management_role() RETURNS name
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'shiftguard');
END
$$;

-- The key of whoever calls (INVOKER): current_user's. Inside shiftguard's own SECURITY DEFINER
-- functions current_user is the management role, never the caller: a wrapper called there has
-- lost its caller (the function must pass the key it was given, or role_key's of the role it
-- acts for), and is refused rather than answered for the session user or the management role
-- (autovacuum's ANALYZE runs index expressions with the management role as session_user).
-- Refused too under SET ROLE (the proxy refuses the statement; a DO block's EXECUTE is not
-- seen): PostgreSQL 15 lets every member act as a group, and as every user's shiftguard_users,
-- to which no RLS or masking attachment of the user's reaches. A SECURITY DEFINER function
-- changes current_user but not the setting, so this asks only whether SET ROLE is in force.
-- And refused for a current_user that is no Redshift user (nor the management role): a user
-- may give what it owns to a group it is in, or to shiftguard_users, and code that runs as its
-- owner (a SECURITY DEFINER function, a materialized view's refresh, an index expression under
-- ANALYZE) then runs as that role, which no attachment of the user's reaches either.
CREATE OR REPLACE FUNCTION shiftguard.caller_key() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_key text;
BEGIN
    IF current_user <> session_user AND current_user = shiftguard.management_role() THEN
        RAISE EXCEPTION 'shiftguard: a function of shiftguard''s asked who calls it from inside another'
            USING ERRCODE = 'XX000';
    END IF;
    IF current_setting('role') <> 'none' THEN
        RAISE EXCEPTION 'SET ROLE is not supported by shiftguard' USING ERRCODE = '0A000',
            DETAIL = 'Acting as a group or role would shed the row-level security and masking attached to the user.',
            HINT = 'Amazon Redshift has no SET ROLE; RESET ROLE first.';
    END IF;
    v_key := (SELECT key FROM shiftguard.caller_key_of_current_user);
    IF v_key IS NULL AND current_user <> shiftguard.management_role() THEN  -- (its own: none before the secret is made)
        RAISE EXCEPTION 'permission denied: "%" is no Redshift user', current_user USING ERRCODE = '42501',
            DETAIL = 'Code runs as a group or role when it owns it (a SECURITY DEFINER function, a materialized '
                     'view''s query); shiftguard answers only for users.',
            HINT = 'Give the object to a user: Amazon Redshift''s groups and roles own nothing.';
    END IF;
    RETURN v_key;
END
$$;

-- A role's key as this backend shows it, for shiftguard's own functions acting for a role they
-- know: a view's owner after its refresh, a new table's owner, the session user a COPY or
-- UNLOAD ticket names. Internal.
CREATE OR REPLACE FUNCTION shiftguard.role_key(p_role oid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT shiftguard.bound_key(p_role, s.value) FROM shiftguard_rows.settings s WHERE s.name = 'backend_secret');
END
$$;
REVOKE ALL ON FUNCTION shiftguard.role_key(oid) FROM PUBLIC;

-- The role whose key this is (as this backend shows it); NULL for none.
CREATE OR REPLACE FUNCTION shiftguard.key_owner(p_key text) RETURNS name
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_role text := split_part(p_key, ':', 1);
BEGIN
    IF v_role !~ '^[0-9]{1,10}$' OR v_role::bigint > 4294967295 THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT r.rolname FROM pg_roles r WHERE r.oid = v_role::oid
               AND sha256(convert_to(shiftguard.role_key(r.oid), 'UTF8')) = sha256(convert_to(p_key, 'UTF8')));  -- (constant time)
END
$$;
REVOKE ALL ON FUNCTION shiftguard.key_owner(text) FROM PUBLIC;

-- The role whose key this is, or an error: where a function acts on its caller's behalf.
CREATE OR REPLACE FUNCTION shiftguard.caller_of(p_key text) RETURNS name
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_role name := shiftguard.key_owner(p_key);
BEGIN
    IF v_role IS NULL THEN
        RAISE EXCEPTION 'permission denied: the calling role is not known to shiftguard' USING ERRCODE = '42501';
    END IF;
    RETURN v_role;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.caller_of(text) FROM PUBLIC;

-- Is this role a Redshift superuser (or the management role)? Internal: it takes a name.
CREATE OR REPLACE FUNCTION shiftguard.role_is_superuser(p_role name) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce(p_role = shiftguard.management_role()
                    OR (SELECT u.superuser FROM shiftguard_rows.users u WHERE u.name = p_role::text), false);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.role_is_superuser(name) FROM PUBLIC;

-- May this role do what a system permission allows (superuser, or the permission granted to a
-- role it has, directly or through other roles)? Internal: it takes a name.
CREATE OR REPLACE FUNCTION shiftguard.role_may(p_role name, p_permission text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN shiftguard.role_is_superuser(p_role) OR coalesce(EXISTS (
        SELECT FROM shiftguard_rows.system_privileges sp JOIN pg_roles r ON r.rolname = sp.role
         WHERE sp.privilege = p_permission AND pg_has_role(p_role, r.oid, 'USAGE')), false);
END
$$;
REVOKE ALL ON FUNCTION shiftguard.role_may(name, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.caller_is_superuser__keyed(p_key text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN shiftguard.role_is_superuser(shiftguard.key_owner(p_key));
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_is_superuser__keyed(text) TO PUBLIC;
-- Is the caller a Redshift superuser (or the management role)?
CREATE OR REPLACE FUNCTION shiftguard.caller_is_superuser() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.caller_is_superuser__keyed(shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_is_superuser() TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.caller_may__keyed(p_permission text, p_key text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN shiftguard.role_may(shiftguard.key_owner(p_key), p_permission);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_may__keyed(text, text) TO PUBLIC;
-- May the caller do what a system permission allows?
CREATE OR REPLACE FUNCTION shiftguard.caller_may(p_permission text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.caller_may__keyed($1, shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_may(text) TO PUBLIC;

-- Name resolution (DESIGN principle 7). Every function here runs with search_path = pg_catalog,
-- pg_temp: PUBLIC may create functions in schema public, and PostgreSQL prefers a better-matching
-- overload there (public.format(text, text)) to the built-in, even with pg_catalog first. Where a
-- statement of the caller's must resolve its names as the caller would have (the table of a
-- GRANT, the query of an EXPLAIN), the call passes the caller's search_path and these run that
-- one statement with it. Their own SET restores the pinned path when they return, so nothing of
-- ours is ever resolved with the caller's path. They run as whoever calls them.
CREATE OR REPLACE FUNCTION shiftguard.caller_execute(p_sql text, p_search_path text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', coalesce(p_search_path, 'pg_catalog, pg_temp'), true);
    EXECUTE p_sql;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_execute(text, text) TO PUBLIC;

-- CREATE SCHEMA db.s and DROP SCHEMA db.s (policy/dialect.py took db out of p_sql): run in the
-- database they name, which must be this one. PostgreSQL cannot reach another database from
-- this session: refused as it refuses a cross-database name.
CREATE OR REPLACE PROCEDURE shiftguard.in_database(p_database text, p_sql text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = p_database) THEN
        RAISE EXCEPTION 'database "%" does not exist', p_database USING ERRCODE = '3D000';
    ELSIF p_database <> pg_catalog.current_database() THEN
        RAISE EXCEPTION 'cross-database references are not implemented: "%"', p_database USING ERRCODE = '0A000';
    END IF;
    PERFORM shiftguard.caller_execute(p_sql, p_search_path);
END
$$;
GRANT EXECUTE ON PROCEDURE shiftguard.in_database(text, text, text) TO PUBLIC;

-- The rows of p_sql (one column, as text) run with the caller's search_path.
CREATE OR REPLACE FUNCTION shiftguard.caller_rows(p_sql text, p_search_path text) RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', coalesce(p_search_path, 'pg_catalog, pg_temp'), true);
    FOR v_row IN EXECUTE p_sql LOOP
        RETURN NEXT v_row;
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_rows(text, text) TO PUBLIC;

-- A relation named as the caller names it (with the caller's search_path), or NULL.
CREATE OR REPLACE FUNCTION shiftguard.caller_regclass(p_name text, p_search_path text) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', coalesce(p_search_path, 'pg_catalog, pg_temp'), true);
    RETURN pg_catalog.to_regclass(p_name);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_regclass(text, text) TO PUBLIC;

-- caller_regclass, or PostgreSQL's error for a relation that does not exist.
CREATE OR REPLACE FUNCTION shiftguard.caller_relation(p_name text, p_search_path text) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relation regclass := shiftguard.caller_regclass(p_name, p_search_path);
BEGIN
    IF v_relation IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', p_name USING ERRCODE = '42P01';
    END IF;
    RETURN v_relation;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.caller_relation(text, text) TO PUBLIC;

-- Objects that SQL run for everyone (RLS predicates, masking expressions) may use: those of a
-- PostgreSQL superuser, a Redshift superuser, or shiftguard itself. Anyone else could replace
-- their function's body later, and it would then run as each user who reads the table.
CREATE OR REPLACE FUNCTION shiftguard.trusted_role(p_role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_roles r WHERE r.oid = p_role
                     AND (r.rolsuper OR r.oid = (SELECT nspowner FROM pg_namespace WHERE nspname = 'shiftguard')
                          OR r.rolname IN ('shiftguard_rls', 'shiftguard_mask', 'shiftguard_views')
                          OR EXISTS (SELECT FROM shiftguard_rows.users u WHERE u.name = r.rolname::text AND u.superuser)))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.trusted_role(oid) TO PUBLIC;  -- it tells only what a role is

-- Until 2026-12 a user's CREATE RULE and CREATE TRIGGER waited at most two seconds for a lock:
-- they lock their table before PostgreSQL asks whether the caller owns it, and shiftguard's
-- tables were anyone's to name. They are not (schema shiftguard_rows), and a user's request for
-- an ACCESS EXCLUSIVE lock of a view of schema shiftguard is cancelled by the proxy
-- (catalog/store.py cancel_queued_locks), whatever the statement.
DROP EVENT TRIGGER IF EXISTS shiftguard_guard_lock_first;
DROP EVENT TRIGGER IF EXISTS shiftguard_guard_lock_first_end;
DROP FUNCTION IF EXISTS shiftguard.guard_lock_first();
DROP FUNCTION IF EXISTS shiftguard.guard_lock_first_end();

-- What only trusted roles may create (Redshift has none of it): operators and what picks them
-- (classes, families), casts, conversions and text search objects, which change what every
-- session's expressions resolve to. And no function of anyone else's may be named like a
-- built-in one unless it takes exactly the built-in's argument types (then the built-in, in
-- pg_catalog, is found first, as Redshift documents for UDFs): public.array_to_string(text[],
-- text) would be preferred to pg_catalog's array_to_string(anyarray, text) by every session
-- with public on its path. The proxy refuses the statements it sees (policy/statements.py);
-- this event trigger refuses them from function bodies and DO blocks too.
CREATE OR REPLACE FUNCTION shiftguard.require_trusted_ddl(p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
        RAISE EXCEPTION '% is not supported', p_what USING ERRCODE = '0A000',
            HINT = 'Amazon Redshift has no such feature; shiftguard allows it to superusers only, because it '
                   'changes what every session''s SQL resolves to.';
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.require_trusted_ddl(text) TO PUBLIC;

-- A statement only trusted roles may run (CREATE OPERATOR, CREATE CAST, ...), as the proxy
-- rewrites it: refused for everyone else, else run as the caller with the caller's search_path.
CREATE OR REPLACE PROCEDURE shiftguard.trusted_ddl(p_what text, p_statement text, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM shiftguard.require_trusted_ddl(p_what);
    PERFORM shiftguard.caller_execute(p_statement, p_search_path);
END
$$;

-- A schema named like another role comes first on that role's search_path ("$user", public):
-- its tables and views would stand in for the ones that role means. Allowed: the schema of the
-- role of its name (CREATE SCHEMA AUTHORIZATION), and a trusted role's schema made by a trusted
-- role. Neither session_user (the admin, while an admin's ANALYZE runs a user's index
-- expression as the user) nor the management role running the CREATE SCHEMA permission for
-- a user counts: the schema's owner and current_user do.
CREATE OR REPLACE FUNCTION shiftguard.require_own_schema_name(p_schema oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name  name := (SELECT nspname FROM pg_namespace WHERE oid = p_schema);
    v_owner oid := (SELECT nspowner FROM pg_namespace WHERE oid = p_schema);
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_name AND oid <> v_owner)
            AND NOT (shiftguard.trusted_role(v_owner)
                     AND shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user))) THEN
        RAISE EXCEPTION 'a schema cannot be named like another user or role ("%")', v_name USING ERRCODE = '42501',
            HINT = 'It would come first on that user''s search_path ("$user", public).';
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.require_own_schema_name(oid) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.guard_name_resolution() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_command record;
    v_proc    pg_proc;
BEGIN
    FOR v_command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF v_command.command_tag IN ('CREATE SCHEMA', 'ALTER SCHEMA') THEN
            PERFORM shiftguard.require_own_schema_name(v_command.objid);
            CONTINUE;
        END IF;
        IF v_command.command_tag NOT IN ('CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE AGGREGATE', 'ALTER AGGREGATE',
                                         'ALTER ROUTINE') THEN
            PERFORM shiftguard.require_trusted_ddl(v_command.command_tag);
            CONTINUE;
        END IF;
        SELECT * INTO v_proc FROM pg_proc WHERE oid = v_command.objid;
        IF FOUND AND v_proc.pronamespace <> 'pg_catalog'::regnamespace AND v_proc.prokind IN ('f', 'a', 'w')
                AND EXISTS (SELECT FROM pg_proc b WHERE b.pronamespace = 'pg_catalog'::regnamespace
                               AND b.proname = v_proc.proname AND b.prokind IN ('f', 'a', 'w'))
                AND NOT EXISTS (SELECT FROM pg_proc b WHERE b.pronamespace = 'pg_catalog'::regnamespace
                                   AND b.proname = v_proc.proname AND b.proargtypes = v_proc.proargtypes)
                AND NOT shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
            RAISE EXCEPTION 'function %(%) would stand in for the built-in function %', v_proc.proname,
                pg_get_function_identity_arguments(v_proc.oid), v_proc.proname USING ERRCODE = '42723',
                HINT = 'Name it otherwise: Amazon Redshift reserves the f_ prefix for user-defined functions.';
        END IF;
    END LOOP;
END
$$;
-- What the rules above would refuse but exists already (made before shiftguard guarded it, or
-- on a backend without event triggers): the proxy logs it at start, for an admin to look at.
CREATE OR REPLACE FUNCTION shiftguard.untrusted_definitions() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_describe_object('pg_operator'::regclass, oid, 0) FROM pg_operator
     WHERE NOT shiftguard.trusted_role(oprowner)
    UNION ALL
    SELECT pg_describe_object('pg_cast'::regclass, c.oid, 0) FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
     WHERE NOT shiftguard.trusted_role(p.proowner)
    UNION ALL
    SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0) FROM pg_proc p
     WHERE p.pronamespace <> 'pg_catalog'::regnamespace AND p.prokind IN ('f', 'a', 'w')
       AND NOT shiftguard.trusted_role(p.proowner)
       AND EXISTS (SELECT FROM pg_proc b WHERE b.pronamespace = 'pg_catalog'::regnamespace AND b.proname = p.proname)
       AND NOT EXISTS (SELECT FROM pg_proc b WHERE b.pronamespace = 'pg_catalog'::regnamespace
                          AND b.proname = p.proname AND b.proargtypes = p.proargtypes)
    UNION ALL
    SELECT pg_describe_object('pg_conversion'::regclass, oid, 0) FROM pg_conversion WHERE NOT shiftguard.trusted_role(conowner)
    UNION ALL
    SELECT pg_describe_object('pg_ts_config'::regclass, oid, 0) FROM pg_ts_config WHERE NOT shiftguard.trusted_role(cfgowner)
    UNION ALL
    SELECT pg_describe_object('pg_ts_dict'::regclass, oid, 0) FROM pg_ts_dict WHERE NOT shiftguard.trusted_role(dictowner)
$$;
REVOKE ALL ON FUNCTION shiftguard.untrusted_definitions() FROM PUBLIC;

SELECT shiftguard.ensure_event_trigger('shiftguard_guard_name_resolution', 'ddl_command_end',
    ARRAY['CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE AGGREGATE', 'ALTER AGGREGATE', 'ALTER ROUTINE',
          'CREATE SCHEMA', 'ALTER SCHEMA',
          'CREATE OPERATOR', 'ALTER OPERATOR', 'CREATE OPERATOR CLASS', 'ALTER OPERATOR CLASS',
          'CREATE OPERATOR FAMILY', 'ALTER OPERATOR FAMILY', 'CREATE CAST', 'CREATE CONVERSION',
          'ALTER CONVERSION', 'CREATE TEXT SEARCH CONFIGURATION', 'ALTER TEXT SEARCH CONFIGURATION',
          'CREATE TEXT SEARCH DICTIONARY', 'ALTER TEXT SEARCH DICTIONARY', 'CREATE TEXT SEARCH PARSER',
          'ALTER TEXT SEARCH PARSER', 'CREATE TEXT SEARCH TEMPLATE', 'ALTER TEXT SEARCH TEMPLATE'],
    'shiftguard.guard_name_resolution');

-- The first object that the body of function p_function refers to and that is not trusted (as
-- pg_describe_object words it), or NULL. The body must be a SQL-standard one (RETURN or BEGIN
-- ATOMIC), whose references PostgreSQL records in pg_depend when it is created. Tables and
-- sequences run no code when read and may be anyone's; everything that runs code or decides
-- what code runs (functions, operators, casts, types and domains, views, collations, text
-- search objects, conversions, languages) must be trusted.
CREATE OR REPLACE FUNCTION shiftguard.untrusted_reference(p_function oid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_describe_object(d.refclassid, d.refobjid, 0) FROM pg_depend d
     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p_function
       AND NOT coalesce(CASE d.refclassid
           WHEN 'pg_namespace'::regclass THEN true
           WHEN 'pg_class'::regclass THEN (SELECT c.relkind IN ('r', 'p', 'S') OR shiftguard.trusted_role(c.relowner)
                                             FROM pg_class c WHERE c.oid = d.refobjid)
           WHEN 'pg_type'::regclass THEN (
               SELECT coalesce(c.relkind IN ('r', 'p'), false) OR shiftguard.trusted_role(t.typowner)
                 FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid WHERE t.oid = d.refobjid)
           WHEN 'pg_proc'::regclass THEN (SELECT shiftguard.trusted_role(proowner) FROM pg_proc WHERE oid = d.refobjid)
           WHEN 'pg_operator'::regclass THEN (SELECT shiftguard.trusted_role(oprowner) FROM pg_operator
                                                WHERE oid = d.refobjid)
           WHEN 'pg_cast'::regclass THEN (
               SELECT CASE WHEN c.castfunc <> 0 THEN (SELECT shiftguard.trusted_role(proowner) FROM pg_proc
                                                        WHERE oid = c.castfunc)
                           ELSE (SELECT bool_and(shiftguard.trusted_role(typowner)) FROM pg_type
                                  WHERE oid IN (c.castsource, c.casttarget)) END
                 FROM pg_cast c WHERE c.oid = d.refobjid)
           WHEN 'pg_collation'::regclass THEN (SELECT shiftguard.trusted_role(collowner) FROM pg_collation
                                                 WHERE oid = d.refobjid)
           WHEN 'pg_language'::regclass THEN (SELECT shiftguard.trusted_role(lanowner) FROM pg_language
                                                WHERE oid = d.refobjid)
           WHEN 'pg_ts_config'::regclass THEN (SELECT shiftguard.trusted_role(cfgowner) FROM pg_ts_config
                                                 WHERE oid = d.refobjid)
           WHEN 'pg_ts_dict'::regclass THEN (SELECT shiftguard.trusted_role(dictowner) FROM pg_ts_dict
                                               WHERE oid = d.refobjid)
           WHEN 'pg_conversion'::regclass THEN (SELECT shiftguard.trusted_role(conowner) FROM pg_conversion
                                                  WHERE oid = d.refobjid)
           END, false)
     ORDER BY d.refclassid, d.refobjid LIMIT 1
$$;
REVOKE ALL ON FUNCTION shiftguard.untrusted_reference(oid) FROM PUBLIC;

-- Refuse a policy's function (p_what names the policy) whose body reached something untrusted.
CREATE OR REPLACE FUNCTION shiftguard.require_trusted_body(p_function regprocedure, p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_untrusted text := shiftguard.untrusted_reference(p_function);
BEGIN
    IF v_untrusted IS NOT NULL THEN
        RAISE EXCEPTION '% uses %, which only a superuser may own', p_what, v_untrusted USING ERRCODE = '42501',
            HINT = 'It runs for every user it applies to: it may use built-in functions and operators, tables, '
                   'and what superusers own (another owner could change it later).';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.require_trusted_body(regprocedure, text) FROM PUBLIC;

-- For the superuser-only catalog views: permission denied, worded as Redshift words it.
CREATE OR REPLACE FUNCTION shiftguard.require_superuser(p_relation text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT shiftguard.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied for relation %', p_relation USING ERRCODE = '42501';
    END IF;
    RETURN true;
END
$$;

-- Role attributes that make a Redshift superuser on this backend: SUPERUSER where the backend
-- is shiftguard's own, CREATEDB CREATEROLE on an external one (docs/external-postgresql.md).
CREATE OR REPLACE FUNCTION shiftguard.role_attributes(p_superuser boolean, p_createdb boolean) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_superuser AND (SELECT value FROM shiftguard_rows.settings WHERE name = 'superuser_mapping') = 'superuser'
            THEN 'SUPERUSER CREATEDB CREATEROLE'
        WHEN p_superuser THEN 'NOSUPERUSER CREATEDB CREATEROLE'
        ELSE 'NOSUPERUSER NOCREATEROLE ' || CASE WHEN p_createdb THEN 'CREATEDB' ELSE 'NOCREATEDB' END
    END
$$;
REVOKE ALL ON FUNCTION shiftguard.role_attributes(boolean, boolean) FROM PUBLIC;

-- Store the verifiers of a PASSWORD clause ({} = DISABLE) on a user's row.
CREATE OR REPLACE FUNCTION shiftguard.store_password(p_name text, p_password jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE shiftguard_rows.users
       SET password_md5 = p_password->>'md5', password_sha256 = p_password->>'sha256',
           password_salt = p_password->>'salt', password_scram = p_password->>'scram'
     WHERE name = p_name
$$;
REVOKE ALL ON FUNCTION shiftguard.store_password(text, jsonb) FROM PUBLIC;

-- Group membership: the member inherits the group's privileges. Where PostgreSQL can say so
-- (16 and newer), the member may not SET ROLE to the group.
CREATE OR REPLACE FUNCTION shiftguard.add_member(p_role text, p_user text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE format('GRANT %I TO %I WITH INHERIT TRUE, SET FALSE', p_role, p_user);
    ELSE
        EXECUTE format('GRANT %I TO %I', p_role, p_user);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.add_member(text, text) FROM PUBLIC;

-- CREATE USER, with the options parsed by the proxy (policy/users.py) as JSON.
CREATE OR REPLACE PROCEDURE shiftguard.create_user__keyed(p_name text, p_options jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_super    boolean := coalesce((p_options->>'superuser')::boolean, false);
    v_createdb boolean := coalesce((p_options->>'createdb')::boolean, false);
    v_limit    integer := coalesce((p_options->>'connection_limit')::integer, -1);
    v_valid    timestamptz := (p_options->>'valid_until')::timestamptz;
    v_group    text;
    v_role     text;
BEGIN
    IF NOT shiftguard.role_may(v_caller, 'CREATE USER') THEN
        RAISE EXCEPTION 'permission denied to create user' USING ERRCODE = '42501';  -- UNVERIFIED wording
    END IF;
    IF v_super AND NOT shiftguard.role_is_superuser(v_caller) THEN
        RAISE EXCEPTION 'only a superuser can create a superuser' USING ERRCODE = '42501';  -- UNVERIFIED
    END IF;
    IF EXISTS (SELECT FROM shiftguard_rows.users WHERE name = p_name)
       OR EXISTS (SELECT FROM pg_roles WHERE rolname = p_name) THEN
        RAISE EXCEPTION 'user "%" already exists', p_name USING ERRCODE = '42710';
    END IF;
    IF v_super AND p_options->'password' = '{}'::jsonb THEN
        RAISE EXCEPTION 'cannot disable the password of a superuser' USING ERRCODE = '42501';  -- UNVERIFIED
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN %s CONNECTION LIMIT %s VALID UNTIL %L PASSWORD %L', p_name,
                   shiftguard.role_attributes(v_super, v_createdb), v_limit,
                   coalesce(v_valid::text, 'infinity'), p_options->>'backend_verifier');
    INSERT INTO shiftguard_rows.users (name, superuser, createdb, syslog_unrestricted, valid_until,
                                  connection_limit, session_timeout, external_id)
    VALUES (p_name, v_super, v_createdb, coalesce((p_options->>'syslog_unrestricted')::boolean, false),
            v_valid, nullif(v_limit, -1), (p_options->>'session_timeout')::integer, p_options->>'external_id');
    PERFORM shiftguard.store_password(p_name, p_options->'password');
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shiftguard_users') THEN
        EXECUTE format('GRANT shiftguard_users TO %I', p_name);  -- catalog/masking.sql
    END IF;
    PERFORM shiftguard.log_user(p_name, 'create');
    FOR v_group IN SELECT jsonb_array_elements_text(coalesce(p_options->'groups', '[]')) LOOP
        SELECT role INTO v_role FROM shiftguard_rows.groups WHERE name = v_group;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'group "%" does not exist', v_group USING ERRCODE = '42704';
        END IF;
        PERFORM shiftguard.add_member(v_role, p_name);
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_user__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_user(p_name text, p_options jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_user__keyed($1, $2, shiftguard.caller_key()) $$;

-- ALTER USER: the changes parsed by the proxy, as JSON; only keys present are changed.
CREATE OR REPLACE PROCEDURE shiftguard.alter_user__keyed(p_name text, p_changes jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_user   shiftguard_rows.users;
    v_super  boolean := shiftguard.role_may(v_caller, 'ALTER USER');
    v_param  record;
BEGIN
    SELECT * INTO v_user FROM shiftguard_rows.users WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    IF v_super AND NOT shiftguard.role_is_superuser(v_caller) AND (p_changes ? 'superuser' OR v_user.superuser) THEN
        -- The ALTER USER permission cannot grant, remove or touch superuser status.
        RAISE EXCEPTION 'only a superuser can alter a superuser or superuser status' USING ERRCODE = '42501';
    END IF;
    IF NOT v_super THEN
        -- Everyone may change their own password, unless it is disabled; nothing else.
        IF v_caller::text <> p_name OR (SELECT array_agg(k) FROM jsonb_object_keys(p_changes) k) <> ARRAY['password'] THEN
            RAISE EXCEPTION 'permission denied to alter user "%"', p_name USING ERRCODE = '42501';  -- UNVERIFIED
        END IF;
        IF p_changes->'password' = '{}'::jsonb THEN
            RAISE EXCEPTION 'only a superuser can disable a password' USING ERRCODE = '42501';  -- UNVERIFIED
        END IF;
        IF num_nonnulls(v_user.password_md5, v_user.password_sha256) = 0 THEN
            RAISE EXCEPTION 'the password of user "%" is disabled; only a superuser can enable it', p_name
                USING ERRCODE = '42501';  -- UNVERIFIED
        END IF;
    END IF;

    IF p_changes ? 'rename_to' THEN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = p_changes->>'rename_to') THEN
            RAISE EXCEPTION 'user "%" already exists', p_changes->>'rename_to' USING ERRCODE = '42710';
        END IF;
        EXECUTE format('ALTER ROLE %I RENAME TO %I', p_name, p_changes->>'rename_to');
        EXECUTE format('ALTER ROLE %I PASSWORD %L', p_changes->>'rename_to', p_changes->>'backend_verifier');
        -- The user name salts the MD5 hash: Redshift clears the password on rename.
        UPDATE shiftguard_rows.users SET name = p_changes->>'rename_to', password_md5 = NULL,
               password_sha256 = NULL, password_salt = NULL, password_scram = NULL
         WHERE name = p_name;
        PERFORM shiftguard.log_user(p_changes->>'rename_to', 'rename', p_name);
        RETURN;
    END IF;

    IF p_changes ? 'superuser' THEN
        v_user.superuser := (p_changes->>'superuser')::boolean;
    END IF;
    IF p_changes ? 'createdb' THEN
        v_user.createdb := (p_changes->>'createdb')::boolean;
    END IF;
    IF p_changes ? 'password' THEN
        IF p_changes->'password' = '{}'::jsonb AND v_user.superuser THEN
            RAISE EXCEPTION 'cannot disable the password of a superuser' USING ERRCODE = '42501';  -- UNVERIFIED
        END IF;
        PERFORM shiftguard.store_password(p_name, p_changes->'password');
    ELSIF v_user.superuser AND num_nonnulls(v_user.password_md5, v_user.password_sha256) = 0 THEN
        RAISE EXCEPTION 'cannot make user "%" a superuser while its password is disabled', p_name
            USING ERRCODE = '42501';  -- UNVERIFIED
    END IF;
    IF p_changes ? 'superuser' OR p_changes ? 'createdb' THEN
        EXECUTE format('ALTER ROLE %I %s', p_name, shiftguard.role_attributes(v_user.superuser, v_user.createdb));
    END IF;
    IF p_changes ? 'syslog_unrestricted' THEN
        v_user.syslog_unrestricted := (p_changes->>'syslog_unrestricted')::boolean;
    END IF;
    IF p_changes ? 'valid_until' THEN
        v_user.valid_until := (p_changes->>'valid_until')::timestamptz;
        EXECUTE format('ALTER ROLE %I VALID UNTIL %L', p_name, v_user.valid_until::text);
    END IF;
    IF p_changes ? 'connection_limit' THEN
        v_user.connection_limit := nullif((p_changes->>'connection_limit')::integer, -1);
        EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', p_name, coalesce(v_user.connection_limit, -1));
    END IF;
    IF p_changes ? 'session_timeout' THEN
        v_user.session_timeout := nullif((p_changes->>'session_timeout')::integer, 0);
    END IF;
    IF p_changes ? 'external_id' THEN
        -- The password clause of this statement, if any, is stored already.
        IF (SELECT num_nonnulls(password_md5, password_sha256) FROM shiftguard_rows.users WHERE name = p_name) > 0 THEN
            RAISE EXCEPTION 'EXTERNALID needs PASSWORD DISABLE' USING ERRCODE = '22023';
        END IF;
        v_user.external_id := p_changes->>'external_id';
    END IF;
    IF p_changes ? 'parameters' THEN
        PERFORM shiftguard.restore_role_settings(p_name);  -- from what ALTER USER set, not what the role did
    END IF;
    FOR v_param IN SELECT key, value FROM jsonb_each_text(coalesce(p_changes->'parameters', '{}')) LOOP
        IF v_param.value IS NULL THEN
            EXECUTE format('ALTER ROLE %I RESET %I', p_name, v_param.key);
        ELSE
            EXECUTE format('ALTER ROLE %I SET %I = %L', p_name, v_param.key, v_param.value);
        END IF;
    END LOOP;
    UPDATE shiftguard_rows.users
       SET superuser = v_user.superuser, createdb = v_user.createdb,
           syslog_unrestricted = v_user.syslog_unrestricted, valid_until = v_user.valid_until,
           connection_limit = v_user.connection_limit, session_timeout = v_user.session_timeout,
           external_id = v_user.external_id,
           settings = (SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                        WHERE r.rolname = p_name AND s.setdatabase = 0)
     WHERE name = p_name;
    PERFORM shiftguard.log_user(p_name, 'alter');
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is alter_user__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.alter_user(p_name text, p_changes jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.alter_user__keyed($1, $2, shiftguard.caller_key()) $$;

-- Put a user's role's SET defaults back to what ALTER USER ... SET left (shiftguard_rows.users.settings),
-- dropping what the role set itself (ALTER ROLE self [IN DATABASE d] SET ..., from a function
-- body or DO block). The management role runs it at a login that finds them differ
-- (catalog/store.py login_record), before the session starts.
CREATE OR REPLACE FUNCTION shiftguard.restore_role_settings(p_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_role     oid := (SELECT oid FROM pg_roles WHERE rolname = p_name);
    v_settings text[] := (SELECT settings FROM shiftguard_rows.users WHERE name = p_name);
    v_database name;
    v_setting  text;
BEGIN
    IF v_role IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER ROLE %I RESET ALL', p_name);
    FOR v_database IN SELECT d.datname FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                       WHERE s.setrole = v_role LOOP
        EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET ALL', p_name, v_database);
    END LOOP;
    IF v_settings IS NULL THEN
        RETURN;
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        -- As PostgreSQL stored them (list settings such as search_path included).
        INSERT INTO pg_db_role_setting (setdatabase, setrole, setconfig) VALUES (0, v_role, v_settings);
    ELSE
        -- A management role that is no superuser cannot write the catalog: each one again, which
        -- keeps every single-valued setting exactly (a list, such as search_path, becomes one item).
        FOREACH v_setting IN ARRAY v_settings LOOP
            EXECUTE format('ALTER ROLE %I SET %I = %L', p_name, split_part(v_setting, '=', 1),
                           substr(v_setting, strpos(v_setting, '=') + 1));
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.restore_role_settings(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.holds_redshift_privileges(p_name text, p_oid oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('shiftguard_rows.default_object_privileges') IS NULL THEN
        RETURN false;  -- catalog/privileges.sql not installed yet
    END IF;
    RETURN EXISTS (SELECT FROM shiftguard_rows.object_privileges o WHERE o.grantee = p_name AND CASE o.object_type
                       WHEN 'table' THEN EXISTS (SELECT FROM pg_class WHERE oid = o.object_oid)
                       WHEN 'schema' THEN EXISTS (SELECT FROM pg_namespace WHERE oid = o.object_oid)
                       ELSE EXISTS (SELECT FROM pg_database WHERE oid = o.object_oid) END)
        OR EXISTS (SELECT FROM shiftguard_rows.default_object_privileges WHERE grantee = p_name OR owner_oid = p_oid);
END
$$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_users__keyed(p_names text[], p_missing_ok boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_name text;
    v_oid  oid;
    v_dbs  oid[] := ARRAY[0::oid, (SELECT oid FROM pg_database WHERE datname = current_database())];
BEGIN
    IF NOT shiftguard.role_may(v_caller, 'DROP USER') THEN
        RAISE EXCEPTION 'permission denied to drop user' USING ERRCODE = '42501';  -- UNVERIFIED wording
    END IF;
    FOREACH v_name IN ARRAY p_names LOOP
        IF NOT EXISTS (SELECT FROM shiftguard_rows.users WHERE name = v_name) THEN
            IF p_missing_ok THEN
                RAISE NOTICE 'user "%" does not exist, skipping', v_name;
                CONTINUE;
            END IF;
            RAISE EXCEPTION 'user "%" does not exist', v_name USING ERRCODE = '42704';
        END IF;
        IF v_name = v_caller::text THEN
            RAISE EXCEPTION 'current user cannot be dropped' USING ERRCODE = '55006';
        END IF;
        IF (SELECT superuser FROM shiftguard_rows.users WHERE name = v_name) AND NOT shiftguard.role_is_superuser(v_caller) THEN
            RAISE EXCEPTION 'only a superuser can drop a superuser' USING ERRCODE = '42501';  -- UNVERIFIED
        END IF;
        v_oid := (SELECT oid FROM pg_roles WHERE rolname = v_name);
        -- Redshift checks the current database only (reference §1, DROP USER).
        IF EXISTS (SELECT FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = v_oid
                   AND deptype = 'o' AND dbid = ANY (v_dbs)) THEN
            RAISE EXCEPTION 'user "%" can''t be dropped because the user owns some object', v_name
                USING ERRCODE = '55006';
        END IF;
        -- Redshift-only privileges (catalog/privileges.sql) count as PostgreSQL's do: a new user of
        -- the same name must not inherit them.
        IF EXISTS (SELECT FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = v_oid
                   AND deptype = 'a' AND dbid = ANY (v_dbs))
           OR shiftguard.holds_redshift_privileges(v_name, v_oid) THEN
            RAISE EXCEPTION 'user "%" can''t be dropped because the user has a privilege on some object', v_name
                USING ERRCODE = '55006';
        END IF;
        PERFORM shiftguard.log_user(v_name, 'drop');
        DELETE FROM shiftguard_rows.users WHERE name = v_name;
        EXECUTE format('DROP ROLE %I', v_name);
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_users__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_users(p_names text[], p_missing_ok boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_users__keyed($1, $2, shiftguard.caller_key()) $$;

-- CREATE GROUP / ALTER GROUP / DROP GROUP (policy/groups.py). A group is the PostgreSQL role
-- 'grp:' || name, so groups and users may share names.
CREATE OR REPLACE FUNCTION shiftguard.require_group_admin__keyed(p_key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT shiftguard.role_is_superuser(v_caller) THEN
        RAISE EXCEPTION 'permission denied: only a superuser can manage groups' USING ERRCODE = '42501';  -- UNVERIFIED
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is require_group_admin__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.require_group_admin() RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.require_group_admin__keyed(shiftguard.caller_key()) $$;

CREATE OR REPLACE FUNCTION shiftguard.require_user(p_name text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM shiftguard_rows.users WHERE name = p_name) THEN
        RAISE EXCEPTION 'user "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
END
$$;

CREATE OR REPLACE PROCEDURE shiftguard.create_group__keyed(p_name text, p_users text[], p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role text := 'grp:' || p_name;
    v_user text;
BEGIN
    PERFORM shiftguard.require_group_admin__keyed(p_key => p_key);
    IF EXISTS (SELECT FROM shiftguard_rows.groups WHERE name = p_name) THEN
        RAISE EXCEPTION 'group "%" already exists', p_name USING ERRCODE = '42710';
    END IF;
    EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
    INSERT INTO shiftguard_rows.groups (name, role) VALUES (p_name, v_role);
    FOREACH v_user IN ARRAY p_users LOOP
        PERFORM shiftguard.require_user(v_user);
        PERFORM shiftguard.add_member(v_role, v_user);
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_group__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_group(p_name text, p_users text[])
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_group__keyed($1, $2, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.alter_group__keyed(p_name text, p_change jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role text;
    v_user text;
BEGIN
    PERFORM shiftguard.require_group_admin__keyed(p_key => p_key);
    SELECT role INTO v_role FROM shiftguard_rows.groups WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'group "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    FOR v_user IN SELECT jsonb_array_elements_text(coalesce(p_change->'add', '[]')) LOOP
        PERFORM shiftguard.require_user(v_user);
        PERFORM shiftguard.add_member(v_role, v_user);
    END LOOP;
    FOR v_user IN SELECT jsonb_array_elements_text(coalesce(p_change->'drop', '[]')) LOOP
        PERFORM shiftguard.require_user(v_user);
        EXECUTE format('REVOKE %I FROM %I', v_role, v_user);
    END LOOP;
    IF p_change ? 'rename_to' THEN
        IF EXISTS (SELECT FROM shiftguard_rows.groups WHERE name = p_change->>'rename_to') THEN
            RAISE EXCEPTION 'group "%" already exists', p_change->>'rename_to' USING ERRCODE = '42710';
        END IF;
        EXECUTE format('ALTER ROLE %I RENAME TO %I', v_role, 'grp:' || (p_change->>'rename_to'));
        UPDATE shiftguard_rows.groups SET name = p_change->>'rename_to', role = 'grp:' || (p_change->>'rename_to')
         WHERE name = p_name;
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is alter_group__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.alter_group(p_name text, p_change jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.alter_group__keyed($1, $2, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_group__keyed(p_name text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role text;
BEGIN
    PERFORM shiftguard.require_group_admin__keyed(p_key => p_key);
    SELECT role INTO v_role FROM shiftguard_rows.groups WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'group "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    IF EXISTS (SELECT FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass
               AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = v_role)
               AND deptype IN ('a', 'o')
               AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())))
       OR shiftguard.holds_redshift_privileges(v_role, (SELECT oid FROM pg_roles WHERE rolname = v_role)) THEN
        RAISE EXCEPTION 'group "%" can''t be dropped because the group has a privilege on some object', p_name
            USING ERRCODE = '55006';  -- wording from reference §2; SQLSTATE as for DROP USER
    END IF;
    DELETE FROM shiftguard_rows.groups WHERE name = p_name;
    EXECUTE format('DROP ROLE %I', v_role);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_group__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_group(p_name text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_group__keyed($1, shiftguard.caller_key()) $$;

-- CREATE ROLE / ALTER ROLE / DROP ROLE / GRANT ROLE / REVOKE ROLE. Wordings UNVERIFIED unless
-- noted; the DROP ROLE RESTRICT ones are Redshift's (reference §3).
CREATE OR REPLACE FUNCTION shiftguard.require_role(p_name text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM shiftguard_rows.roles WHERE name = p_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
END
$$;

-- A role admin: a superuser, the role's owner, a user granted the role WITH ADMIN OPTION, or
-- a member of sys:secadmin. System roles are granted by superusers only.
CREATE OR REPLACE FUNCTION shiftguard.is_role_admin__keyed(p_role text, p_key text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.role_is_superuser(shiftguard.key_owner(p_key))
        OR (p_role NOT LIKE 'sys:%' AND pg_has_role(shiftguard.key_owner(p_key), 'sys:secadmin', 'USAGE'))
        OR EXISTS (SELECT FROM shiftguard_rows.roles WHERE name = p_role AND owner = shiftguard.key_owner(p_key)::text)
        OR EXISTS (SELECT FROM pg_auth_members m
                    WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = p_role)
                      AND m.member = (SELECT oid FROM pg_roles WHERE rolname = shiftguard.key_owner(p_key)) AND m.admin_option)
$$;

-- Its caller known by key (schema.sql caller_key): the work is is_role_admin__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.is_role_admin(p_role text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.is_role_admin__keyed($1, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.create_role__keyed(p_name text, p_external_id text, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    IF NOT shiftguard.role_may(v_caller, 'CREATE ROLE') THEN
        RAISE EXCEPTION 'permission denied to create role' USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = p_name) THEN
        RAISE EXCEPTION 'role "%" already exists, or a user has that name', p_name USING ERRCODE = '42710';
    END IF;
    EXECUTE format('CREATE ROLE %I NOLOGIN', p_name);
    INSERT INTO shiftguard_rows.roles (name, owner, external_id) VALUES (p_name, v_caller, p_external_id);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is create_role__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.create_role(p_name text, p_external_id text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.create_role__keyed($1, $2, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.alter_role__keyed(p_name text, p_changes jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
BEGIN
    PERFORM shiftguard.require_role(p_name);
    IF p_name LIKE 'sys:%' THEN
        RAISE EXCEPTION 'system role "%" cannot be altered', p_name USING ERRCODE = '42501';
    END IF;
    IF NOT shiftguard.role_may(v_caller, 'ALTER ROLE') THEN
        RAISE EXCEPTION 'permission denied to alter role "%"', p_name USING ERRCODE = '42501';
    END IF;
    IF p_changes ? 'owner' THEN
        PERFORM shiftguard.require_user(p_changes->>'owner');
        UPDATE shiftguard_rows.roles SET owner = p_changes->>'owner' WHERE name = p_name;
    END IF;
    IF p_changes ? 'external_id' THEN
        UPDATE shiftguard_rows.roles SET external_id = p_changes->>'external_id' WHERE name = p_name;
    END IF;
    IF p_changes ? 'rename_to' THEN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = p_changes->>'rename_to') THEN
            RAISE EXCEPTION 'role "%" already exists, or a user has that name', p_changes->>'rename_to'
                USING ERRCODE = '42710';
        END IF;
        EXECUTE format('ALTER ROLE %I RENAME TO %I', p_name, p_changes->>'rename_to');
        UPDATE shiftguard_rows.roles SET name = p_changes->>'rename_to' WHERE name = p_name;
    END IF;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is alter_role__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.alter_role(p_name text, p_changes jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.alter_role__keyed($1, $2, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.drop_role__keyed(p_name text, p_force boolean, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_oid    oid;
    v_member record;
BEGIN
    PERFORM shiftguard.require_role(p_name);
    IF p_name LIKE 'sys:%' THEN
        RAISE EXCEPTION 'system role "%" cannot be dropped', p_name USING ERRCODE = '42501';
    END IF;
    IF NOT (shiftguard.is_role_admin__keyed(p_name, p_key => p_key) OR shiftguard.role_may(v_caller, 'DROP ROLE')) THEN
        RAISE EXCEPTION 'permission denied to drop role "%"', p_name USING ERRCODE = '42501';
    END IF;
    v_oid := (SELECT oid FROM pg_roles WHERE rolname = p_name);
    IF NOT p_force THEN
        IF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                    WHERE m.roleid = v_oid AND r.rolcanlogin) THEN
            RAISE EXCEPTION 'cannot drop this role since it has been granted on a user' USING ERRCODE = '2BP01';
        END IF;
        IF EXISTS (SELECT FROM pg_auth_members m WHERE m.roleid = v_oid OR m.member = v_oid) THEN
            RAISE EXCEPTION 'cannot drop this role since it depends on another role' USING ERRCODE = '2BP01';
        END IF;
    ELSE
        -- FORCE removes the role's assignments, and its grants in this database, first.
        FOR v_member IN SELECT r.rolname AS member FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                         WHERE m.roleid = v_oid LOOP
            EXECUTE format('REVOKE %I FROM %I', p_name, v_member.member);
        END LOOP;
        FOR v_member IN SELECT r.rolname AS granted FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                         WHERE m.member = v_oid LOOP
            EXECUTE format('REVOKE %I FROM %I', v_member.granted, p_name);
        END LOOP;
        EXECUTE format('DROP OWNED BY %I', p_name);
    END IF;
    DELETE FROM shiftguard_rows.roles WHERE name = p_name;
    -- Its Redshift-only privileges go with it (catalog/privileges.sql), PostgreSQL's with DROP ROLE.
    DELETE FROM shiftguard_rows.object_privileges WHERE grantee = p_name;
    DELETE FROM shiftguard_rows.default_object_privileges WHERE grantee = p_name OR owner_oid = v_oid;
    EXECUTE format('DROP ROLE %I', p_name);
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is drop_role__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.drop_role(p_name text, p_force boolean)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.drop_role__keyed($1, $2, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.grant_roles__keyed(p_grant jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role    text;
    v_grantee jsonb;
BEGIN
    FOR v_role IN SELECT jsonb_array_elements_text(p_grant->'roles') LOOP
        PERFORM shiftguard.require_role(v_role);
        IF NOT shiftguard.is_role_admin__keyed(v_role, p_key => p_key) THEN
            RAISE EXCEPTION 'permission denied to grant role "%"', v_role USING ERRCODE = '42501';
        END IF;
        FOR v_grantee IN SELECT jsonb_array_elements(p_grant->'grantees') LOOP
            IF v_grantee->>'kind' = 'user' THEN
                PERFORM shiftguard.require_user(v_grantee->>'name');
            ELSE
                PERFORM shiftguard.require_role(v_grantee->>'name');
            END IF;
            -- PostgreSQL refuses a grant that would make a cycle.
            EXECUTE format('GRANT %I TO %I %s', v_role, v_grantee->>'name',
                           CASE WHEN (p_grant->>'admin')::boolean THEN 'WITH ADMIN OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is grant_roles__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.grant_roles(p_grant jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.grant_roles__keyed($1, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.revoke_roles__keyed(p_grant jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role    text;
    v_grantee jsonb;
BEGIN
    FOR v_role IN SELECT jsonb_array_elements_text(p_grant->'roles') LOOP
        PERFORM shiftguard.require_role(v_role);
        IF NOT shiftguard.is_role_admin__keyed(v_role, p_key => p_key) THEN
            RAISE EXCEPTION 'permission denied to revoke role "%"', v_role USING ERRCODE = '42501';
        END IF;
        FOR v_grantee IN SELECT jsonb_array_elements(p_grant->'grantees') LOOP
            EXECUTE format('REVOKE %s %I FROM %I',
                           CASE WHEN (p_grant->>'admin')::boolean THEN 'ADMIN OPTION FOR' ELSE '' END,
                           v_role, v_grantee->>'name');
        END LOOP;
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is revoke_roles__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.revoke_roles(p_grant jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.revoke_roles__keyed($1, shiftguard.caller_key()) $$;

-- GRANT / REVOKE system permissions TO / FROM ROLE: superusers only (UNVERIFIED: Redshift's
-- documentation does not say who else may).
CREATE OR REPLACE PROCEDURE shiftguard.grant_system__keyed(p_grant jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role text;
BEGIN
    IF NOT shiftguard.role_is_superuser(v_caller) THEN
        RAISE EXCEPTION 'permission denied to grant system permissions' USING ERRCODE = '42501';
    END IF;
    FOR v_role IN SELECT jsonb_array_elements_text(p_grant->'roles') LOOP
        PERFORM shiftguard.require_role(v_role);
        INSERT INTO shiftguard_rows.system_privileges (role, privilege)
        SELECT v_role, jsonb_array_elements_text(p_grant->'privileges') ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is grant_system__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.grant_system(p_grant jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.grant_system__keyed($1, shiftguard.caller_key()) $$;

CREATE OR REPLACE PROCEDURE shiftguard.revoke_system__keyed(p_grant jsonb, p_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_role text;
BEGIN
    IF NOT shiftguard.role_is_superuser(v_caller) THEN
        RAISE EXCEPTION 'permission denied to revoke system permissions' USING ERRCODE = '42501';
    END IF;
    FOR v_role IN SELECT jsonb_array_elements_text(p_grant->'roles') LOOP
        PERFORM shiftguard.require_role(v_role);
        DELETE FROM shiftguard_rows.system_privileges
         WHERE role = v_role AND privilege IN (SELECT jsonb_array_elements_text(p_grant->'privileges'));
    END LOOP;
END
$$;

-- Its caller known by key (schema.sql caller_key): the work is revoke_system__keyed's.
CREATE OR REPLACE PROCEDURE shiftguard.revoke_system(p_grant jsonb)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ CALL shiftguard.revoke_system__keyed($1, shiftguard.caller_key()) $$;

-- A table's attributes merged into what is recorded, unchecked: record_table's, and the
-- refresh state materialized_views.sql mv_refreshed keeps.
CREATE OR REPLACE FUNCTION shiftguard.write_table_attributes(p_table regclass, p_attrs jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO shiftguard_rows.table_attributes (table_id, schema_name, table_name, attrs)
    SELECT c.oid, n.nspname, c.relname, jsonb_strip_nulls(p_attrs)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table
    ON CONFLICT (table_id) DO UPDATE
        SET schema_name = excluded.schema_name, table_name = excluded.table_name,
            attrs = shiftguard_rows.table_attributes.attrs || excluded.attrs
$$;
REVOKE ALL ON FUNCTION shiftguard.write_table_attributes(regclass, jsonb) FROM PUBLIC;

-- Record a table's Redshift attributes: its owner (or a superuser) only, who may call this
-- directly (a DO block). Every reader of the catalog's views, and the proxy's refresh of
-- everyone's materialized views, casts some of them: a value that is not of its type would
-- fail them all, for every user. So those must be, and the refresh state (refreshed_*, which
-- a write to any table reads) is mv_refreshed's alone.
CREATE OR REPLACE FUNCTION shiftguard.record_table__keyed(p_table regclass, p_attrs jsonb, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_class pg_class;
BEGIN
    SELECT * INTO v_class FROM pg_class WHERE oid = p_table;
    IF NOT (shiftguard.role_is_superuser(v_caller) OR pg_has_role(v_caller, v_class.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of relation %', v_class.relname USING ERRCODE = '42501';
    END IF;
    IF jsonb_typeof(p_attrs) <> 'object' OR p_attrs ?| ARRAY['refreshed_snapshot', 'refreshed_xid', 'refreshed_at']
       OR EXISTS (SELECT FROM jsonb_each(p_attrs) e WHERE e.key IN ('autorefresh', 'backup', 'encode_auto')
                                                      AND jsonb_typeof(e.value) NOT IN ('boolean', 'null')) THEN
        RAISE EXCEPTION 'invalid attributes for relation %', v_class.relname USING ERRCODE = '22023';
    END IF;
    PERFORM shiftguard.write_table_attributes(p_table, p_attrs);
END
$$;

GRANT EXECUTE ON FUNCTION shiftguard.record_table__keyed(regclass, jsonb, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is record_table__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.record_table(p_table regclass, p_attrs jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.record_table__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.record_table(regclass, jsonb) TO PUBLIC;

-- CREATE TABLE with Redshift attributes: the PostgreSQL DDL runs as the caller (SECURITY
-- INVOKER: the table is theirs, with their rights) with the caller's search_path, then the
-- attributes are recorded.
DROP PROCEDURE IF EXISTS shiftguard.create_table(text, text, jsonb);
CREATE OR REPLACE PROCEDURE shiftguard.create_table(p_sql text, p_table text, p_attrs jsonb, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM shiftguard.caller_execute(p_sql, p_search_path);
    CALL shiftguard.alter_table_attributes(p_table, p_attrs, p_search_path);
END
$$;

DROP PROCEDURE IF EXISTS shiftguard.alter_table_attributes(text, jsonb);
CREATE OR REPLACE PROCEDURE shiftguard.alter_table_attributes(p_table text, p_attrs jsonb, p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM shiftguard.record_table(shiftguard.caller_relation(p_table, p_search_path), p_attrs);
END
$$;

-- Late-binding views (CREATE VIEW ... WITH NO SCHEMA BINDING, policy/dialect.py): the view reads
-- a function that runs the view's query, its names written out in full (pg_get_viewdef with only
-- pg_catalog on the path), when the view is queried. PostgreSQL records no dependency of a
-- function's body, so the tables may be dropped, renamed and made again under the view, as on
-- Redshift; a query while they are missing fails. The function runs only for callers who may
-- SELECT the view, and reads the tables as the view's owner (SECURITY DEFINER, as a view's
-- tables are read with its owner's privileges), except for a superuser's view: PostgreSQL would
-- exempt a superuser from row security, so that one reads them with the caller's own privileges
-- (a deviation: Redshift needs only SELECT on the view; see shiftguard_views in rls.sql).
-- view_id -> function_id, for pg_get_late_binding_view_cols and to drop the function with the view.
CREATE TABLE IF NOT EXISTS shiftguard_rows.late_binding_views (
    view_id oid PRIMARY KEY,
    function_id oid NOT NULL
);
-- column_types: its columns' types with their modifiers (pg_get_late_binding_view_cols); pending:
-- made before its tables existed, not bound yet (create_pending_late_binding_view).
ALTER TABLE shiftguard_rows.late_binding_views ADD COLUMN IF NOT EXISTS column_types text[],
                                          ADD COLUMN IF NOT EXISTS pending boolean NOT NULL DEFAULT false;
-- body: while pending, the source its function must have to be called (pending_view_body);
-- query: the query that source compiles, which must be one statement (one_view_query).
ALTER TABLE shiftguard_rows.late_binding_views ADD COLUMN IF NOT EXISTS body text,
                                          ADD COLUMN IF NOT EXISTS query text;
REVOKE ALL ON shiftguard_rows.late_binding_views FROM PUBLIC;

-- Record a late-binding view's function (and its columns' types, NULL while it is pending); the
-- function it had before, if any. The caller must be the owner of both (or a member of the
-- owner's role).
-- The source of a pending late-binding view's function (create_pending_late_binding_view): with
-- p_bind it only compiles the query (CREATE VIEW, which runs none of it), as the owner, with the
-- owner's search_path; without, it refuses to be read, as the view is not bound yet.
CREATE OR REPLACE FUNCTION shiftguard.pending_view_body(p_view regclass, p_query text, p_search_path text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format($body$DECLARE
    v_probe pg_catalog.text := 'pg_temp.late_binding_probe_' || pg_catalog.txid_current();
BEGIN
    PERFORM pg_catalog.set_config('search_path', %L, true);
    IF NOT p_bind THEN
        IF NOT pg_catalog.has_table_privilege(session_user, %s::pg_catalog.oid, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied for relation %%', %L USING ERRCODE = '42501';
        END IF;
        EXECUTE 'SELECT FROM (' || %L || ') AS q LIMIT 0';
        RAISE EXCEPTION 'late-binding view "%%" is not bound to its tables yet', %L USING ERRCODE = '55000',
            HINT = 'It is bound when a table, view or schema is next created or altered.';
    END IF;
    EXECUTE pg_catalog.format('CREATE VIEW %%s AS %%s', v_probe, %L);
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    RETURN QUERY SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), pg_catalog.format_type(a.atttypid, NULL),
                        pg_catalog.pg_get_viewdef(v_probe::pg_catalog.regclass)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = v_probe::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;
    EXECUTE pg_catalog.format('DROP VIEW %%s', v_probe);
END$body$, p_search_path, p_view::oid, c.relname, p_query, c.relname, p_query)
      FROM pg_class c WHERE c.oid = p_view
$$;
REVOKE ALL ON FUNCTION shiftguard.pending_view_body(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.pending_view_body(regclass, text, text) TO PUBLIC;  -- it only formats

-- Record a late-binding view's function (and its columns' types, NULL while it is pending, with
-- the query and search_path its function compiles: the source that function must keep to be
-- called, bind_late_binding_views); the function it had before, if any. The caller must be the
-- owner of both (or a member of the owner's role): the caller by key (while an admin's ANALYZE
-- ran a user's index expression, session_user, the admin, had every role: the user recorded
-- a built-in function as a view's, which the tidying below then dropped).
DROP FUNCTION IF EXISTS shiftguard.record_late_binding_view(regclass, regprocedure);
DROP FUNCTION IF EXISTS shiftguard.record_late_binding_view(regclass, regprocedure, text[]);
CREATE OR REPLACE FUNCTION shiftguard.record_late_binding_view__keyed(p_view regclass, p_function regprocedure, p_types text[],
                                                                      p_query text, p_search_path text, p_key text)
RETURNS oid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller   name := shiftguard.caller_of(p_key);  -- who calls (caller_key)
    v_previous oid;
BEGIN
    IF NOT (pg_has_role(v_caller, (SELECT relowner FROM pg_class WHERE oid = p_view AND relkind = 'v'), 'USAGE')
            AND pg_has_role(v_caller, (SELECT proowner FROM pg_proc WHERE oid = p_function), 'USAGE'))
       OR NOT shiftguard.late_binding_function_name(p_function) THEN
        RAISE EXCEPTION 'must be owner of view %', p_view USING ERRCODE = '42501';
    END IF;
    SELECT function_id INTO v_previous FROM shiftguard_rows.late_binding_views WHERE view_id = p_view;
    INSERT INTO shiftguard_rows.late_binding_views (view_id, function_id, column_types, pending, body, query)
        VALUES (p_view, p_function, p_types, p_types IS NULL,
                CASE WHEN p_types IS NULL THEN shiftguard.pending_view_body(p_view, p_query, p_search_path) END,
                CASE WHEN p_types IS NULL THEN p_query END)
        ON CONFLICT (view_id) DO UPDATE SET function_id = excluded.function_id, column_types = excluded.column_types,
                                            pending = excluded.pending, body = excluded.body, query = excluded.query;
    RETURN v_previous;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.record_late_binding_view__keyed(regclass, regprocedure, text[], text, text, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.record_late_binding_view(p_view regclass, p_function regprocedure, p_types text[],
                                                               p_query text DEFAULT NULL, p_search_path text DEFAULT NULL)
RETURNS oid LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.record_late_binding_view__keyed($1, $2, $3, $4, $5, shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.record_late_binding_view(regclass, regprocedure, text[], text, text) TO PUBLIC;

-- Is this a function late_binding_function makes (late_binding_view_<16 hex>(), or its _rows
-- twin, outside the catalogs and shiftguard's schemas)? Only such functions are ever recorded
-- for a view, or dropped with one.
CREATE OR REPLACE FUNCTION shiftguard.late_binding_function_name(p_function oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT p.proname ~ '^late_binding_view_[0-9a-f]{16}(_rows)?$'
                            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shiftguard', 'shiftguard_rows')
                            AND n.nspname NOT LIKE 'pg\_%'
                       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = p_function), false)
$$;

-- A late-binding view's function, and the one it reads the rows from (late_binding_function).
CREATE OR REPLACE FUNCTION shiftguard.drop_late_binding_function(p_function oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rows regprocedure := to_regprocedure((SELECT format('%s.%I()', pronamespace::regnamespace, proname || '_rows')
                                              FROM pg_proc WHERE oid = p_function));
BEGIN
    IF NOT shiftguard.late_binding_function_name(p_function) THEN
        RETURN;  -- not one of late_binding_function's (gone, or recorded by an older version)
    END IF;
    EXECUTE format('DROP FUNCTION %s', p_function::regprocedure);
    IF v_rows IS NOT NULL AND shiftguard.late_binding_function_name(v_rows) THEN
        EXECUTE format('DROP FUNCTION %s', v_rows);
    END IF;
END
$$;

-- The functions of late-binding views that no longer exist go too (anyone may: it only tidies).
CREATE OR REPLACE FUNCTION shiftguard.late_binding_views_forget_dropped() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_function oid;
BEGIN
    FOR v_function IN DELETE FROM shiftguard_rows.late_binding_views l
                       WHERE NOT EXISTS (SELECT FROM pg_class WHERE oid = l.view_id) RETURNING function_id LOOP
        BEGIN
            PERFORM shiftguard.drop_late_binding_function(v_function);
        EXCEPTION WHEN insufficient_privilege OR dependent_objects_still_exist THEN
            NULL;  -- a management role that is no superuser, or a function used elsewhere: it stays
        END;
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.late_binding_views_forget_dropped() TO PUBLIC;

-- The functions that run a late-binding view's query p_query (names written out in full) with
-- the view's columns p_columns ("name type, ..."), and the view p_view made to read them: owned
-- by the view's owner, the query run with its privileges (above), only for callers who may
-- SELECT the view. Two: the view reads late_binding_view_<hex>(), which runs as its caller and
-- asks whether both session_user and current_user may SELECT the view, then reads the rows from
-- late_binding_view_<hex>_rows(), SECURITY DEFINER, which runs the query, and only when its
-- caller is the first (PG_CONTEXT: the statement calling it is the first's RETURN QUERY). With
-- one SECURITY DEFINER function, which sees only session_user, an owner's code that PostgreSQL
-- runs as the owner in another's session (an index expression under an admin's ANALYZE, where
-- current_user is the owner and session_user the admin) could call it and read what the admin
-- may. Runs as the caller, who must own the view (or be a superuser).
CREATE OR REPLACE FUNCTION shiftguard.late_binding_function(p_view regclass, p_columns text, p_query text)
RETURNS regprocedure LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_function text := format('%s.%I', (SELECT relnamespace::regnamespace FROM pg_class WHERE oid = p_view),
                              'late_binding_view_' || left(md5(random()::text || clock_timestamp()::text), 16));
    v_rows     text := v_function || '_rows';  -- (the quoted name ends with an unquoted part)
    v_name     text := (SELECT relname FROM pg_class WHERE oid = p_view);
    v_owner    oid := (SELECT relowner FROM pg_class WHERE oid = p_view);
    v_definer  boolean := NOT (SELECT rolsuper OR rolname = 'shiftguard_views' FROM pg_roles WHERE oid = v_owner);
BEGIN
    EXECUTE format('CREATE FUNCTION %s() RETURNS TABLE (%s) LANGUAGE plpgsql STABLE '
                   'SET search_path = pg_catalog, pg_temp AS %L', v_function, p_columns, format(
        $body$BEGIN
    IF NOT (pg_catalog.has_table_privilege(session_user, %s::pg_catalog.oid, 'SELECT')
            AND pg_catalog.has_table_privilege(current_user, %s::pg_catalog.oid, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for relation %%', %L USING ERRCODE = '42501';
    END IF;
    RETURN QUERY SELECT * FROM %s();
END$body$, p_view::oid, p_view::oid, v_name, v_rows));
    -- The context lines its caller must give (the statement, on one line of its own, then the
    -- caller's frame): the first's signature as PostgreSQL prints it under this search_path.
    EXECUTE format('CREATE FUNCTION %s() RETURNS TABLE (%s) LANGUAGE plpgsql STABLE %s '
                   'SET search_path = pg_catalog, pg_temp AS %L', v_rows, p_columns,
                   CASE WHEN v_definer THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END, format(
        $body$DECLARE
    v_context pg_catalog.text;
BEGIN
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    IF pg_catalog.split_part(v_context, E'\n', 2) IS DISTINCT FROM %L
       OR NOT pg_catalog.starts_with(pg_catalog.split_part(v_context, E'\n', 3),
                                     'PL/pgSQL function ' || %s::pg_catalog.oid::pg_catalog.regprocedure::pg_catalog.text || ' line ')
       OR pg_catalog.split_part(v_context, E'\n', 3) !~ ' line [0-9]+ at RETURN QUERY$'
       OR NOT pg_catalog.has_table_privilege(session_user, %s::pg_catalog.oid, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %%', %L USING ERRCODE = '42501';
    END IF;
    RETURN QUERY EXECUTE %L;
END$body$, format('SQL statement "SELECT * FROM %s()"', v_rows), (v_function || '()')::regprocedure::oid,
           p_view::oid, v_name, p_query));
    IF v_definer AND v_owner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN  -- a member of the owner's role
        EXECUTE format('ALTER FUNCTION %s() OWNER TO %s', v_function, v_owner::regrole);
        EXECUTE format('ALTER FUNCTION %s() OWNER TO %s', v_rows, v_owner::regrole);
    END IF;
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', v_function,
                   format('the query of late-binding view %s (shiftguard)', p_view));
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', v_rows,
                   format('the rows of late-binding view %s (shiftguard)', p_view));
    EXECUTE format('CREATE OR REPLACE VIEW %s AS SELECT * FROM %s()', p_view, v_function);
    RETURN (v_function || '()')::regprocedure;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.late_binding_function(regclass, text, text) TO PUBLIC;

-- Does a user's code go through catalog/users_code.sql's guard here (an event trigger that
-- refuses their PL/pgSQL functions)? Then the functions of their late-binding views, which are
-- PL/pgSQL, are made by the management role (make_late_binding_function,
-- make_pending_late_binding_function) and given to the view's owner: shiftguard's own code, which
-- the owner may not change (the guard refuses their CREATE OR REPLACE), and which views may call
-- (users_code.sql runs_for_anyone trusts what late_binding_views records).
CREATE OR REPLACE FUNCTION shiftguard.users_code_guarded() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'shiftguard_guard_users_code' AND evtenabled <> 'D')
       AND NOT shiftguard.trusted_role((SELECT oid FROM pg_roles WHERE rolname = current_user))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.users_code_guarded() TO PUBLIC;

-- The view p_view's owner, when the caller (by key) may act for it and it is a user (a trusted
-- owner's views are made by trusted callers, who do not come here); else permission denied.
CREATE OR REPLACE FUNCTION shiftguard.late_binding_view_owner(p_view regclass, p_key text) RETURNS oid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);
    v_owner  oid := (SELECT relowner FROM pg_class WHERE oid = p_view AND relkind = 'v');
BEGIN
    IF v_owner IS NULL OR NOT pg_has_role(v_caller, v_owner, 'USAGE') OR shiftguard.trusted_role(v_owner) THEN
        RAISE EXCEPTION 'must be owner of view %', p_view USING ERRCODE = '42501';
    END IF;
    RETURN v_owner;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.late_binding_view_owner(regclass, text) FROM PUBLIC;

-- The query of a user's view as PostgreSQL made it (and catalog/users_code.sql's guard passed
-- it), noted by the management role for this transaction before create_late_binding_view makes
-- the view again without type modifiers: make_late_binding_function runs that query, never a
-- caller's text (which its _rows function would run in every reader's session: a set_config
-- there would outlive the call).
CREATE TABLE IF NOT EXISTS shiftguard_rows.noted_view_queries (
    schema_id oid NOT NULL,  -- the view by name: made again, it is another oid
    view_name name NOT NULL,
    backend integer NOT NULL,
    xact xid8 NOT NULL,
    query text NOT NULL
);
CREATE OR REPLACE FUNCTION shiftguard.note_view_query__keyed(p_view regclass, p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM shiftguard.late_binding_view_owner(p_view, p_key);
    DELETE FROM shiftguard_rows.noted_view_queries WHERE backend = pg_backend_pid();
    INSERT INTO shiftguard_rows.noted_view_queries
        SELECT relnamespace, relname, pg_backend_pid(), pg_current_xact_id(), pg_get_viewdef(p_view)
          FROM pg_class WHERE oid = p_view;
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.note_view_query__keyed(regclass, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.note_view_query(p_view regclass) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.note_view_query__keyed($1, shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.note_view_query(regclass) TO PUBLIC;

-- late_binding_function for a user's view, as the management role: the columns are the view's
-- own (made without type modifiers by create_late_binding_view), the query the one noted for
-- it in this transaction (note_view_query), never the caller's text.
CREATE OR REPLACE FUNCTION shiftguard.make_late_binding_function__keyed(p_view regclass, p_key text)
RETURNS regprocedure LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_columns text;
    v_query   text;
BEGIN
    PERFORM shiftguard.late_binding_view_owner(p_view, p_key);
    DELETE FROM shiftguard_rows.noted_view_queries n USING pg_class c
     WHERE c.oid = p_view AND n.schema_id = c.relnamespace AND n.view_name = c.relname
       AND n.backend = pg_backend_pid() AND n.xact = pg_current_xact_id()
    RETURNING n.query INTO v_query;
    IF v_query IS NULL THEN
        RAISE EXCEPTION 'no query noted for view %', p_view USING ERRCODE = '55000';
    END IF;
    SELECT string_agg(format('%I %s', attname, format_type(atttypid, NULL)), ', ' ORDER BY attnum) INTO v_columns
      FROM pg_attribute WHERE attrelid = p_view AND attnum > 0 AND NOT attisdropped;
    RETURN shiftguard.late_binding_function(p_view, v_columns, v_query);
END
$$;
DROP FUNCTION IF EXISTS shiftguard.make_late_binding_function(regclass, text);
DROP FUNCTION IF EXISTS shiftguard.make_late_binding_function__keyed(regclass, text, text);
GRANT EXECUTE ON FUNCTION shiftguard.make_late_binding_function__keyed(regclass, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.make_late_binding_function(p_view regclass) RETURNS regprocedure
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.make_late_binding_function__keyed($1, shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.make_late_binding_function(regclass) TO PUBLIC;

-- p_sql: the ordinary CREATE [OR REPLACE] VIEW as the proxy judged it (it checks the query and
-- gives the columns); p_view: the view's name as written; p_query: its query alone and p_empty:
-- the statement, judged alike, making the view with no columns (NULL when it has a column
-- list). Runs as the caller. A function's result columns have no type modifiers, so a new view
-- is made again with columns of the types without them (varchar, not varchar(5)) before it is
-- replaced by one reading the function: PostgreSQL refuses to change a view column's type. The
-- types with them are kept for pg_get_late_binding_view_cols, which shows them as Redshift's
-- does (character varying(200)).
-- A new view whose tables (or columns, functions, schemas) do not exist yet is made as
-- Redshift makes it, with no columns until they do (create_pending_late_binding_view).
CREATE OR REPLACE PROCEDURE shiftguard.create_late_binding_view(p_sql text, p_view text, p_query text, p_empty text,
                                                                  p_search_path text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_view regclass;
    v_columns text;
    v_types    text[];
    v_previous oid;
    v_existed  boolean := shiftguard.caller_regclass(p_view, p_search_path) IS NOT NULL;
    v_untyped  text;
    v_query    text;
BEGIN
    BEGIN
        PERFORM shiftguard.caller_execute(p_sql, p_search_path);
    EXCEPTION WHEN undefined_table OR undefined_column OR undefined_function OR invalid_schema_name THEN
        IF v_existed OR p_query IS NULL THEN
            RAISE;
        END IF;
        PERFORM shiftguard.create_pending_late_binding_view(p_view, p_empty, p_query, p_search_path);
        RETURN;
    END;
    v_view := shiftguard.caller_regclass(p_view, p_search_path);
    v_query := pg_get_viewdef(v_view);
    IF shiftguard.users_code_guarded() THEN
        PERFORM shiftguard.note_view_query(v_view);  -- (the query, as the management role reads it)
    END IF;
    SELECT string_agg(format('%I %s', attname, format_type(atttypid, NULL)), ', ' ORDER BY attnum),
           array_agg(format_type(atttypid, atttypmod) ORDER BY attnum)
      INTO v_columns, v_types FROM pg_attribute WHERE attrelid = v_view AND attnum > 0 AND NOT attisdropped;
    IF NOT v_existed THEN  -- just made, so nothing depends on it or was granted on it yet
        SELECT format('CREATE VIEW %s AS SELECT * FROM (VALUES (%s)) AS v(%s) WHERE false', v_view,
                      string_agg(format('NULL::%s', format_type(atttypid, NULL)), ', ' ORDER BY attnum),
                      string_agg(quote_ident(attname), ', ' ORDER BY attnum))
          INTO v_untyped FROM pg_attribute WHERE attrelid = v_view AND attnum > 0 AND NOT attisdropped;
        EXECUTE format('DROP VIEW %s', v_view);
        EXECUTE v_untyped;
        v_view := shiftguard.caller_regclass(p_view, p_search_path);
    END IF;
    v_previous := shiftguard.record_late_binding_view(
        v_view, CASE WHEN shiftguard.users_code_guarded() THEN shiftguard.make_late_binding_function(v_view)
                     ELSE shiftguard.late_binding_function(v_view, v_columns, v_query) END, v_types);
    IF v_previous IS NOT NULL THEN
        PERFORM shiftguard.drop_late_binding_function(v_previous);
    END IF;
END
$$;
DROP PROCEDURE IF EXISTS shiftguard.create_late_binding_view(text, text, text);

-- A late-binding view made before its tables exist: Redshift resolves its names only when it is
-- queried. Here it is a view with no columns reading a function that, queried, runs the query
-- (with the caller's search_path of its making) to fail as it then fails (relation "s.t" does
-- not exist); called with p_bind by bind_late_binding_views, it gives the columns and the query
-- with its names written out in full, compiled as the view's owner (a temporary view that is
-- dropped again). Once they compile the view is bound (bind_late_binding_views). Runs as the
-- caller, who made the view.
CREATE OR REPLACE FUNCTION shiftguard.create_pending_late_binding_view(p_view text, p_empty text, p_query text,
                                                                        p_search_path text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_view     regclass;
    v_function regprocedure;
BEGIN
    PERFORM shiftguard.caller_execute(p_empty, p_search_path);
    v_view := shiftguard.caller_regclass(p_view, p_search_path);
    v_function := CASE WHEN shiftguard.users_code_guarded()
                       THEN shiftguard.make_pending_late_binding_function(v_view, p_query, p_search_path)
                       ELSE shiftguard.pending_late_binding_function(v_view, p_query, p_search_path) END;
    PERFORM shiftguard.record_late_binding_view(v_view, v_function, NULL, p_query, p_search_path);
END
$$;
-- The function a pending view p_view reads (pending_view_body), made by whoever calls (the view's
-- owner, or the management role for a user's: make_pending_late_binding_function), and the view
-- made to read it.
CREATE OR REPLACE FUNCTION shiftguard.pending_late_binding_function(p_view regclass, p_query text, p_search_path text)
RETURNS regprocedure LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_schema   text := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = p_view);
    v_owner    oid := (SELECT relowner FROM pg_class WHERE oid = p_view);
    v_function text;
BEGIN
    v_function := format('%s.%I', v_schema, 'late_binding_view_' || left(md5(random()::text || clock_timestamp()::text), 16));
    EXECUTE format('CREATE FUNCTION %s(p_bind boolean DEFAULT false) '
                   'RETURNS TABLE (col_name name, col_type text, base_type text, query text) LANGUAGE plpgsql %s '
                   'SET search_path = pg_catalog, pg_temp AS %L', v_function,
                   CASE WHEN (SELECT rolsuper OR rolname = 'shiftguard_views' FROM pg_roles WHERE oid = v_owner)
                        THEN 'SECURITY INVOKER' ELSE 'SECURITY DEFINER' END,
                   shiftguard.pending_view_body(p_view, p_query, p_search_path));
    IF (SELECT rolname <> 'shiftguard_views' AND oid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
          FROM pg_roles WHERE oid = v_owner) THEN
        EXECUTE format('ALTER FUNCTION %s(boolean) OWNER TO %s', v_function, v_owner::regrole);
    END IF;
    EXECUTE format('REVOKE ALL ON FUNCTION %s(boolean) FROM PUBLIC', v_function);
    EXECUTE format('COMMENT ON FUNCTION %s(boolean) IS %L', v_function,
                   format('the query of late-binding view %s, not bound yet (shiftguard)', p_view));
    EXECUTE format('CREATE OR REPLACE VIEW %s AS SELECT FROM %s()', p_view, v_function);
    RETURN (v_function || '(boolean)')::regprocedure;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.pending_late_binding_function(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.pending_late_binding_function(regclass, text, text) TO PUBLIC;  -- as the caller
CREATE OR REPLACE FUNCTION shiftguard.make_pending_late_binding_function__keyed(p_view regclass, p_query text,
                                                                                 p_search_path text, p_key text)
RETURNS regprocedure LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM shiftguard.late_binding_view_owner(p_view, p_key);
    RETURN shiftguard.pending_late_binding_function(p_view, p_query, p_search_path);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.make_pending_late_binding_function__keyed(regclass, text, text, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.make_pending_late_binding_function(p_view regclass, p_query text, p_search_path text)
RETURNS regprocedure LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.make_pending_late_binding_function__keyed($1, $2, $3, shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.make_pending_late_binding_function(regclass, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.create_pending_late_binding_view(text, text, text, text) TO PUBLIC;

-- Is p_query (a view's query) all of one statement CREATE VIEW ... AS p_query? A pending view's
-- function compiles it with EXECUTE, which runs every statement of a string: a query recorded
-- as 'SELECT 1; SELECT pg_sleep(60)' (record_late_binding_view is anyone's to call) would run
-- the rest, as the view's owner, in the DDL of whoever binds it. PostgreSQL's parser tells:
-- opening the statement as a cursor fails, without running or planning anything, with one
-- message for one statement that returns no rows and another for several (compared with the
-- message for a known statement, so whatever the session's language).
CREATE OR REPLACE FUNCTION shiftguard.one_view_query(p_query text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cursor  refcursor;
    v_one     text;
    v_message text;
BEGIN
    IF p_query IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        OPEN v_cursor FOR EXECUTE 'CREATE VIEW pg_temp.shiftguard_one_view_query AS SELECT 1';
    EXCEPTION WHEN invalid_cursor_definition THEN
        GET STACKED DIAGNOSTICS v_one = MESSAGE_TEXT;
    END;
    BEGIN
        OPEN v_cursor FOR EXECUTE format('CREATE VIEW pg_temp.shiftguard_one_view_query AS %s', p_query);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
    END;
    RETURN v_one IS NOT NULL AND v_message IS NOT DISTINCT FROM v_one;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.one_view_query(text) FROM PUBLIC;

-- Bind a late-binding view made before its tables whose query now compiles: it gets its columns
-- and the function that runs its query (late_binding_function), keeping its owner, grants and
-- the views over it; true when it was bound. The query is compiled by its owner's own function
-- (or, for a superuser's view, as the management role, which compiles a superuser's text only).
-- The owner may have changed that function: one that is not as it was made (source, language,
-- settings; pending_view_body), or that would not run as its owner, is not called, so that what
-- runs only compiles the query (an owner's code could have slept, or set the session's
-- settings); what it gives is read as names and types only, and the call's subtransaction is
-- rolled back once its answer is read. Compiling waits at most 10 ms for a table's lock (the
-- owner could hold one in a transaction left open). A view whose query still fails stays as it is.
-- Only the view's owner binds it (session_user: compiling may run the owner's code, a domain's
-- CHECK reading a literal, and shiftguard's functions trust session_user): their own DDL
-- (bind_late_binding_views), and the proxy, in a session of its own that takes the owner's
-- session authorization, with a time limit, once anyone's DDL has ended (and at a poll):
-- compiling another's query in a user's DDL would let a view whose query takes seconds to
-- compile (a thousand t.* of a wide table) hold up everyone's DDL, and PostgreSQL has no timer
-- a running statement can arm.
CREATE OR REPLACE FUNCTION shiftguard.bind_late_binding_view__keyed(p_view regclass, p_key text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '10ms' AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_pending record;
    v_columns text;
    v_types   text[];
    v_query   text;
    v_function regprocedure;
    v_bound    boolean := false;
    v_binding  text := current_setting('shiftguard.binding_late_views', true);
BEGIN
    PERFORM set_config('shiftguard.binding_late_views', 'on', true);  -- the DDL below does not start binding again
    <<binding>>
    BEGIN
        SELECT l.function_id::regprocedure AS function_id, format('%s.%I', p.pronamespace::regnamespace, p.proname)
                   AS function_name, l.query
          INTO v_pending
          FROM shiftguard_rows.late_binding_views l JOIN pg_class c ON c.oid = l.view_id
          JOIN pg_proc p ON p.oid = l.function_id
         WHERE l.view_id = p_view AND l.pending
           AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = v_caller)
           -- the owner may have changed its function: run only as made, as its owner
           AND p.prosrc = l.body AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
           AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp'] AND p.proretset
           AND p.proargtypes = '16'::oidvector
           AND ((p.prosecdef AND p.proowner = c.relowner) OR shiftguard.trusted_role(p.proowner));
        IF NOT FOUND OR NOT shiftguard.one_view_query(v_pending.query) THEN  -- (as this session's parser reads it)
            EXIT binding;
        END IF;
        BEGIN
            EXECUTE format('SELECT string_agg(format(''%%I %%s'', col_name, base_type::regtype), '', ''), '
                           'array_agg(col_type), '
                           'min(query) FROM %s(true)', v_pending.function_name)
               INTO v_columns, v_types, v_query;
            RAISE EXCEPTION USING ERRCODE = 'SGLB0';  -- undo what the owner's function did
        EXCEPTION WHEN SQLSTATE 'SGLB0' THEN
            NULL;  -- its answer, in the variables, stays
        WHEN OTHERS OR assert_failure THEN  -- (OTHERS is not ASSERT's: an owner's domain CHECK may run one)
            EXIT binding;  -- not yet: its tables are still missing (or its owner may not compile it)
        END;
        BEGIN
            v_function := shiftguard.late_binding_function(p_view, v_columns, v_query);
            UPDATE shiftguard_rows.late_binding_views SET function_id = v_function, column_types = v_types,
                                                          pending = false
             WHERE view_id = p_view;
            EXECUTE format('DROP FUNCTION %s', v_pending.function_id);
            v_bound := true;
        EXCEPTION WHEN OTHERS OR assert_failure THEN
            NULL;  -- not yet: its tables are still missing (or its owner may not compile it)
        END;
    END binding;
    PERFORM set_config('shiftguard.binding_late_views', coalesce(v_binding, ''), true);
    RETURN v_bound;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.bind_late_binding_view__keyed(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.bind_late_binding_view__keyed(regclass, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is bind_late_binding_view__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.bind_late_binding_view(p_view regclass) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.bind_late_binding_view__keyed($1, shiftguard.caller_key()) $$;
REVOKE ALL ON FUNCTION shiftguard.bind_late_binding_view(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.bind_late_binding_view(regclass) TO PUBLIC;  -- one's own views only

-- The pending late-binding views the proxy binds (LateBinding in catalog/late_binding.py), with
-- their owners (as SET SESSION AUTHORIZATION names them).
DROP FUNCTION IF EXISTS shiftguard.pending_late_binding_views();
CREATE FUNCTION shiftguard.pending_late_binding_views() RETURNS TABLE (view_id oid, owner text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT l.view_id, pg_catalog.quote_ident(r.rolname) FROM shiftguard_rows.late_binding_views l
      JOIN pg_class c ON c.oid = l.view_id JOIN pg_roles r ON r.oid = c.relowner
     WHERE l.pending
$$;
REVOKE ALL ON FUNCTION shiftguard.pending_late_binding_views() FROM PUBLIC;

-- Anyone's DDL (shiftguard_bind_late_binding_views) binds the pending views of its session's
-- user: their own query compiled in their own session, where they may run anything anyway. One
-- DDL spends at most about 200 ms on it, the views taken in random order (the rest wait for the
-- next DDL, or the proxy).
CREATE OR REPLACE FUNCTION shiftguard.bind_late_binding_views__keyed(p_key text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller name := shiftguard.caller_of(p_key);  -- who calls (schema.sql caller_key)
    v_view  regclass;
    v_until timestamptz := clock_timestamp() + interval '200 ms';
BEGIN
    FOR v_view IN SELECT l.view_id FROM shiftguard_rows.late_binding_views l JOIN pg_class c ON c.oid = l.view_id
                   WHERE l.pending AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = v_caller)
                   ORDER BY random() LOOP
        EXIT WHEN clock_timestamp() > v_until;
        PERFORM shiftguard.bind_late_binding_view__keyed(v_view, p_key => p_key);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION shiftguard.bind_late_binding_views__keyed(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.bind_late_binding_views__keyed(text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is bind_late_binding_views__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.bind_late_binding_views() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.bind_late_binding_views__keyed(shiftguard.caller_key()) $$;
REVOKE ALL ON FUNCTION shiftguard.bind_late_binding_views() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shiftguard.bind_late_binding_views() TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.bind_late_binding_views_after() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_user = shiftguard.management_role() AND session_user <> current_user THEN
        RETURN;  -- DDL of shiftguard's own functions (a temporary table of COPY's): nobody's views
    END IF;
    IF coalesce(current_setting('shiftguard.binding_late_views', true), '') <> 'on'
            AND shiftguard.late_binding_views_pending() THEN
        PERFORM shiftguard.bind_late_binding_views();
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION shiftguard.late_binding_views_pending__keyed(p_key text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM shiftguard_rows.late_binding_views l JOIN pg_class c ON c.oid = l.view_id
                    WHERE l.pending AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = shiftguard.key_owner(p_key)))
$$;

GRANT EXECUTE ON FUNCTION shiftguard.late_binding_views_pending__keyed(text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is late_binding_views_pending__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.late_binding_views_pending() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.late_binding_views_pending__keyed(shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.late_binding_views_pending() TO PUBLIC;
SELECT shiftguard.ensure_event_trigger('shiftguard_bind_late_binding_views', 'ddl_command_end',
    ARRAY['CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'CREATE VIEW', 'ALTER VIEW',
          'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'CREATE SCHEMA', 'ALTER SCHEMA',
          'CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE FOREIGN TABLE', 'IMPORT FOREIGN SCHEMA'],
    'shiftguard.bind_late_binding_views_after');

-- Every catalog view that shows a caller only some of its rows is a security_barrier view
-- (these, and the RLS, masking, identity-provider, default-privilege and IAM views of the other
-- files): without it PostgreSQL runs a caller's cheaper condition (a function raising its
-- argument, a cast failing on it) on every row before the view's own filter. The option is
-- written in CREATE OR REPLACE VIEW, which sets it again on a database bootstrapped before.
-- pg_user, pg_user_info, pg_group, pg_class, pg_attribute, pg_attrdef and the empty Spectrum
-- views show every row to everyone and have none; the masking views (catalog/masking.sql)
-- refuse a caller who may not read the table instead of filtering rows.
-- svv_table_info in Redshift's column order (dbt's docs generate reads all of them); once, from
-- the shape without pct_used (a view's columns cannot be reordered in place). On one PostgreSQL:
-- pct_used is the share of the database's size (it has no fixed capacity), one slice holds every
-- row (skew_rows 1), and no sorted region falls behind (unsorted 0 with a sort key, else NULL as
-- in Redshift); stats_off is how much of the table changed since it was last analyzed. Materialized
-- views have rows here too, as on Redshift (dbt's materialized views read their dist and sort here).
DO $$ BEGIN
    IF to_regclass('shiftguard.svv_table_info') IS NOT NULL AND NOT EXISTS (
            SELECT FROM pg_attribute WHERE attrelid = to_regclass('shiftguard.svv_table_info') AND attname = 'pct_used') THEN
        DROP VIEW shiftguard.svv_table_info;
    END IF;
END $$;
CREATE OR REPLACE VIEW shiftguard.svv_table_info WITH (security_barrier) AS
    SELECT current_database()::text AS database, n.nspname::text AS schema, c.oid AS table_id, c.relname::text AS "table",
           CASE WHEN coalesce((a.attrs->>'encode_auto')::boolean, false) THEN 'Y, AUTO(ENCODE)'
                WHEN a.attrs ? 'encodings' AND a.attrs->'encodings' <> '{}' THEN 'Y' ELSE 'N' END AS encoded,
           CASE upper(coalesce(a.attrs->>'diststyle', ''))
                WHEN 'KEY' THEN 'KEY(' || (a.attrs->>'distkey') || ')' WHEN 'EVEN' THEN 'EVEN' WHEN 'ALL' THEN 'ALL'
                ELSE 'AUTO(EVEN)' END AS diststyle,
           CASE WHEN a.attrs->>'sortkey_type' = 'INTERLEAVED' THEN 'INTERLEAVED' ELSE a.attrs->'sortkey'->>0 END AS sortkey1,
           coalesce((SELECT max(atttypmod - 4) FROM pg_attribute
                      WHERE attrelid = c.oid AND atttypid = 'varchar'::regtype AND attnum > 0), 0) AS max_varchar,
           coalesce(a.attrs->'encodings'->>(a.attrs->'sortkey'->>0), 'none') AS sortkey1_enc,
           coalesce(jsonb_array_length(a.attrs->'sortkey'), 0) AS sortkey_num,
           (pg_total_relation_size(c.oid) / 1048576)::bigint AS size,
           (pg_total_relation_size(c.oid) * 100.0
            / nullif((SELECT pg_database_size(current_database())), 0))::numeric(10,4) AS pct_used,
           0::bigint AS empty,
           CASE WHEN jsonb_array_length(a.attrs->'sortkey') > 0 THEN 0 END::numeric(5,2) AS unsorted,
           CASE WHEN c.reltuples < 0 THEN 100  -- never analyzed
                ELSE least(100, coalesce(st.n_mod_since_analyze, 0) * 100.0 / greatest(c.reltuples, 1)) END::numeric(5,2)
               AS stats_off,
           greatest(c.reltuples, 0)::numeric AS tbl_rows,
           NULL::numeric(19,2) AS skew_sortkey1,
           1::numeric(19,2) AS skew_rows,
           greatest(coalesce(st.n_live_tup, 0), 0)::numeric(38,0) AS estimated_visible_rows,
           coalesce((a.attrs->>'backup')::boolean, true) AS backup
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = c.oid
      LEFT JOIN pg_stat_all_tables st ON st.relid = c.oid
     WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shiftguard', 'shiftguard_rows')
       AND n.nspname NOT LIKE 'pg\_toast%' AND has_table_privilege(c.oid, 'SELECT');

-- Redshift's NOT NULL of a column: an IDENTITY column is NOT NULL only where NOT NULL was
-- written (PostgreSQL makes every identity column NOT NULL; policy/dialect.py records the others
-- in the table's attributes as nullable_identity).
CREATE OR REPLACE FUNCTION shiftguard.redshift_notnull(p_notnull boolean, p_attrs jsonb, p_column name)
RETURNS boolean LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_notnull AND NOT coalesce(p_attrs->'nullable_identity' ? p_column::text, false)
$$;

CREATE OR REPLACE VIEW shiftguard.pg_table_def WITH (security_barrier) AS
    SELECT n.nspname AS schemaname, c.relname AS tablename, att.attname AS "column",
           format_type(att.atttypid, att.atttypmod) AS type,
           coalesce(a.attrs->'encodings'->>att.attname::text, 'none')::varchar(32) AS encoding,
           coalesce(a.attrs->>'distkey' = att.attname::text, false) AS distkey,
           coalesce((SELECT (CASE WHEN a.attrs->>'sortkey_type' = 'INTERLEAVED' THEN -1 ELSE 1 END) * k.n::integer
                       FROM jsonb_array_elements_text(a.attrs->'sortkey') WITH ORDINALITY AS k(name, n)
                      WHERE k.name = att.attname::text), 0) AS sortkey,
           shiftguard.redshift_notnull(att.attnotnull, a.attrs, att.attname) AS notnull
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped
      LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = c.oid
     WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname = ANY (current_schemas(false))
       AND has_table_privilege(c.oid, 'SELECT');

GRANT SELECT ON shiftguard.svv_table_info, shiftguard.pg_table_def TO PUBLIC;

-- Redshift's catalog columns PostgreSQL lacks, for tools that read them (sqlalchemy-redshift):
-- pg_class.reldiststyle, pg_attribute.attisdistkey/attsortkeyord/attencodingtype,
-- pg_attrdef.adsrc; and the (empty) Spectrum views. Queries through the proxy that name
-- pg_class, pg_attribute or pg_attrdef read these (policy/statements.py).

-- Redshift's column encodings, by attencodingtype + 1 (SHOW COLUMNS reads them back by number).
CREATE OR REPLACE FUNCTION shiftguard.encodings() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['none', 'bytedict', 'delta', 'delta32k', 'lzo', 'mostly8', 'mostly16', 'mostly32',
                 'raw', 'runlength', 'text255', 'text32k', 'zstd', 'az64']
$$;
GRANT EXECUTE ON FUNCTION shiftguard.encodings() TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.encoding_id(p_codec text) RETURNS smallint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (array_position(shiftguard.encodings(), lower(p_codec)) - 1)::smallint
$$;

-- A materialized view is a view here (relkind 'v'), as on Redshift, where one is a view over a
-- table of its own (dbt's catalog finds materialized views among the views). reltriggers leaves
-- out shiftguard's own trigger on every table (catalog/materialized_views.sql), which psql would
-- list. pg_class's columns are read from the catalog, as pg_attribute's below.
DO $$
BEGIN
    EXECUTE format($view$
        CREATE OR REPLACE VIEW shiftguard.pg_class AS
        SELECT %s, CASE upper(a.attrs->>'diststyle') WHEN 'KEY' THEN 1 WHEN 'ALL' THEN 8 ELSE 0 END::smallint AS reldiststyle,
               false AS relhasoids,  -- psql's queries for an 8.0 server (what Redshift reports) read these
               (SELECT count(*) FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid
                   AND NOT (t.tgname = 'shiftguard_writes' AND t.tgfoid IN (
                       SELECT p.oid FROM pg_catalog.pg_proc p
                        WHERE p.proname = 'note_write' AND p.pronamespace = 'shiftguard'::regnamespace)))::smallint
                   AS reltriggers
          FROM pg_catalog.pg_class c
          LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = c.oid
    $view$, (SELECT string_agg(CASE attname WHEN 'relkind'
                                   THEN $k$(CASE c.relkind WHEN 'm' THEN 'v' ELSE c.relkind END)::"char" AS relkind$k$
                                   ELSE 'c.' || quote_ident(attname) END, ', ' ORDER BY attnum)
               FROM pg_catalog.pg_attribute
              WHERE attrelid = 'pg_catalog.pg_class'::regclass AND attnum > 0 AND NOT attisdropped));
END
$$;

-- pg_attribute's columns differ between PostgreSQL versions, and attmissingval (anyarray)
-- cannot be in a view: the column list is read from the catalog. attnotnull is Redshift's
-- (redshift_notnull). A late-binding view's columns are not here, as on Redshift, where
-- pg_get_late_binding_view_cols() alone lists them (dbt's catalog and column queries read both,
-- and would list each column twice).
DO $$
BEGIN
    EXECUTE format($view$
        CREATE OR REPLACE VIEW shiftguard.pg_attribute AS
        SELECT %s, coalesce(a.attrs->>'distkey' = att.attname::text, false) AS attisdistkey,
               coalesce((SELECT (CASE WHEN a.attrs->>'sortkey_type' = 'INTERLEAVED' THEN -1 ELSE 1 END) * k.n::integer
                           FROM jsonb_array_elements_text(a.attrs->'sortkey') WITH ORDINALITY AS k(name, n)
                          WHERE k.name = att.attname::text), 0) AS attsortkeyord,
               coalesce(shiftguard.encoding_id(a.attrs->'encodings'->>att.attname::text), 0)::smallint AS attencodingtype
          FROM pg_catalog.pg_attribute att
          LEFT JOIN shiftguard_rows.table_attributes a ON a.table_id = att.attrelid
         WHERE NOT EXISTS (SELECT FROM shiftguard_rows.late_binding_views l WHERE l.view_id = att.attrelid)
    $view$, (SELECT string_agg(CASE attname WHEN 'attnotnull'
                                   THEN 'shiftguard.redshift_notnull(att.attnotnull, a.attrs, att.attname) AS attnotnull'
                                   ELSE 'att.' || quote_ident(attname) END, ', ' ORDER BY attnum)
               FROM pg_catalog.pg_attribute
              WHERE attrelid = 'pg_catalog.pg_attribute'::regclass AND attnum > 0
                AND atttypid <> 'anyarray'::regtype));
END
$$;

CREATE OR REPLACE VIEW shiftguard.pg_attrdef AS
    SELECT d.*, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS adsrc FROM pg_catalog.pg_attrdef d;

CREATE OR REPLACE VIEW shiftguard.svv_external_schemas AS
    SELECT NULL::integer AS esoid, NULL::integer AS eskind, NULL::text AS schemaname, NULL::integer AS esowner,
           NULL::text AS databasename, NULL::text AS esoptions WHERE false;
CREATE OR REPLACE VIEW shiftguard.svv_external_tables AS
    SELECT NULL::text AS redshift_database_name, NULL::text AS schemaname, NULL::text AS tablename,
           NULL::text AS location, NULL::text AS input_format, NULL::text AS output_format,
           NULL::text AS serialization_lib, NULL::text AS serde_parameters, NULL::integer AS compressed,
           NULL::text AS parameters, NULL::text AS tabletype WHERE false;
CREATE OR REPLACE VIEW shiftguard.svv_external_columns AS
    SELECT NULL::text AS redshift_database_name, NULL::text AS schemaname, NULL::text AS tablename,
           NULL::text AS columnname, NULL::text AS external_type, NULL::integer AS columnnum,
           NULL::integer AS part_key, NULL::text AS is_nullable WHERE false;

GRANT SELECT ON shiftguard.pg_class, shiftguard.pg_attribute, shiftguard.pg_attrdef, shiftguard.svv_external_schemas,
                shiftguard.svv_external_tables, shiftguard.svv_external_columns TO PUBLIC;

-- Redshift's user catalog views, read through the proxy as pg_user, pg_user_info,
-- svl_user_info and svv_user_info (policy/statements.py points the names here).
CREATE OR REPLACE VIEW shiftguard.pg_user AS
    SELECT u.name::name AS usename, r.oid::integer AS usesysid, u.createdb OR u.superuser AS usecreatedb,
           u.superuser AS usesuper, false AS usecatupd, '********'::text AS passwd,
           u.valid_until AS valuntil, r.rolconfig AS useconfig
      FROM shiftguard_rows.users u JOIN pg_roles r ON r.rolname = u.name;

CREATE OR REPLACE VIEW shiftguard.pg_user_info AS
    SELECT p.*, CASE WHEN u.connection_limit IS NULL THEN 'UNLIMITED' ELSE u.connection_limit::text END AS useconnlimit
      FROM shiftguard.pg_user p JOIN shiftguard_rows.users u ON u.name = p.usename;

-- Superusers only.
CREATE OR REPLACE VIEW shiftguard.svl_user_info WITH (security_barrier) AS
    SELECT p.usename::text AS usename, p.usesysid, p.usecreatedb, p.usesuper, p.usecatupd, p.useconnlimit,
           CASE WHEN u.syslog_unrestricted THEN 'UNRESTRICTED' ELSE 'RESTRICTED' END AS syslogaccess,
           u.last_ddl_ts, coalesce(u.session_timeout, 0) AS sessiontimeout, u.external_id
      FROM shiftguard.pg_user_info p JOIN shiftguard_rows.users u ON u.name = p.usename
     WHERE shiftguard.require_superuser('svl_user_info');

-- Everyone; a user who is not a superuser sees only their own row.
CREATE OR REPLACE VIEW shiftguard.svv_user_info WITH (security_barrier) AS
    SELECT p.usename::text AS user_name, p.usesysid AS user_id, p.usecreatedb AS createdb,
           p.usesuper AS superuser, p.usecatupd AS catalog_update, p.useconnlimit AS connection_limit,
           CASE WHEN u.syslog_unrestricted THEN 'UNRESTRICTED' ELSE 'RESTRICTED' END AS syslog_access,
           u.last_ddl_ts AS last_ddl_timestamp, coalesce(u.session_timeout, 0) AS session_timeout,
           u.external_id AS external_user_id
      FROM shiftguard.pg_user_info p JOIN shiftguard_rows.users u ON u.name = p.usename
     WHERE p.usename = current_user OR shiftguard.caller_is_superuser();

CREATE OR REPLACE VIEW shiftguard.pg_group AS
    SELECT g.name::name AS groname, r.oid::integer AS grosysid,
           ARRAY(SELECT m.member::integer FROM pg_auth_members m WHERE m.roleid = r.oid ORDER BY 1) AS grolist
      FROM shiftguard_rows.groups g JOIN pg_roles r ON r.rolname = g.role;

-- Privileges granted explicitly, as Redshift's SVV_*_PRIVILEGES show them: to users, groups
-- ('grp:' roles), roles and PUBLIC. Superusers and SYSLOG ACCESS UNRESTRICTED users see every
-- row; others the identities they are or belong to, PUBLIC, and what they own.
CREATE OR REPLACE FUNCTION shiftguard.identity(p_oid oid, OUT name text, OUT type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_oid = 0 THEN 'public' WHEN g.name IS NOT NULL THEN g.name ELSE r.rolname::text END,
           CASE WHEN p_oid = 0 THEN 'public' WHEN g.name IS NOT NULL THEN 'group'
                WHEN u.name IS NOT NULL THEN 'user' ELSE 'role' END
      FROM (SELECT p_oid AS oid) x
      LEFT JOIN pg_roles r ON r.oid = x.oid
      LEFT JOIN shiftguard_rows.groups g ON g.role = r.rolname
      LEFT JOIN shiftguard_rows.users u ON u.name = r.rolname
$$;
GRANT EXECUTE ON FUNCTION shiftguard.identity(oid) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.sees_identity__keyed(p_grantee oid, p_owner oid, p_key text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.role_may(shiftguard.key_owner(p_key), 'ACCESS CATALOG')  -- superusers, and the permission (UNVERIFIED: its reach)
        OR coalesce((SELECT syslog_unrestricted FROM shiftguard_rows.users WHERE name = shiftguard.key_owner(p_key)::text), false)
        OR p_grantee = 0
        OR p_owner = (SELECT oid FROM pg_roles WHERE rolname = shiftguard.key_owner(p_key))
        OR pg_has_role(shiftguard.key_owner(p_key), p_grantee, 'USAGE')
$$;

GRANT EXECUTE ON FUNCTION shiftguard.sees_identity__keyed(oid, oid, text) TO PUBLIC;
-- Its caller known by key (schema.sql caller_key): the work is sees_identity__keyed's.
CREATE OR REPLACE FUNCTION shiftguard.sees_identity(p_grantee oid, p_owner oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT shiftguard.sees_identity__keyed($1, $2, shiftguard.caller_key()) $$;
GRANT EXECUTE ON FUNCTION shiftguard.sees_identity(oid, oid) TO PUBLIC;

-- Every grant on a relation: SVV_RELATION_PRIVILEGES without TRIGGER, which SHOW GRANTS lists
-- (with RULE beside it) for a GRANT ALL, as Redshift's PostgreSQL 8 kept both.
CREATE OR REPLACE VIEW shiftguard.relation_grants WITH (security_barrier) AS
    SELECT n.nspname::text AS namespace_name, c.relname::text AS relation_name,
           a.privilege_type::text AS privilege_type, a.grantee::integer AS identity_id,
           i.name AS identity_name, i.type AS identity_type,
           a.is_grantable AND i.type = 'user' AS admin_option
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL (SELECT grantee, privilege_type, is_grantable FROM aclexplode(c.relacl)
                         UNION ALL SELECT grantee, privilege_type, is_grantable FROM shiftguard.redshift_acl
                                   WHERE object_type = 'table' AND object_oid = c.oid) a
     CROSS JOIN LATERAL shiftguard.identity(a.grantee) i
     WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shiftguard', 'shiftguard_rows') AND n.nspname NOT LIKE 'pg\_%'
       AND a.grantee <> c.relowner AND shiftguard.sees_identity(a.grantee, c.relowner);

CREATE OR REPLACE VIEW shiftguard.svv_relation_privileges WITH (security_barrier) AS
    SELECT * FROM shiftguard.relation_grants WHERE privilege_type <> 'TRIGGER';

-- Column grants (Redshift's column rules keep them apart from table grants, catalog/privileges.sql).
CREATE OR REPLACE VIEW shiftguard.svv_column_privileges WITH (security_barrier) AS
    SELECT n.nspname::text AS namespace_name, c.relname::text AS relation_name, t.attname::text AS column_name,
           a.privilege_type::text AS privilege_type, a.grantee::integer AS identity_id,
           i.name AS identity_name, i.type AS identity_type
      FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL aclexplode(t.attacl) a
     CROSS JOIN LATERAL shiftguard.identity(a.grantee) i
     WHERE t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shiftguard', 'shiftguard_rows') AND n.nspname NOT LIKE 'pg\_%'
       AND a.grantee <> c.relowner AND shiftguard.sees_identity(a.grantee, c.relowner);

CREATE OR REPLACE VIEW shiftguard.svv_schema_privileges WITH (security_barrier) AS
    SELECT n.nspname::text AS namespace_name, a.privilege_type::text AS privilege_type,
           a.grantee::integer AS identity_id, i.name AS identity_name, i.type AS identity_type,
           a.is_grantable AND i.type = 'user' AS admin_option
      FROM pg_namespace n
     CROSS JOIN LATERAL (SELECT grantee, privilege_type, is_grantable FROM aclexplode(n.nspacl)
                         UNION ALL SELECT grantee, privilege_type, is_grantable FROM shiftguard.redshift_acl
                                   WHERE object_type = 'schema' AND object_oid = n.oid) a
     CROSS JOIN LATERAL shiftguard.identity(a.grantee) i
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'shiftguard', 'shiftguard_rows') AND n.nspname NOT LIKE 'pg\_%'
       AND a.grantee <> n.nspowner AND shiftguard.sees_identity(a.grantee, n.nspowner);

CREATE OR REPLACE VIEW shiftguard.svv_database_privileges WITH (security_barrier) AS
    SELECT d.datname::text AS database_name,
           CASE a.privilege_type WHEN 'TEMPORARY' THEN 'TEMP' ELSE a.privilege_type END::text AS privilege_type,
           a.grantee::integer AS identity_id, i.name AS identity_name, i.type AS identity_type,
           a.is_grantable AND i.type = 'user' AS admin_option
      FROM pg_database d
     CROSS JOIN LATERAL (SELECT grantee, privilege_type, is_grantable FROM aclexplode(d.datacl)
                         UNION ALL SELECT grantee, privilege_type, is_grantable FROM shiftguard.redshift_acl
                                   WHERE object_type = 'database' AND object_oid = d.oid) a
     CROSS JOIN LATERAL shiftguard.identity(a.grantee) i
     WHERE a.grantee <> d.datdba AND a.privilege_type <> 'CONNECT'
       AND shiftguard.sees_identity(a.grantee, d.datdba);

-- RBAC views. Superusers see every row; others the roles they own or were granted.
CREATE OR REPLACE VIEW shiftguard.svv_roles WITH (security_barrier) AS
    SELECT r.oid::integer AS role_id, x.name AS role_name, x.owner AS role_owner, x.external_id
      FROM shiftguard_rows.roles x JOIN pg_roles r ON r.rolname = x.name
     WHERE shiftguard.caller_is_superuser() OR x.owner = current_user OR pg_has_role(current_user, r.oid, 'USAGE');

CREATE OR REPLACE VIEW shiftguard.svv_user_grants WITH (security_barrier) AS
    SELECT u.oid::integer AS user_id, u.rolname::text AS user_name, r.oid::integer AS role_id,
           r.rolname::text AS role_name, m.admin_option
      FROM pg_auth_members m
      JOIN pg_roles r ON r.oid = m.roleid JOIN shiftguard_rows.roles x ON x.name = r.rolname
      JOIN pg_roles u ON u.oid = m.member JOIN shiftguard_rows.users y ON y.name = u.rolname
     WHERE shiftguard.caller_is_superuser() OR u.rolname = current_user;

CREATE OR REPLACE VIEW shiftguard.svv_role_grants WITH (security_barrier) AS
    SELECT g.oid::integer AS role_id, g.rolname::text AS role_name, r.oid::integer AS granted_role_id,
           r.rolname::text AS granted_role_name
      FROM pg_auth_members m
      JOIN pg_roles r ON r.oid = m.roleid JOIN shiftguard_rows.roles x ON x.name = r.rolname
      JOIN pg_roles g ON g.oid = m.member JOIN shiftguard_rows.roles y ON y.name = g.rolname
     WHERE shiftguard.caller_is_superuser() OR pg_has_role(current_user, g.oid, 'USAGE');

CREATE OR REPLACE VIEW shiftguard.svv_system_privileges WITH (security_barrier) AS
    SELECT sp.privilege AS system_privilege, r.oid::integer AS identity_id, sp.role AS identity_name,
           'role'::text AS identity_type
      FROM shiftguard_rows.system_privileges sp JOIN pg_roles r ON r.rolname = sp.role
     WHERE shiftguard.caller_is_superuser() OR pg_has_role(current_user, r.oid, 'USAGE');

-- Audit views: superusers (or an explicit GRANT) for the connection and user logs; the query
-- log shows a user's own rows unless SYSLOG ACCESS UNRESTRICTED or ACCESS SYSTEM TABLE.
CREATE OR REPLACE FUNCTION shiftguard.role_sees_all_rows(p_role name) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.role_may(p_role, 'ACCESS SYSTEM TABLE')
        OR coalesce((SELECT syslog_unrestricted FROM shiftguard_rows.users WHERE name = p_role::text), false)
$$;
REVOKE ALL ON FUNCTION shiftguard.role_sees_all_rows(name) FROM PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.sees_all_rows__keyed(p_key text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.role_sees_all_rows(shiftguard.key_owner(p_key))
$$;
GRANT EXECUTE ON FUNCTION shiftguard.sees_all_rows__keyed(text) TO PUBLIC;
CREATE OR REPLACE FUNCTION shiftguard.sees_all_rows() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT shiftguard.sees_all_rows__keyed(shiftguard.caller_key())
$$;
GRANT EXECUTE ON FUNCTION shiftguard.sees_all_rows() TO PUBLIC;

CREATE OR REPLACE VIEW shiftguard.stl_connection_log WITH (security_barrier) AS
    SELECT event, recordtime, remotehost, remoteport, pid, dbname, username, authmethod, duration, sslversion,
           sslcipher, mtu, sslcompression, sslexpansion, iamauthguid, application_name, os_version, driver_version,
           plugin_name, protocol_version, session_id AS sessionid,
           reason  -- ours, after Redshift's columns: why a login or connection was refused
      FROM shiftguard_rows.connection_log WHERE shiftguard.require_superuser('stl_connection_log');

CREATE OR REPLACE VIEW shiftguard.sys_connection_log WITH (security_barrier) AS
    SELECT recordtime AS record_time, remotehost AS remote_host, remoteport AS remote_port, session_id,
           dbname AS database_name, username AS user_name, authmethod AS auth_method, duration, sslversion AS ssl_version,
           sslcipher AS ssl_cipher, sslcompression AS ssl_compression, sslexpansion AS ssl_expansion,
           iamauthguid AS iam_auth_guid, application_name, driver_version, os_version, plugin_name, protocol_version,
           event, reason
      FROM shiftguard_rows.connection_log WHERE shiftguard.require_superuser('sys_connection_log');

CREATE OR REPLACE VIEW shiftguard.stl_userlog WITH (security_barrier) AS
    SELECT userid, username, oldusername, action, usecreatedb, usesuper, usecatupd,
           coalesce(valuntil, 'infinity'::timestamp) AS valuntil, pid, xid, recordtime
      FROM shiftguard_rows.user_log WHERE shiftguard.require_superuser('stl_userlog');

-- STL_QUERY holds finished statements (endtime set; aborted 1 when it failed or was canceled);
-- SYS_QUERY_HISTORY also running ones. Both in Redshift's column order, the columns we have.
-- (SELECT shiftguard.sees_all_rows()): asked once per query, not once per row of the log.
DO $$ BEGIN  -- once, from the shape without status (a view's columns cannot be reordered in place)
    IF to_regclass('shiftguard.sys_query_history') IS NOT NULL AND NOT EXISTS (
            SELECT FROM pg_attribute WHERE attrelid = to_regclass('shiftguard.sys_query_history') AND attname = 'status') THEN
        DROP VIEW shiftguard.sys_query_history;
    END IF;
END $$;
-- A user's own rows: current_user's, the reader's (session_user is the admin's while an admin's
-- ANALYZE runs a user's index expression, which read the admin's statements so).
CREATE OR REPLACE VIEW shiftguard.stl_query WITH (security_barrier) AS
    SELECT userid, id::integer AS query, ''::text AS label, xid, pid, db::text AS database, sql::text AS querytxt,
           recordtime AS starttime, endtime, CASE WHEN status = 'success' THEN 0 ELSE 1 END AS aborted
      FROM shiftguard_rows.query_log
     WHERE endtime IS NOT NULL AND ("user" = current_user OR (SELECT shiftguard.sees_all_rows()));

CREATE OR REPLACE VIEW shiftguard.sys_query_history WITH (security_barrier) AS
    SELECT userid AS user_id, id AS query_id, ''::text AS query_label, xid AS transaction_id, pid AS session_id,
           db::text AS database_name, status, recordtime AS start_time, endtime AS end_time,
           (extract(epoch FROM endtime - recordtime) * 1000000)::bigint AS elapsed_time,
           error_message::text AS error_message, sql::text AS query_text
      FROM shiftguard_rows.query_log WHERE "user" = current_user OR (SELECT shiftguard.sees_all_rows());

-- STL_UNDONE: the transactions Redshift undid. PostgreSQL undoes none after they commit: no rows
-- (redshift_connector's tpc_recover reads it).
CREATE OR REPLACE VIEW shiftguard.stl_undone AS
    SELECT NULL::integer AS userid, NULL::bigint AS xact_id, NULL::bigint AS xact_id_undone,
           NULL::timestamp AS undo_start_ts, NULL::timestamp AS undo_end_ts, NULL::bigint AS table_id
     WHERE false;

GRANT SELECT ON shiftguard.stl_connection_log, shiftguard.sys_connection_log, shiftguard.stl_userlog,
                shiftguard.stl_query, shiftguard.sys_query_history, shiftguard.stl_undone TO PUBLIC;

GRANT SELECT ON shiftguard.svv_roles, shiftguard.svv_user_grants, shiftguard.svv_role_grants,
                shiftguard.svv_system_privileges TO PUBLIC;
GRANT SELECT ON shiftguard.pg_user, shiftguard.pg_user_info, shiftguard.pg_group,
                shiftguard.svl_user_info, shiftguard.svv_user_info, shiftguard.relation_grants,
                shiftguard.svv_relation_privileges, shiftguard.svv_column_privileges, shiftguard.svv_schema_privileges,
                shiftguard.svv_database_privileges TO PUBLIC;
DROP FUNCTION IF EXISTS shiftguard.redshift_acl(text, oid);  -- now a private view the views read

-- Names of 64 to 127 bytes (policy/identifiers.py): PostgreSQL keeps 63, so each is sent as
-- its short name, its first characters (up to 38 bytes), '#' and 24 hex digits of the SHA-256
-- of its UTF-8. The map back, for the cluster (catalog/store.py CLUSTER_TABLES): the proxy
-- records each long name it sends (remember_long_names) before the statement runs. Only the
-- management role writes it, and only pairs that short_name makes: a row can only ever say
-- what the name it hashes is.
CREATE TABLE IF NOT EXISTS shiftguard_rows.long_names (
    short text PRIMARY KEY,
    long  text NOT NULL
);
REVOKE ALL ON shiftguard_rows.long_names FROM PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.short_name(p_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_length integer := 38;
BEGIN
    IF octet_length(p_name) <= 63 THEN
        RETURN p_name;
    END IF;
    WHILE octet_length(left(p_name, v_length)) > 38 LOOP
        v_length := v_length - 1;
    END LOOP;
    RETURN left(p_name, v_length) || '#' || left(encode(sha256(convert_to(p_name, 'UTF8')), 'hex'), 24);
END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.short_name(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION shiftguard.remember_long_names(p_names text[]) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO shiftguard_rows.long_names (short, long)
    SELECT DISTINCT shiftguard.short_name(n), n FROM unnest(p_names) AS n WHERE octet_length(n) BETWEEN 64 AND 127
    ON CONFLICT DO NOTHING
$$;
REVOKE ALL ON FUNCTION shiftguard.remember_long_names(text[]) FROM PUBLIC;

-- The name a catalog holds as the user wrote it: the long name of a short one, else itself. To
-- anyone: a short name holds 96 bits of the long name's hash, so only who sees it in a catalog
-- (or knows the long name) can ask; what it tells is the name of what they already see.
CREATE OR REPLACE FUNCTION shiftguard.long_name(p_name text) RETURNS text
LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN octet_length(p_name) > 25 AND substr(p_name, length(p_name) - 24, 1) = '#'
                THEN coalesce((SELECT l.long FROM shiftguard_rows.long_names l WHERE l.short = p_name), p_name)
                ELSE p_name END
$$;
GRANT EXECUTE ON FUNCTION shiftguard.long_name(text) TO PUBLIC;

-- information_schema.tables as Redshift's names it: long names whole, as text (sql_identifier is a
-- name: 63 bytes). policy/statements.py reads information_schema.tables through it when the
-- dialect is on; dbt finds its relations there.
CREATE OR REPLACE VIEW shiftguard.information_schema_tables WITH (security_barrier) AS
    SELECT t.table_catalog, shiftguard.long_name(t.table_schema) AS table_schema,
           shiftguard.long_name(t.table_name) AS table_name, t.table_type,
           t.self_referencing_column_name, t.reference_generation, t.user_defined_type_catalog,
           t.user_defined_type_schema, t.user_defined_type_name, t.is_insertable_into, t.is_typed, t.commit_action
      FROM information_schema.tables t;
GRANT SELECT ON shiftguard.information_schema_tables TO PUBLIC;

-- information_schema.columns without the columns of late-binding views, which Redshift's does not
-- list (see pg_attribute above); policy/statements.py reads it through this when the dialect is on.
CREATE OR REPLACE VIEW shiftguard.information_schema_columns WITH (security_barrier) AS
    SELECT c.* FROM information_schema.columns c
     WHERE NOT EXISTS (SELECT FROM shiftguard_rows.late_binding_views l JOIN pg_class v ON v.oid = l.view_id
                         JOIN pg_namespace n ON n.oid = v.relnamespace
                        WHERE v.relname = c.table_name AND n.nspname = c.table_schema);
GRANT SELECT ON shiftguard.information_schema_columns TO PUBLIC;
