"""Redshift's object privileges that PostgreSQL has no bit for (reference §4): DROP and ALTER on
tables, ALTER and DROP on schemas, ALTER and USAGE on databases; and the statements that honour
them and the DROP system permissions (DROP TABLE / VIEW / SCHEMA, renames); the other system
permissions on statements (TRUNCATE, ANALYZE, DROP FUNCTION, CREATE SCHEMA, and CREATE TABLE /
VIEW / FUNCTION / PROCEDURE, which lend CREATE on a schema). Pure: parse trees in, SQL out;
catalog/privileges.sql checks the caller and keeps the state.
"""

from __future__ import annotations

import json

from pglast import ast, enums

from ..protocol import sqlstate
from .tokens import CALLER_SEARCH_PATH, Cursor, GrammarError, parse_tree, printed, quoted_name, sql_literal

_OBJECT_TYPES = {enums.ObjectType.OBJECT_TABLE: "table", enums.ObjectType.OBJECT_SCHEMA: "schema",
                 enums.ObjectType.OBJECT_DATABASE: "database"}
REDSHIFT_ONLY = {"table": ("DROP", "ALTER"), "schema": ("ALTER", "DROP"), "database": ("ALTER", "USAGE")}


def split_grant(node: ast.GrantStmt) -> tuple[dict, str] | None:
    """Take the Redshift-only privileges out of a GRANT or REVOKE (the tree keeps the rest):
    (the spec for shiftguard.redshift_grant, SQL evaluating to the objects' oids), or None."""
    kind = _OBJECT_TYPES.get(node.objtype)
    if kind is None:
        return None
    ours = REDSHIFT_ONLY[kind]
    if node.privileges is None:  # ALL [PRIVILEGES]: Redshift's ALL includes them
        taken = list(ours)
    else:
        taken = [p.priv_name.upper() for p in node.privileges if p.priv_name and p.priv_name.upper() in ours]
        if not taken:
            return None
        if any(p.cols for p in node.privileges if p.priv_name and p.priv_name.upper() in ours):
            raise GrammarError(f"{taken[0]} cannot be granted on columns", sqlstate.INVALID_GRANT_OPERATION)
        node.privileges = tuple(p for p in node.privileges if not (p.priv_name and p.priv_name.upper() in ours))
    spec = {"is_grant": bool(node.is_grant), "object_type": kind, "privileges": taken, "grantees": _grantees(node),
            "grant_option": bool(node.grant_option)}
    return spec, _objects(node, kind)


_COLUMN_PRIVILEGES = ("SELECT", "UPDATE")


def column_rules(tree, node: ast.GrantStmt) -> str | None:
    """A GRANT or REVOKE on tables that Redshift's column rules reach (reference §4), as a call
    of shiftguard.grant_checked, or None. The rules: columns take SELECT and UPDATE only (ALL
    (cols) is both), no grant option, granted by the owner or a superuser; one privilege lives
    at one level for a grantee, so a table grant is refused while the grantee holds it on
    columns, a column grant is a no-op while it is held on the table, and a column revoke is
    refused then. A table revoke removes both (PostgreSQL's own rule). `node` is the tree's
    statement, after split_grant took the Redshift-only privileges out."""
    if node.objtype != enums.ObjectType.OBJECT_TABLE or node.privileges == ():
        return None
    on_columns = [p for p in node.privileges or () if p.cols]
    on_table = [p.priv_name.upper() for p in node.privileges or () if not p.cols]
    checked = list(_COLUMN_PRIVILEGES) if node.privileges is None else [
        p for p in on_table if p in _COLUMN_PRIVILEGES]
    if not on_columns and not (node.is_grant and checked):
        return None  # nothing the rules reach
    columns = []
    if on_columns:
        if node.targtype != enums.GrantTargetType.ACL_TARGET_OBJECT:
            raise GrammarError("column privileges are granted on named tables", sqlstate.INVALID_GRANT_OPERATION)
        if node.grant_option:
            raise GrammarError("column privileges have no grant option", sqlstate.INVALID_GRANT_OPERATION)
        for privilege in on_columns:
            names = [c.sval for c in privilege.cols]
            for name in (_COLUMN_PRIVILEGES if privilege.priv_name is None else (privilege.priv_name.upper(),)):
                if name not in _COLUMN_PRIVILEGES:
                    raise GrammarError(f"{name} cannot be granted on columns; columns take SELECT and UPDATE",
                                       sqlstate.INVALID_GRANT_OPERATION)
                columns.append({"privilege": name, "columns": names})
        node.privileges = tuple(p for p in node.privileges if not p.cols)
    statement = printed(tree) if node.privileges is None or node.privileges else None
    spec = {"is_grant": bool(node.is_grant), "check": checked if node.is_grant else [],
            "columns": columns, "grantees": _grantees(node)}
    return (f"CALL shiftguard.grant_checked({sql_literal(statement) if statement else 'NULL'}, "
            f"{sql_literal(json.dumps(spec, separators=(',', ':')))}::pg_catalog.jsonb, {_objects(node, 'table')}, "
            f"{CALLER_SEARCH_PATH})")


