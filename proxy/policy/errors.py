"""PostgreSQL's error wording, turned into Redshift's where Redshift words it differently (and
explained where shiftguard's guards are what PostgreSQL reports). Pure: ErrorResponse fields in,
fields out."""

from __future__ import annotations

import re

from ..protocol.sqlstate import (FEATURE_NOT_SUPPORTED, INSUFFICIENT_PRIVILEGE, INTERNAL_ERROR, NOT_NULL_VIOLATION,
                                 UNDEFINED_OBJECT)
from .groups import GROUP_ROLE_PREFIX

# PostgreSQL names the kind of relation ("permission denied for table t"); Redshift says
# "relation" for all of them (reference/redshift-sql-acl.md §4, denial errors).
_RELATION_KINDS = ("table", "view", "materialized view", "sequence", "foreign table")


# What PostgreSQL says when shiftguard holds a table with RLS on or masking attached off ALTER
# TABLE and CREATE INDEX (catalog/row_code.sql, guard_row_code_start).
_HELD = re.compile(r'cannot (ALTER TABLE|CREATE INDEX) ".*" because it is being used by active queries in this session')
_HELD_HINT = ("If the table has row-level security on or a masking policy attached, or an RLS policy reads it: "
              "shiftguard holds it so against "
              "ALTER TABLE and CREATE INDEX that would run code over its rows (indexes on expressions, CHECK and "
              "foreign key constraints, ...), and against any ALTER TABLE or CREATE INDEX inside a function, procedure "
              "or DO block or in a message with such a statement, where rows hidden by row-level security and raw "
              "values of masked columns would be read. Run the statement by itself, outside functions.")


# Redshift's spatial types and functions, which PostgreSQL has only with PostGIS: shiftguard
# installs it in every database where the backing PostgreSQL has it (catalog/store.py
# _install_postgis); in a database without it, they are refused saying what to install.
_SPATIAL = re.compile(r'(type "(geometry|geography)"|function (st_\w+)\(.*\)) does not exist', re.IGNORECASE)
_SPATIAL_HINT = ("Redshift's GEOMETRY and GEOGRAPHY types and its ST_ functions need PostGIS in the backing "
                 "PostgreSQL: install it there (Debian and Ubuntu: apt-get install postgresql-15-postgis-3) and "
                 "start shiftguard again, which installs it in every database.")


def redshift_wording(fields: dict[str, str], spatial: bool = False) -> dict[str, str] | None:
    """The reworded fields, or None when Redshift says the same. spatial: the database has
    PostGIS (then a missing ST_ function is PostgreSQL's error, a wrong argument type say)."""
    text = fields.get("M", "")
    if fields.get("C") == "55006" and "H" not in fields and _HELD.fullmatch(text):
        return {**fields, "H": _HELD_HINT}
    if fields.get("C") == "2D000" and fields.get("W", "").startswith("PL/pgSQL function shiftguard.vacuum("):
        # Redshift's VACUUM, refused inside a transaction block (catalog/privileges.sql): the
        # words PostgreSQL's own VACUUM uses.
        return {"S": fields.get("S", "ERROR"), "V": fields.get("V", "ERROR"), "C": "25001",
                "M": "VACUUM cannot run inside a transaction block"}
    if fields.get("C") == NOT_NULL_VIOLATION and fields.get("c"):
        # UNVERIFIED (Redshift's documentation quotes no such error): Redshift's words and
        # SQLSTATE as its users report them (e.g. aws/aws-sdk-pandas issues 1110 and 2140), the
        # column's name unquoted. PostgreSQL's DETAIL (the failing row, shown only to whom may
        # read it all) stays.
        return {**fields, "C": INTERNAL_ERROR, "M": f"Cannot insert a NULL value into column {fields['c']}"}
    missing = _SPATIAL.fullmatch(text) if not spatial and fields.get("C") in (UNDEFINED_OBJECT, "42883") else None
    if missing is not None:
        what = f'type "{missing[2]}"' if missing[2] else f'function "{missing[3]}"'
        return {**fields, "C": FEATURE_NOT_SUPPORTED, "M": f"{what} is not supported by shiftguard", "H": _SPATIAL_HINT}
    if fields.get("C") == UNDEFINED_OBJECT and text.startswith(f'role "{GROUP_ROLE_PREFIX}'):
        # A group's PostgreSQL role (policy/groups.py) is the group, to the user.
        return {**fields, "M": 'group "' + text[len('role "') + len(GROUP_ROLE_PREFIX):]}
    if fields.get("C") == INSUFFICIENT_PRIVILEGE:
        text = fields.get("M", "")
        for kind in _RELATION_KINDS:
            prefix = f"permission denied for {kind} "
            if text.startswith(prefix):
                return {**fields, "M": "permission denied for relation " + text[len(prefix):]}
    return None
