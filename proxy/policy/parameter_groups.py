"""Redshift cluster parameter groups, pure: the parameters that mean something here, their
engine defaults and allowed values as Redshift describes them, the check of a new value, and
what a set of values puts in force for new sessions. No I/O (catalog/store.py keeps the groups).

Every one of these parameters is static on Redshift (a change applies at the next reboot;
only properties of wlm_json_configuration are dynamic, and WLM has no meaning here), so every
change here is 'pending-reboot' until RebootCluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FAMILY = "redshift-1.0"
DEFAULT_GROUP = f"default.{FAMILY}"
# CreateClusterParameterGroup: 1-255 letters, digits or hyphens, starting with a letter, not
# ending with a hyphen nor holding two in a row; stored lower-case (the API reference).
GROUP_NAME = re.compile(r"[a-z](?:[a-z0-9]|-(?!-))*(?<!-)")


class ParameterRefused(ValueError):
    """A parameter name or value the group cannot hold; the message says why."""


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str
    data_type: str
    description: str
    allowed: str | None = None
    apply_type: str = "static"


# The engine defaults and descriptions of DescribeDefaultClusterParameters for redshift-1.0.
PARAMETERS = {p.name: p for p in (
    Parameter("datestyle", "ISO, MDY", "string", "Sets the display format for date and time values."),
    Parameter("enable_case_sensitive_identifier", "false", "boolean",
              "Preserve case sensitivity for database identifiers such as table or column names in parser",
              "true,false"),
    Parameter("enable_user_activity_logging", "false", "boolean", "parameter for audit logging purpose",
              "true,false"),
    Parameter("extra_float_digits", "0", "integer", "Sets the number of digits displayed for floating-point values",
              "-15-2"),
    Parameter("require_ssl", "false", "boolean", "require ssl for all databaseconnections", "true,false"),
    Parameter("search_path", "$user, public", "string",
              "Sets the schema search order for names that are not schema-qualified."),
    Parameter("statement_timeout", "0", "integer",
              "Aborts any statement that takes over the specified number of milliseconds.", "0,100-2147483647"),
)}

# The parameters that become the backend session's settings.
SESSION_PARAMETERS = ("datestyle", "extra_float_digits", "search_path", "statement_timeout")

_DATESTYLE_OUTPUT = {"iso", "postgres", "sql", "german"}
_DATESTYLE_ORDER = {"mdy", "dmy", "ymd", "us", "euro", "european", "noneuropean"}
_SCHEMA = re.compile(r'\$user|[A-Za-z_][A-Za-z0-9_$]{0,62}|"(?:[^"\x00]|""){1,63}"')


def checked_value(name: str, value: str) -> str:
    """The value as stored, or ParameterRefused. A value PostgreSQL would refuse at login must
    never be stored: every new session of the cluster would fail."""
    parameter = PARAMETERS.get(name)
    if parameter is None:
        raise ParameterRefused(f"Could not find parameter with name: {name}")
    text = value.strip()
    if parameter.data_type == "boolean":
        if text.lower() not in ("true", "false"):
            raise ParameterRefused(f"The parameter value {value!r} for parameter {name} is not valid: "
                                   f"expected true or false")
        return text.lower()
    if parameter.data_type == "integer":
        number = int(text) if re.fullmatch(r"-?\d{1,10}", text) else None
        low, high = (-15, 2) if name == "extra_float_digits" else (100, 2_147_483_647)
        if number is None or not (low <= number <= high or (name == "statement_timeout" and number == 0)):
            raise ParameterRefused(f"The parameter value {value!r} for parameter {name} is not valid: "
                                   f"allowed values are {parameter.allowed}")
        return str(number)
    if name == "datestyle":
        words = [w.strip().lower() for w in text.split(",")]
        if not (1 <= len(words) <= 2 and all(w in _DATESTYLE_OUTPUT | _DATESTYLE_ORDER for w in words)
                and sum(w in _DATESTYLE_OUTPUT for w in words) <= 1):
            raise ParameterRefused(f"The parameter value {value!r} for parameter datestyle is not valid: "
                                   f"expected an output style (ISO, Postgres, SQL, German) and/or an order "
                                   f"(MDY, DMY, YMD), such as 'ISO, MDY'")
        return text
    # search_path: schema names, separated by commas.
    schemas = [s.strip() for s in text.split(",")]
    if len(text) > 1024 or not all(_SCHEMA.fullmatch(s) for s in schemas):
        raise ParameterRefused(f"The parameter value {value!r} for parameter search_path is not valid: "
                               f"expected schema names separated by commas, such as '$user, public'")
    return ", ".join(schemas)


@dataclass(frozen=True)
class ClusterSettings:
    """What the parameter group in force (since the last reboot) means for new sessions.
    values: the parameters set in the group (source 'user'); the rest keep their defaults."""

    values: dict[str, str] = field(default_factory=dict)

    def _on(self, name: str) -> bool:
        return self.values.get(name, PARAMETERS[name].default) == "true"

    @property
    def require_ssl(self) -> bool:
        return self._on("require_ssl")

    @property
    def case_sensitive_identifier(self) -> bool:
        """Each new session's enable_case_sensitive_identifier (policy/identifiers.py)."""
        return self._on("enable_case_sensitive_identifier")

    @property
    def user_activity(self) -> bool:
        return self._on("enable_user_activity_logging")

    def session_settings(self) -> dict[str, str]:
        """The backend session's startup settings. Only values set in the group: with the
        defaults a session starts as PostgreSQL's own do (extra_float_digits stays PostgreSQL's
        1 rather than Redshift's 0, which drivers set for themselves anyway)."""
        return {name: self.values[name] for name in SESSION_PARAMETERS if name in self.values}