def default_privileges_call(tree, outer: ast.AlterDefaultPrivilegesStmt, sign) -> str | None:
    """ALTER DEFAULT PRIVILEGES [FOR USER u, ...] [IN SCHEMA s, ...] GRANT | REVOKE ..., as calls,
    or None when PostgreSQL's own statement does. DROP ON TABLES (in ALL too), which PostgreSQL
    has no bit for, goes to shiftguard.default_privileges, which applies it to new tables. Naming
    other users needs a superuser or the ALTER DEFAULT PRIVILEGES permission: for the
    permission's holders shiftguard.permitted runs PostgreSQL's part as printed here, signed."""
    action = outer.action
    options = {o.defname: o.arg for o in outer.options or ()}
    users = [r.rolename for r in options.get("roles", ())]
    schemas = [n.sval for n in options.get("schemas", ())]
    drop = action.objtype == enums.ObjectType.OBJECT_TABLE and (
        action.privileges is None or any(p.priv_name and p.priv_name.upper() == "DROP" for p in action.privileges))
    if drop and action.privileges is not None:
        action.privileges = tuple(p for p in action.privileges if not (p.priv_name and p.priv_name.upper() == "DROP"))
    postgres = printed(tree) if action.privileges is None or action.privileges else None
    if postgres is not None and users:
        # Signed whole: the checks in shiftguard.permitted read users and schemas from it.
        spec = json.dumps({"users": users, "schemas": schemas, "statement": postgres}, separators=(",", ":"))
        signed = json.dumps({"spec": spec, "signature": sign("default_privileges", spec)}, separators=(",", ":"))
        postgres = (f"CALL shiftguard.run_or_permit('ALTER DEFAULT PRIVILEGES', {sql_literal(postgres)}, "
                    f"ARRAY[]::pg_catalog.oid[], {sql_literal(signed)}::pg_catalog.jsonb, {CALLER_SEARCH_PATH})")
    if not drop:
        return postgres if users else None
    spec = {"is_grant": bool(action.is_grant), "grant_option": bool(action.grant_option), "users": users,
            "schemas": schemas, "grantees": _grantees(action)}
    return (f"CALL shiftguard.default_privileges({sql_literal(postgres) if postgres else 'NULL'}, "
            f"{sql_literal(json.dumps(spec, separators=(',', ':')))}::pg_catalog.jsonb, {CALLER_SEARCH_PATH})")


def _grantees(node: ast.GrantStmt) -> list[str]:
    """Role names, '' for PUBLIC."""
    grantees = []
    for grantee in node.grantees or ():
        if grantee.roletype == enums.RoleSpecType.ROLESPEC_PUBLIC:
            grantees.append("")
        elif grantee.roletype == enums.RoleSpecType.ROLESPEC_CSTRING:
            grantees.append(grantee.rolename)
        else:
            raise GrammarError("name the grantee (CURRENT_USER and SESSION_USER are not Redshift grantees)")
    return grantees


