"""IAM policy evaluation, pure: (policies, action, resource, request context) -> decision.

AWS's rules (IAM User Guide, "Policy evaluation logic" and "Condition operators"): an explicit
Deny in any statement wins, then any Allow, else the request is implicitly denied. Action and
Resource match with * and ? wildcards (actions case-insensitively), NotAction/NotResource match
everything else. Conditions: every operator of a block must hold, every key of an operator, and
for a key any of the policy's values (none, for the negated operators). A key missing from the
request makes a condition false, except for the negated operators, ...IfExists and Null.
Policy variables ${aws:username}, ${redshift:DbUser}, ... are filled from the context.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

Context = dict[str, object]  # condition key (case-insensitive) -> str | list[str] | bool | number


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # The statement that decided (the Deny, or an Allow), or None for the implicit deny.
    statement: dict | None = None

    @property
    def explicit_deny(self) -> bool:
        return not self.allowed and self.statement is not None


def evaluate(policies: Iterable[dict], action: str, resource: str, context: Context) -> Decision:
    context = {key.lower(): value for key, value in context.items()}
    allow = None
    for policy in policies:
        for statement in _statements(policy):
            if not _applies(statement, action, resource, context):
                continue
            if statement.get("Effect") == "Deny":
                return Decision(False, statement)
            if statement.get("Effect") == "Allow" and allow is None:
                allow = statement
    return Decision(allow is not None, allow)


def _statements(policy: dict) -> list[dict]:
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _applies(statement: dict, action: str, resource: str, context: Context) -> bool:
    if "Action" in statement:
        if not any(_match(p, action, fold=True) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_match(p, action, fold=True) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        patterns = [_substitute(p, context) for p in _as_list(statement["Resource"])]
        if not any(p is not None and _match(p, resource) for p in patterns):
            return False
    elif "NotResource" in statement:
        patterns = [_substitute(p, context) for p in _as_list(statement["NotResource"])]
        if any(p is not None and _match(p, resource) for p in patterns):
            return False
    else:
        return False
    return all(_condition(operator, block, context)
               for operator, block in statement.get("Condition", {}).items())


def _match(pattern: str, value: str, fold: bool = False) -> bool:
    """AWS wildcards: * any run of characters (also ':' and '/'), ? one character."""
    if fold:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substitute(text: str, context: Context) -> str | None:
    """Fill ${key} from the context; None when a variable has no value (the element then matches
    nothing, as AWS does). ${*}, ${?} and ${$} stand for the characters themselves."""
    missing = False

    def replace(match: re.Match) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        value = context.get(name.lower())
        if isinstance(value, list) or value is None:
            missing = True
            return ""
        return str(value)

    result = _VARIABLE.sub(replace, text)
    return None if missing else result


# --------------------------------------------------------------------------- conditions


def _condition(operator: str, block: dict, context: Context) -> bool:
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    for key, policy_values in block.items():
        values = [_substitute(str(v), context) if isinstance(v, str) else v for v in _as_list(policy_values)]
        request = context.get(key.lower())
        if operator == "Null":
            expected_null = str(values[0]).lower() == "true"
            if (request is None) != expected_null:
                return False
            continue
        test, negated = _OPERATORS.get(operator, (None, False))
        if test is None:
            return False  # an operator we do not know never matches (deny by default)
        if request is None or request == []:
            if qualifier == "ForAllValues":
                continue
            if if_exists or (negated and qualifier is None):
                continue
            return False
        requested = _as_list(request)
        if qualifier == "ForAllValues":
            ok = all(_any_value(test, r, values) for r in requested)
        elif qualifier == "ForAnyValue" or len(requested) > 1:
            ok = any(_any_value(test, r, values) for r in requested)
        else:
            ok = _any_value(test, requested[0], values)
        if negated:
            ok = not ok
        if not ok:
            return False
    return True


def _any_value(test, request, values) -> bool:
    return any(v is not None and test(request, v) for v in values)


def _string(fold: bool = False, like: bool = False):
    def test(request, value) -> bool:
        request, value = str(request), str(value)
        if like:
            return _match(value, request, fold=fold)
        return request.lower() == value.lower() if fold else request == value
    return test


def _number(compare):
    def test(request, value) -> bool:
        try:
            return compare(float(request), float(value))
        except (TypeError, ValueError):
            return False
    return test


def _date(compare):
    def test(request, value) -> bool:
        left, right = _parse_date(request), _parse_date(value)
        return left is not None and right is not None and compare(left, right)
    return test


def _parse_date(value) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value)
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return datetime.datetime.fromtimestamp(float(text), datetime.timezone.utc)
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _bool(request, value) -> bool:
    return str(request).lower() == str(value).lower()


def _ip(request, value) -> bool:
    try:
        return ipaddress.ip_address(str(request)) in ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False


def _arn(like: bool):
    def test(request, value) -> bool:
        request, value = str(request), str(value)
        if request.count(":") < 5 or value.count(":") < 5:
            return False
        return _match(value, request) if like else request == value
    return test


_OPERATORS = {
    "StringEquals": (_string(), False), "StringNotEquals": (_string(), True),
    "StringEqualsIgnoreCase": (_string(fold=True), False), "StringNotEqualsIgnoreCase": (_string(fold=True), True),
    "StringLike": (_string(like=True), False), "StringNotLike": (_string(like=True), True),
    "NumericEquals": (_number(lambda a, b: a == b), False), "NumericNotEquals": (_number(lambda a, b: a == b), True),
    "NumericLessThan": (_number(lambda a, b: a < b), False), "NumericLessThanEquals": (_number(lambda a, b: a <= b), False),
    "NumericGreaterThan": (_number(lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_number(lambda a, b: a >= b), False),
    "DateEquals": (_date(lambda a, b: a == b), False), "DateNotEquals": (_date(lambda a, b: a == b), True),
    "DateLessThan": (_date(lambda a, b: a < b), False), "DateLessThanEquals": (_date(lambda a, b: a <= b), False),
    "DateGreaterThan": (_date(lambda a, b: a > b), False),
    "DateGreaterThanEquals": (_date(lambda a, b: a >= b), False),
    "Bool": (_bool, False),
    "IpAddress": (_ip, False), "NotIpAddress": (_ip, True),
    "ArnEquals": (_arn(False), False), "ArnNotEquals": (_arn(False), True),
    "ArnLike": (_arn(True), False), "ArnNotLike": (_arn(True), True),
}