def _objects(node: ast.GrantStmt, kind: str) -> str:
    if node.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
        schemas = ", ".join(f"{sql_literal(quoted_name(s.sval))}::regnamespace" for s in node.objects)
        return f"shiftguard.tables_in(ARRAY[{schemas}]::oid[])"
    if kind == "table":
        return "ARRAY[" + ", ".join(f"{sql_literal(printed(r))}::regclass" for r in node.objects) + "]::oid[]"
    if kind == "schema":
        return "ARRAY[" + ", ".join(f"{sql_literal(quoted_name(s.sval))}::regnamespace" for s in node.objects) + "]::oid[]"
    databases = ", ".join(f"shiftguard.database_oid({sql_literal(s.sval)})" for s in node.objects)
    return f"ARRAY[{databases}]::oid[]"


def grant_call(postgres: str | None, spec: dict, objects: str) -> str:
    return (f"CALL shiftguard.grant_privileges({sql_literal(postgres) if postgres else 'NULL'}, "
            f"{sql_literal(json.dumps(spec, separators=(',', ':')))}::pg_catalog.jsonb, {objects}, {CALLER_SEARCH_PATH})")


_DROPPED = {enums.ObjectType.OBJECT_TABLE: "TABLE", enums.ObjectType.OBJECT_VIEW: "VIEW",
            enums.ObjectType.OBJECT_SCHEMA: "SCHEMA"}


def drop_call(node: dict) -> tuple[str, bytes] | None:
    """DROP TABLE | VIEW | SCHEMA as a call that honours Redshift's DROP privilege and system
    permissions (node: the DropStmt as pglast's JSON)."""
    kind = {"OBJECT_TABLE": "TABLE", "OBJECT_VIEW": "VIEW", "OBJECT_SCHEMA": "SCHEMA"}.get(node.get("removeType"))
    if kind is None:
        return None
    names, resolved = [], []
    for obj in node.get("objects", ()):
        parts = [p["String"]["sval"] for p in obj["List"]["items"]] if "List" in obj else [obj["String"]["sval"]]
        written = ".".join(parts)
        qualified = ".".join(quoted_name(p) for p in parts)
        names.append(sql_literal(written))
        function = "to_regnamespace" if kind == "SCHEMA" else "to_regclass"
        resolved.append(f"pg_catalog.{function}({sql_literal(qualified)})::oid")
    cascade = node.get("behavior") == "DROP_CASCADE"
    return (f"CALL shiftguard.drop_objects('{kind}', ARRAY[{', '.join(resolved)}]::oid[], "
            f"ARRAY[{', '.join(names)}]::text[], {str(bool(node.get('missing_ok'))).lower()}, "
            f"{str(cascade).lower()})", f"DROP {kind}".encode())


def rename_call(node: dict) -> tuple[str, bytes] | None:
    """ALTER TABLE t RENAME TO n / RENAME [COLUMN] c TO n, for holders of ALTER."""
    if node.get("missing_ok"):
        return None  # IF EXISTS: PostgreSQL's own path (owners only)
    target = node.get("renameType")
    if target == "OBJECT_COLUMN" and node.get("relationType") == "OBJECT_TABLE":
        column = sql_literal(node["subname"])
    elif target == "OBJECT_TABLE":
        column = "NULL"
    else:
        return None
    relation = node["relation"]
    qualified = ".".join(quoted_name(p) for p in (relation.get("schemaname"), relation["relname"]) if p)
    return (f"CALL shiftguard.rename_relation({sql_literal(qualified)}::regclass, {column}, {sql_literal(node['newname'])})",
            b"ALTER TABLE")


_ASSUME_FOR = ("ALL", "COPY", "UNLOAD", "EXTERNAL FUNCTION", "CREATE MODEL")


def parse_assumerole(cursor, granting: bool) -> dict:
    """GRANT ASSUMEROLE ON {'arn' [, ...] | default | ALL} TO grantee [, ...] FOR {ALL | COPY |
    UNLOAD | EXTERNAL FUNCTION | CREATE MODEL} [, ...], and REVOKE ... FROM (GRANT / REVOKE and
    ASSUMEROLE consumed)."""
    cursor.expect("ON")
    roles = []
    while True:
        token = cursor.peek()
        if token is not None and token.name == "SCONST":
            roles.append(cursor.string("IAM role ARN"))
        elif cursor.accept("DEFAULT"):
            roles.append("default")
        elif cursor.accept("ALL"):
            roles.append("ALL")
        else:
            raise GrammarError("syntax error: expected an IAM role ARN in quotes, default or ALL")
        if not cursor.accept_symbol(","):
            break
    cursor.expect("TO" if granting else "FROM")
    grantees = []
    while True:
        if cursor.accept("PUBLIC"):
            grantees.append("")
        elif cursor.accept("ROLE"):
            grantees.append(cursor.name("role name"))
        elif cursor.accept("GROUP"):
            from .groups import group_role  # groups import this module
            grantees.append(group_role(cursor.name("group name")))
        else:
            grantees.append(cursor.name("user name"))
        if not cursor.accept_symbol(","):
            break
    cursor.expect("FOR")
    uses = []
    while True:
        for use in _ASSUME_FOR:
            if cursor.accept(*use.split()):
                uses.append(use)
                break
        else:
            raise GrammarError("syntax error: FOR takes ALL, COPY, UNLOAD, EXTERNAL FUNCTION or CREATE MODEL")
        if not cursor.accept_symbol(","):
            break
    cursor.end()
    return {"is_grant": granting, "roles": roles, "grantees": grantees, "for": uses}


def assumerole_call(spec: dict) -> tuple[str, bytes]:
    return (f"CALL shiftguard.grant_assumerole({sql_literal(json.dumps(spec, separators=(',', ':')))}::jsonb)",
            b"GRANT" if spec["is_grant"] else b"REVOKE")


# --------------------------------------------------------------------------- system permissions

def permission_call(kind: str, node: dict, statement: str) -> tuple[str, bytes, bool] | None:
    """TRUNCATE, ANALYZE, DROP FUNCTION | PROCEDURE and CREATE SCHEMA, as a call that runs the
    statement as the caller unless the caller holds the matching system permission
    (catalog/privileges.sql shiftguard.run_or_permit)."""
    if kind == "TruncateStmt":
        relations = [r["RangeVar"] for r in node.get("relations", ())]
        return _permit("TRUNCATE TABLE", statement, [_regclass(r) for r in relations],
                       {"names": [_written(r) for r in relations], "cascade": node.get("behavior") == "DROP_CASCADE"},
                       b"TRUNCATE TABLE")
    if kind == "VacuumStmt" and not node.get("is_vacuumcmd"):
        relations = [r["VacuumRelation"]["relation"] for r in node.get("rels", ())]
        return _permit("ANALYZE", statement, [_regclass(r) for r in relations],
                       {"names": [_written(r) for r in relations]}, b"ANALYZE")
    if kind == "DropStmt" and node.get("removeType") in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE"):
        routine = "FUNCTION" if node["removeType"] == "OBJECT_FUNCTION" else "PROCEDURE"
        names, resolved = [], []
        for signature in parse_tree(statement)[0].stmt.objects:
            name = ".".join(quoted_name(p.sval) for p in signature.objname)
            written = ".".join(p.sval for p in signature.objname)
            if signature.args_unspecified:
                names.append(written)
                resolved.append(f"pg_catalog.to_regproc({sql_literal(name)})::oid")
            else:
                args = f"({', '.join(printed(t) for t in signature.objargs or ())})"
                names.append(written + args)
                resolved.append(f"pg_catalog.to_regprocedure({sql_literal(name + args)})::oid")
        return _permit(f"DROP {routine}", statement, resolved,
                       {"names": names, "if_exists": bool(node.get("missing_ok")),
                        "cascade": node.get("behavior") == "DROP_CASCADE"}, f"DROP {routine}".encode())
    if kind == "CreateSchemaStmt" and not node.get("schemaElts") and not node.get("authrole") \
            and node.get("schemaname"):
        return _permit("CREATE SCHEMA", statement, [],
                       {"schema": node["schemaname"], "if_not_exists": bool(node.get("if_not_exists"))},
                       b"CREATE SCHEMA")
    return None


def _written(range_var: dict) -> str:
    return ".".join(p for p in (range_var.get("schemaname"), range_var["relname"]) if p)


def _regclass(range_var: dict) -> str:
    name = ".".join(quoted_name(p) for p in (range_var.get("schemaname"), range_var["relname"]) if p)
    return f"pg_catalog.to_regclass({sql_literal(name)})::oid"


def _permit(permission: str, statement: str, objects: list[str], options: dict,
            tag: bytes) -> tuple[str, bytes, bool]:
    return (f"CALL shiftguard.run_or_permit({sql_literal(permission)}, {sql_literal(statement)}, "
            f"ARRAY[{', '.join(objects)}]::pg_catalog.oid[], "
            f"{sql_literal(json.dumps(options, separators=(',', ':')))}::pg_catalog.jsonb, {CALLER_SEARCH_PATH})",
            tag, True)


# --------------------------------------------------------------------------- CREATE permissions

def lend_call(kind: str, node: dict, statement: str, sign) -> tuple[str, bytes, bool] | None:
    """CREATE TABLE, CREATE [OR REPLACE] VIEW, CREATE [OR REPLACE] FUNCTION | PROCEDURE, as a
    call that runs the statement as the caller, with CREATE on the target schema lent for that
    one statement when the caller holds the matching system permission and lacks CREATE there
    (catalog/privileges.sql shiftguard.create_lent). Temporary objects need no permission and
    are left alone.

    CREATE TABLE AS and SELECT INTO are not wrapped: their query runs while the table is created,
    and a function it calls could create any other kind of object with the lent CREATE (the
    grant is to the session's user, so code running as that user cannot be told apart); nor
    could a CALL give back their command tag, SELECT n. They need CREATE on the schema, as in
    PostgreSQL (a deviation from Redshift, where CREATE TABLE covers them)."""
    refusal = None
    if kind == "CreateStmt":
        relation = node["relation"]
        if relation.get("relpersistence") == "t" or relation.get("schemaname") == "pg_temp":
            return None
        permission, schema, tag = "CREATE TABLE", relation.get("schemaname"), b"CREATE TABLE"
        if node.get("partbound"):
            # Creating a partition may scan the default partition, evaluating the partition
            # key's expressions (functions of anyone's) while CREATE is lent.
            refusal = "CREATE TABLE ... PARTITION OF"
    elif kind == "ViewStmt":
        view = node["view"]
        if view.get("relpersistence") == "t" or view.get("schemaname") == "pg_temp":
            return None
        permission, schema, tag = "CREATE OR REPLACE VIEW", view.get("schemaname"), b"CREATE VIEW"
    elif kind == "CreateFunctionStmt":
        name = [part["String"]["sval"] for part in node["funcname"]]
        schema = name[-2] if len(name) > 1 else None
        if schema == "pg_temp":
            return None
        routine = "PROCEDURE" if node.get("is_procedure") else "FUNCTION"
        permission, tag = f"CREATE OR REPLACE {routine}", f"CREATE {routine}".encode()
    else:
        return None
    fields = {"permission": permission, "schema": schema, "refusal": refusal, "statement": statement}
    if kind == "CreateFunctionStmt" and node.get("is_procedure"):
        # Kept for procedures only: AWS's driver tests expect a function's numeric(10,5) shown
        # without them. (Always: a replaced procedure's may have changed.)
        fields.update(routine=name[-1], modifiers=parameter_modifiers(node))
    spec = json.dumps(fields, separators=(",", ":"))
    return (f"CALL shiftguard.create_lent({sql_literal(spec)}, {sql_literal(sign('lend', spec))}, "
            f"{CALLER_SEARCH_PATH})", tag, True)


# The types whose modifiers a routine's parameters keep on Redshift (SHOW PARAMETERS shows them:
# numeric_precision and numeric_scale, character_maximum_length); PostgreSQL drops them.
_KEPT_MODIFIERS = ("numeric", "bpchar", "varchar")


def parameter_modifiers(node: dict) -> list[list[int] | None] | None:
    """The declared modifiers of a CREATE PROCEDURE's parameters, in order (None for a parameter
    without), or None when none has any. Kept by shiftguard.create_lent (catalog/privileges.sql)
    for SHOW PARAMETERS."""
    modifiers = []
    for parameter in node.get("parameters") or ():
        type_name = parameter["FunctionParameter"]["argType"]
        names = [part["String"]["sval"] for part in type_name["names"]]
        values = [const.get("A_Const", {}).get("ival", {}).get("ival", 0) for const in type_name.get("typmods") or ()]
        kept = names[-1] in _KEPT_MODIFIERS and names[:-1] in ([], ["pg_catalog"]) and not type_name.get("arrayBounds")
        modifiers.append(values if kept and values and all(isinstance(v, int) for v in values) else None)
    return modifiers if any(modifiers) else None


# --------------------------------------------------------------------------- VACUUM

_VACUUM_MODES = (("FULL",), ("SORT", "ONLY"), ("DELETE", "ONLY"), ("REINDEX",), ("RECLUSTER",))


def vacuum_call(tokens: list) -> tuple[str, bytes, bool] | None:
    """Redshift's VACUUM [FULL | SORT ONLY | DELETE ONLY | REINDEX | RECLUSTER] [[table_name]
    [TO threshold PERCENT] [BOOST]] as a request to shiftguard.vacuum (catalog/privileges.sql),
    which checks the caller (superuser, the table's owner, or the VACUUM system permission;
    otherwise 42501 as Redshift, where PostgreSQL 15 only warns "skipping") and queues it for
    the management connection (server.py), since VACUUM cannot run in a procedure. Every mode
    becomes PostgreSQL's plain VACUUM: the modes sort and reclaim Redshift's blocks, which
    PostgreSQL has no counterpart for. PostgreSQL's own forms (VACUUM (options), ANALYZE,
    VERBOSE, FREEZE, several tables, columns) are None: PostgreSQL answers them as the user."""
    cursor = Cursor(tokens)
    cursor.expect("VACUUM")
    for mode in _VACUUM_MODES:
        if cursor.accept(*mode):
            break
    following = cursor.peek()
    if following is not None and (following.text == "(" or following.word in ("ANALYZE", "ANALYSE", "VERBOSE", "FREEZE")):
        return None
    name = None
    if following is not None and following.word not in ("TO", "BOOST"):
        parts = [cursor.name("table name")]
        while cursor.accept_symbol("."):
            parts.append(cursor.name("table name"))
        name = parts
        following = cursor.peek()
        if following is not None and following.text in (",", "("):
            return None
    if cursor.accept("TO"):
        threshold = cursor.integer("threshold")
        cursor.expect("PERCENT")
        if not 0 <= threshold <= 100:
            raise GrammarError("the VACUUM threshold must be between 0 and 100 PERCENT",
                               sqlstate.INVALID_PARAMETER_VALUE)
    cursor.accept("BOOST")
    cursor.end()
    if name is None:
        return "CALL shiftguard.vacuum(NULL, NULL)", b"VACUUM", True
    qualified = ".".join(quoted_name(p) for p in name)
    return (f"CALL shiftguard.vacuum(pg_catalog.to_regclass({sql_literal(qualified)})::oid, "
            f"{sql_literal('.'.join(name))})", b"VACUUM", True)
