"""The Redshift API (AWS Query protocol, version 2012-12-01) as boto3 and the AWS CLI call it:
GetClusterCredentials, GetClusterCredentialsWithIAM, DescribeClusters, CreateCluster and
DeleteCluster (the clusters of fleet.py, whose own API answers the requests naming them),
ModifyCluster (security groups, MasterUserPassword, ClusterParameterGroupName),
ModifyClusterIamRoles (the roles COPY and
UNLOAD may name; catalog/s3.sql reads them), RebootCluster, DescribeCustomDomainAssociations, the
cluster security-group actions
(Create/Delete/DescribeClusterSecurityGroup(s), Authorize/RevokeClusterSecurityGroupIngress),
whose changes are stored by catalog/store.py and put in force by catalog/connectivity.py, and
the parameter-group actions (policy/parameter_groups.py), put in force at RebootCluster by
catalog/cluster.py. Every request is SigV4-verified and IAM-authorised; errors
come in AWS's XML shape with the codes and statuses botocore models
(reference/redshift-iam.md §1, §3).
"""

from __future__ import annotations

import datetime
import logging
import re
import urllib.parse
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..catalog.store import BACKEND_FAILURES, ClusterState, Conflict, SecurityGroupConflict, TagLimitExceeded
from ..config import Config
from ..fleet import ClusterSpec
from ..policy import parameter_groups as pg
from ..policy.connectivity import GroupRules, canonical_cidr
from ..policy.tokens import GrammarError
from ..policy.users import clear_password
from .policy import evaluate
from .principals import Principal, Principals
from .sigv4 import SignatureError
from .sts import Callers, caller_context
from .tokens import Minted, TokenAuthority
from .wire import iso8601
from . import wire

log = logging.getLogger(__name__)

NAMESPACE = "http://redshift.amazonaws.com/doc/2012-12-01/"
_DB_USER = re.compile(r"[A-Za-z][A-Za-z0-9_+.@-]{0,63}")
# As config.SecurityGroup allows, so that a group can be named the same way in the YAML and here.
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,254}")

# SecurityGroupConflict kinds as botocore's service model codes them (code, HTTP status).
_CONFLICTS = {
    "group exists": ("ClusterSecurityGroupAlreadyExists", 400),
    "no group": ("ClusterSecurityGroupNotFound", 404),
    "group attached": ("InvalidClusterSecurityGroupState", 400),
    "rule exists": ("AuthorizationAlreadyExists", 400),
    "no rule": ("AuthorizationNotFound", 404),
}
_PARAMETER_GROUP_CONFLICTS = {
    "group exists": ("ClusterParameterGroupAlreadyExists", 400),
    "no group": ("ClusterParameterGroupNotFound", 404),
    "group in use": ("InvalidClusterParameterGroupState", 400),
}
# ModifyCluster parameters other than these change what shiftguard does not have.
_MODIFY_CLUSTER_PARAMS = {"Action", "Version", "ClusterIdentifier", "ClusterSecurityGroups", "MasterUserPassword",
                          "ClusterParameterGroupName"}
# CreateCluster's parameters that mean something here (NodeType, ClusterType, NumberOfNodes and
# Port are accepted and ignored: a cluster is one node, on a port shiftguard chooses).
_CREATE_CLUSTER_PARAMS = {"Action", "Version", "ClusterIdentifier", "NodeType", "MasterUsername", "MasterUserPassword",
                          "DBName", "Port", "ClusterType", "NumberOfNodes", "ClusterSecurityGroups",
                          "ClusterParameterGroupName", "Tags"}
# Redshift's rule for cluster identifiers; user and database names as the configuration takes them.
_CLUSTER_ID = re.compile(r"[a-z](?!.*--)([a-z0-9-]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z_][a-z0-9_$]{0,62}")
_LOG_TYPES = ("connectionlog", "userlog", "useractivitylog")
_MAX_TAGS = 50  # per resource (Redshift's quota)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# ModifyClusterParameterGroup's and ResetClusterParameterGroup's answer (the AWS CLI's example).
_PENDING_REBOOT = ("Your parameter group has been updated but changes won't get applied until you reboot the "
                   "associated Clusters.")


# Each action and the method answering it.
_ACTIONS = {
    "GetClusterCredentials": "_get_cluster_credentials",
    "GetClusterCredentialsWithIAM": "_get_cluster_credentials_with_iam",
    "DescribeClusters": "_describe_clusters",
    "CreateCluster": "_create_cluster",
    "DeleteCluster": "_delete_cluster",
    "DescribeCustomDomainAssociations": "_describe_custom_domain_associations",
    "ModifyCluster": "_modify_cluster",
    "ModifyClusterIamRoles": "_modify_cluster_iam_roles",
    "CreateClusterSecurityGroup": "_create_cluster_security_group",
    "DeleteClusterSecurityGroup": "_delete_cluster_security_group",
    "DescribeClusterSecurityGroups": "_describe_cluster_security_groups",
    "AuthorizeClusterSecurityGroupIngress": "_authorize_ingress",
    "RevokeClusterSecurityGroupIngress": "_revoke_ingress",
    "RebootCluster": "_reboot_cluster",
    "EnableLogging": "_enable_logging",
    "DisableLogging": "_disable_logging",
    "DescribeLoggingStatus": "_describe_logging_status",
    "CreateTags": "_create_tags",
    "DeleteTags": "_delete_tags",
    "DescribeTags": "_describe_tags",
    "CreateClusterParameterGroup": "_create_parameter_group",
    "DeleteClusterParameterGroup": "_delete_parameter_group",
    "DescribeClusterParameterGroups": "_describe_parameter_groups",
    "DescribeClusterParameters": "_describe_parameters",
    "DescribeDefaultClusterParameters": "_describe_default_parameters",
    "ModifyClusterParameterGroup": "_modify_parameter_group",
    "ResetClusterParameterGroup": "_reset_parameter_group",
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


def _xml(action: str, inner: str) -> str:
    return (f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{inner}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>")


def error_xml(code: str, message: str) -> str:
    return wire.error_xml(NAMESPACE, code, message)


def _members(params: dict[str, str], name: str, member: str) -> list[str]:
    """Query-protocol list: Name.Member.1=a&Name.Member.2=b (an empty list is sent as Name=).
    Name.member.N, the protocol's generic form, is read too."""
    items = []
    for prefix in {f"{name}.{member}.", f"{name}.member."}:
        items += [(int(k[len(prefix):]), v) for k, v in params.items()
                  if k.startswith(prefix) and k[len(prefix):].isdigit()]
    return [v for _, v in sorted(items)]


def _structures(params: dict[str, str], name: str, member: str) -> list[dict[str, str]]:
    """Query-protocol list of structures: Name.Member.1.Field=v (or Name.member.1.Field=v)."""
    items: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        for prefix in (f"{name}.{member}.", f"{name}.member."):
            index, _, field = key[len(prefix):].partition(".") if key.startswith(prefix) else ("", "", "")
            if index.isdigit() and field:
                items.setdefault(int(index), {})[field] = value
    return [items[n] for n in sorted(items)]


def _parameter_xml(parameter: pg.Parameter, values: dict[str, str]) -> str:
    source = "user" if parameter.name in values else "engine-default"
    allowed = f"<AllowedValues>{escape(parameter.allowed)}</AllowedValues>" if parameter.allowed else ""
    return (f"<Parameter><ParameterName>{parameter.name}</ParameterName>"
            f"<ParameterValue>{escape(values.get(parameter.name, parameter.default))}</ParameterValue>"
            f"<Description>{escape(parameter.description)}</Description><Source>{source}</Source>"
            f"<DataType>{parameter.data_type}</DataType>{allowed}<ApplyType>{parameter.apply_type}</ApplyType>"
            f"<IsModifiable>true</IsModifiable></Parameter>")


def _parameter_group_xml(name: str, family: str, description: str) -> str:
    return (f"<ParameterGroupName>{escape(name)}</ParameterGroupName><ParameterGroupFamily>{escape(family)}"
            f"</ParameterGroupFamily><Description>{escape(description)}</Description><Tags/>")


def _tags_xml(tags: dict[str, str]) -> str:
    return "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in sorted(tags.items()))


def _bounded(params: dict[str, str], name: str, default: int, low: int, high: int, out_of_range: str) -> int:
    """An integer parameter, default when absent or empty, from low to high."""
    text = params.get(name)
    try:
        value = default if text in (None, "") else int(text)
    except ValueError:
        raise ApiError("InvalidParameterValue", f"{name} must be a number") from None
    if not low <= value <= high:
        raise ApiError("InvalidParameterValue", out_of_range)
    return value


def _request_tags(params: dict[str, str]) -> dict[str, str]:
    """The Tags of a request (Tags.Tag.N.Key/Value), checked as Redshift checks them."""
    tags = {t.get("Key", ""): t.get("Value", "") for t in _structures(params, "Tags", "Tag")}
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256 or key.lower().startswith("aws:"):
            raise ApiError("InvalidTagFault", f"Tag {key!r} is not valid: keys are 1-128 characters, not starting "
                                              f"with aws:, values at most 256")
    return tags


def _tag_context(tags: dict[str, str]) -> dict:
    """What the policies see of the tags a request sets."""
    return {"aws:TagKeys": list(tags), **{f"aws:RequestTag/{k}": v for k, v in tags.items()}}


def page_of(names: list[str], max_records: int, marker: str | None) -> tuple[list[str], str | None]:
    """A page of sorted names: max_records of those from marker on, and the next page's marker
    (its first name; None after the last page). A marker says where to resume, so a cluster
    deleted meanwhile shifts nothing."""
    rest = [name for name in names if marker is None or name >= marker]
    return rest[:max_records], (rest[max_records] if len(rest) > max_records else None)


def _starting_cluster_xml(spec: ClusterSpec, status: str) -> str:
    """A created cluster that does not run (creating, rebooting, deleting, failed): no endpoint yet."""
    return (f"<Cluster><ClusterIdentifier>{escape(spec.identifier)}</ClusterIdentifier><NodeType>shiftguard</NodeType>"
            f"<ClusterStatus>{status}</ClusterStatus><ClusterAvailabilityStatus>"
            f"{'Failed' if status == 'hardware-failure' else 'Unavailable'}</ClusterAvailabilityStatus>"
            f"<MasterUsername>{escape(spec.admin_user)}</MasterUsername><DBName>{escape(spec.database)}</DBName>"
            f"<NumberOfNodes>1</NumberOfNodes><PubliclyAccessible>false</PubliclyAccessible>"
            f"<Encrypted>false</Encrypted></Cluster>")


def _security_group_xml(group: GroupRules) -> str:
    ranges = "".join(f"<IPRange><CIDRIP>{escape(cidr)}</CIDRIP><Status>authorized</Status><Tags/></IPRange>"
                     for cidr in group.cidrs)
    return (f"<ClusterSecurityGroup><ClusterSecurityGroupName>{escape(group.name)}</ClusterSecurityGroupName>"
            f"<Description>{escape(group.description)}</Description><EC2SecurityGroups/>"
            f"<IPRanges>{ranges}</IPRanges><Tags/></ClusterSecurityGroup>")


class RedshiftApi:
    def __init__(self, config: Config, principals: Principals, tokens: TokenAuthority, catalog,
                 endpoint: tuple[str, int], security_groups, callers: Callers | None = None, cluster=None,
                 fleet=None):
        """security_groups: the proxy's catalog.connectivity.SecurityGroupSync, refreshed after
        each change so that the next connection to this proxy meets the new rules. callers:
        who signed a request (IAM users, STS sessions), shared with the STS API. cluster: the
        proxy's catalog.cluster.ClusterSync, refreshed after a reboot. fleet: the clusters
        CreateCluster made (fleet.py; None with an external backend, and in their own APIs):
        requests about one of them are answered by its API."""
        self.config = config
        self.fleet = fleet
        self.cluster = cluster
        self.callers = callers or Callers(principals, catalog)
        self.security_groups = security_groups
        self.principals = principals
        self.tokens = tokens
        self.catalog = catalog
        self.endpoint = endpoint
        cluster = config.cluster
        self._arn = f"arn:aws:redshift:{cluster.region}:{cluster.account_id}"

    async def handle(self, method: str, url: str, headers: dict[str, str], body: bytes, source_ip: str) -> Reply:
        try:
            params = self._params(method, url, body)
            principal = await self.callers.authenticate(method, url, headers, body, service="redshift",
                                                        region=self.config.cluster.region)
            action = params.get("Action", "")
            name = _ACTIONS.get(action)
            if name is None:
                raise ApiError("InvalidAction", f"The action {action or '(none)'} is not valid for this web service.")
            if params.get("Version") != "2012-12-01":
                raise ApiError("InvalidParameterValue", "Version must be 2012-12-01")
            body_xml = await getattr(self._answering(action, params), name)(params, principal, source_ip)
            log.info("API %s by %s from %s: ok", action, principal.arn, source_ip)
            return Reply(200, _xml(action, body_xml))
        except SignatureError as exc:
            status = 400 if exc.code in ("IncompleteSignature", "RequestExpired") else 403
            log.info("API request from %s refused: %s", source_ip, exc.code)
            return Reply(status, error_xml(exc.code, str(exc)))
        except Conflict as exc:
            codes = _CONFLICTS if isinstance(exc, SecurityGroupConflict) else _PARAMETER_GROUP_CONFLICTS
            code, status = codes[exc.kind]
            log.info("API request from %s failed: %s %s", source_ip, code, exc)
            return Reply(status, error_xml(code, str(exc)))
        except TagLimitExceeded as exc:
            log.info("API request from %s failed: TagLimitExceededFault %s", source_ip, exc)
            return Reply(400, error_xml("TagLimitExceededFault", str(exc)))
        except ApiError as exc:
            log.info("API request from %s failed: %s %s", source_ip, exc.code, exc)
            return Reply(exc.status, error_xml(exc.code, str(exc)))
        except BACKEND_FAILURES as exc:
            # The backing database failed; nothing was changed that is not committed.
            log.error("API request from %s: the backing database failed: %s: %s", source_ip, type(exc).__name__, exc)
            return Reply(503, error_xml("ServiceUnavailable", "The backing database is unavailable; try again."))
        except Exception:  # noqa: BLE001 - a bug, or stored state we cannot read: AWS-shaped, logged
            log.exception("API request from %s failed", source_ip)
            return Reply(500, error_xml("InternalFailure", "The request failed; the proxy's log says why."))

    def _answering(self, action: str, params: dict[str, str]) -> RedshiftApi:
        """The API of the cluster a request is about: a created cluster's answers for its
        ClusterIdentifier (and tags on its ARN); this one for the rest, and makes, deletes and
        lists the clusters."""
        if (self.fleet is None or action in ("CreateCluster", "DeleteCluster", "DescribeClusters")
                or (action == "ModifyCluster" and "NewClusterIdentifier" in params)):
            return self
        identifier = params.get("ClusterIdentifier")
        resource, cluster_arn = params.get("ResourceName", ""), f"{self._arn}:cluster:"
        if identifier is None and resource.startswith(cluster_arn):
            identifier = resource[len(cluster_arn):]
        member = self.fleet.get(identifier) if identifier else None
        if member is None:
            return self
        if member.api is None:
            # UNVERIFIED: Redshift's wording for a cluster that is not available.
            raise ApiError("InvalidClusterState", f"The cluster {identifier} is {member.status}, not available.")
        return member.api

    def _params(self, method: str, url: str, body: bytes) -> dict[str, str]:
        query = urllib.parse.urlsplit(url).query
        text = body.decode("utf-8", "replace") if method == "POST" else query
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))

    # ---------------------------------------------------------------- authorisation

    def _authorize(self, principal: Principal, action: str, resource: str, context: dict) -> None:
        decision = evaluate(principal.policies, f"redshift:{action}", resource, context)
        if not decision.allowed:
            raise ApiError("AccessDenied", f"User: {principal.arn} is not authorized to perform: "
                                           f"redshift:{action} on resource: {resource}"
                                           + (" with an explicit deny" if decision.explicit_deny else ""), 403)

    def _context(self, principal: Principal, source_ip: str, **extra) -> dict:
        context = caller_context(principal, source_ip, self.callers.clock())
        context.update({k: v for k, v in extra.items() if v is not None})
        return context

    def _cluster(self, params: dict[str, str]) -> str:
        identifier = params.get("ClusterIdentifier")
        domain = params.get("CustomDomainName")
        if identifier is None and domain:
            raise ApiError("CustomDomainAssociationNotFoundFault",
                           f"Custom domain {domain} is not associated with any cluster.", 404)
        if identifier is None:
            raise ApiError("MissingParameter", "ClusterIdentifier or CustomDomainName is required")
        if identifier != self.config.cluster.identifier:
            raise ApiError("ClusterNotFound", f"Cluster {identifier} not found.", 404)
        return identifier

    async def _cluster_action(self, action: str, params: dict[str, str], principal: Principal, source_ip: str,
                              identifier: str | None = None, **context) -> str:
        """The cluster the request names, once the caller may do action on it; the policies see
        its tags as aws:ResourceTag/KEY."""
        identifier = identifier or self._cluster(params)
        tags = (await self.catalog.cluster_state(identifier)).tags
        context.update({f"aws:ResourceTag/{key}": value for key, value in tags.items()})
        self._authorize(principal, action, f"{self._arn}:cluster:{identifier}",
                        self._context(principal, source_ip, **context))
        return identifier

    @staticmethod
    def _duration(params: dict[str, str]) -> int:
        return _bounded(params, "DurationSeconds", 900, 900, 3600,
                        "Token duration must be between 900 and 3600 seconds")

    # ---------------------------------------------------------------- actions

    async def _get_cluster_credentials(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        minted = await self.cluster_credentials(params, principal, source_ip)
        return (f"<DbUser>{escape(minted.db_user)}</DbUser><DbPassword>{escape(minted.password)}</DbPassword>"
                f"<Expiration>{iso8601(minted.expiration)}</Expiration>")

    async def cluster_credentials(self, params: dict[str, str], principal: Principal, source_ip: str) -> Minted:
        """GetClusterCredentials' decision and token (the Data API's DbUser sessions are decided
        here too); raises ApiError."""
        # A SAML session's assertion may carry Redshift's DbUser, AutoCreate and DbGroups
        # attributes (Management Guide, "Configure SAML assertions for your IdP"); the drivers
        # pass them on as these parameters. shiftguard's reading: they fill what the request
        # leaves out, and a DbUser other than the assertion's is refused (the IdP said who it
        # is) unless the assertion's AllowDbUserOverride is true, as the drivers read it.
        saml = principal.federation.get("redshift", {})
        db_user = params.get("DbUser") or next(iter(saml.get("DbUser", [])), None)
        if not db_user:
            raise ApiError("MissingParameter", "The request must contain the parameter DbUser")
        if not _DB_USER.fullmatch(db_user) or db_user.lower() == "public":
            raise ApiError("InvalidParameterValue", f"DbUser {db_user!r} is not a valid database user name")
        override = next(iter(saml.get("AllowDbUserOverride", [])), "false").lower() == "true"
        if saml.get("DbUser") and not override and db_user.lower() != saml["DbUser"][0].lower():
            log.info("GetClusterCredentials by %s refused: DbUser %s is not the SAML assertion's %s",
                     principal.arn, db_user, saml["DbUser"][0])
            raise ApiError("AccessDenied", f"User: {principal.arn} is not authorized to perform: "
                                           f"redshift:GetClusterCredentials as DbUser {db_user}", 403)
        cluster = self._cluster(params)
        database = params.get("DbName") or None
        seconds = self._duration(params)
        auto_create = params.get("AutoCreate", next(iter(saml.get("AutoCreate", [])), "false")).lower() == "true"
        groups = [g.lower() for g in _members(params, "DbGroups", "DbGroup")] or \
            [g.strip().lower() for value in saml.get("DbGroups", []) for g in value.split(",") if g.strip()]
        context = self._context(principal, source_ip, **{"redshift:DbUser": db_user, "redshift:DbName": database,
                                                         "redshift:DurationSeconds": seconds})
        self._authorize(principal, "GetClusterCredentials", f"{self._arn}:dbuser:{cluster}/{db_user}", context)
        if database:
            self._authorize(principal, "GetClusterCredentials", f"{self._arn}:dbname:{cluster}/{database}", context)
        for group in groups:
            self._authorize(principal, "JoinGroup", f"{self._arn}:dbgroup:{cluster}/{group}", context)
        if auto_create:
            self._authorize(principal, "CreateClusterUser", f"{self._arn}:dbuser:{cluster}/{db_user}", context)
        # A missing user without AutoCreate: the call succeeds, the login fails (the API
        # reference's wording, reference §1a).
        minted = self.tokens.mint("IAMA" if auto_create else "IAM", db_user, database, groups, seconds)
        await self.catalog.record_token(minted, database, groups, [])
        return minted

    async def _get_cluster_credentials_with_iam(self, params: dict[str, str], principal: Principal,
                                                source_ip: str) -> str:
        minted = await self.cluster_credentials_with_iam(params, principal, source_ip)
        return (f"<DbUser>{escape(minted.db_user)}</DbUser><DbPassword>{escape(minted.password)}</DbPassword>"
                f"<Expiration>{iso8601(minted.expiration)}</Expiration>"
                f"<NextRefreshTime>{iso8601(minted.expiration)}</NextRefreshTime>")

    async def cluster_credentials_with_iam(self, params: dict[str, str], principal: Principal,
                                           source_ip: str) -> Minted:
        """GetClusterCredentialsWithIAM's decision and token (and the Data API's without DbUser);
        raises ApiError."""
        cluster = self._cluster(params)
        database = params.get("DbName") or None
        seconds = self._duration(params)
        context = self._context(principal, source_ip, **{"redshift:DbName": database,
                                                         "redshift:DurationSeconds": seconds})
        self._authorize(principal, "GetClusterCredentialsWithIAM",
                        f"{self._arn}:dbname:{cluster}/{database or '*'}", context)
        # The DB user is the caller, the prefix part of its name (reference/redshift-iam.md §1b):
        # "IAM:<user name>" (which must exist), or for a role session "IAMR:<role name>" (created
        # on first login; authorization-fas-spectrum); its roles come from the RedshiftDbRoles
        # tag (colon-separated; unknown roles are ignored).
        roles = [r for r in principal.tags.get("RedshiftDbRoles", "").split(":") if r]
        minted = self.tokens.mint("IAM" if principal.role is None else "IAMR", principal.name, database, [], seconds)
        await self.catalog.record_token(minted, database, [], roles, login_as=minted.db_user)
        return minted

    async def _describe_clusters(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """The configured cluster and those CreateCluster made, by identifier: the ones the
        caller may describe (UNVERIFIED: what AWS does when a policy allows some clusters
        only; shiftguard lists those, and is AccessDenied when it allows none), MaxRecords
        (20-100, as Redshift takes) at a time from Marker."""
        identifier = params.get("ClusterIdentifier")
        max_records = _bounded(params, "MaxRecords", 100, 20, 100, "MaxRecords must be between 20 and 100")
        members = {name: self.fleet.get(name) for name in self.fleet.identifiers()} if self.fleet else {}
        names = sorted({self.config.cluster.identifier, *members})
        if identifier is not None:
            if identifier not in names:
                raise ApiError("ClusterNotFound", f"Cluster {identifier} not found.", 404)
            names = [identifier]
        shown, denied = [], None
        for name in names:
            try:
                await self._may("DescribeClusters", name, members.get(name), principal, source_ip)
                shown.append(name)
            except ApiError as exc:
                if exc.code != "AccessDenied" or identifier is not None:
                    raise
                denied = denied or exc
        if not shown and denied is not None:
            raise denied
        page, marker = page_of(shown, max_records, params.get("Marker") or None)
        clusters = [await self._member_xml(members.get(name)) for name in page]
        return f"<Clusters>{''.join(clusters)}</Clusters>" + (f"<Marker>{escape(marker)}</Marker>" if marker else "")

    async def _may(self, action: str, identifier: str, member, principal: Principal, source_ip: str) -> None:
        """The caller may do action on the configured cluster (member None) or a created one
        (its tags are in its own database: the policies see them while it runs)."""
        api = self if member is None else member.api
        if api is None:
            self._authorize(principal, action, f"{self._arn}:cluster:{identifier}",
                            self._context(principal, source_ip))
        else:
            await api._cluster_action(action, {}, principal, source_ip, identifier)

    async def _member_xml(self, member, status: str | None = None) -> str:
        """The configured cluster (member None) or a created one as DescribeClusters shows it,
        with status if given."""
        if member is not None and member.api is None:
            return _starting_cluster_xml(member.spec, status or member.status)
        return await (self if member is None else member.api)._cluster_xml(status or "available")

    async def _create_cluster(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """A cluster of its own beside the configured one (fleet.py), 'creating' until its
        embedded PostgreSQL and listener run; the embedded backend only."""
        admin = (params.get("MasterUsername") or "").lower()
        database = (params.get("DBName") or "dev").lower()
        if not params.get("ClusterIdentifier") or not admin or not params.get("NodeType"):
            raise ApiError("MissingParameter", "The request must contain the parameters ClusterIdentifier, "
                                               "NodeType and MasterUsername")
        identifier = self._new_identifier(params["ClusterIdentifier"])
        for name, value in (("MasterUsername", admin), ("DBName", database)):
            if not _NAME.fullmatch(value) or value == "public":
                raise ApiError("InvalidParameterValue", f"{name} {value!r} is not valid here: 1-63 letters, digits, "
                                                        f"'_' or '$', starting with a letter or '_'")
        tags = _request_tags(params)
        if len(tags) > _MAX_TAGS:
            raise ApiError("TagLimitExceededFault", f"A cluster takes at most {_MAX_TAGS} tags.")
        self._authorize(principal, "CreateCluster", f"{self._arn}:cluster:{identifier}",
                        self._context(principal, source_ip, **_tag_context(tags)))
        if self.fleet is None:
            raise ApiError("UnsupportedOperation", "CreateCluster needs the embedded backend: with backend.dsn "
                                                   "set, shiftguard fronts one existing PostgreSQL and makes no other")
        others = sorted({k.split(".", 1)[0] for k in params} - _CREATE_CLUSTER_PARAMS)
        if others:
            raise ApiError("UnsupportedOperation", f"CreateCluster takes ClusterIdentifier, NodeType, "
                                                   f"MasterUsername, MasterUserPassword, DBName, "
                                                   f"ClusterSecurityGroups, ClusterParameterGroupName and Tags "
                                                   f"here, not {', '.join(others)}")
        password = params.get("MasterUserPassword")
        if password is None:
            raise ApiError("MissingParameter", "The request must contain the parameter MasterUserPassword "
                                               "(ManageMasterPassword is not supported here)")
        self._master_password(password, admin)
        # A new cluster's database holds the security groups of the configuration and the
        # default parameter group (those made through the API are the configured cluster's).
        configured = [g.name for g in self.config.security_groups]
        groups = list(dict.fromkeys(_members(params, "ClusterSecurityGroups", "ClusterSecurityGroupName"))) \
            or self.config.cluster.security_groups
        for group in groups:
            if group not in configured:
                raise ApiError("ClusterSecurityGroupNotFound", f"Cluster security group {group} not found: a new "
                                                               f"cluster has those of the configuration "
                                                               f"({', '.join(configured)})", 404)
        parameter_group = params.get("ClusterParameterGroupName")
        if parameter_group is not None and self._parameter_group_name(parameter_group) != pg.DEFAULT_GROUP:
            raise ApiError("ClusterParameterGroupNotFound", f"Parameter group {parameter_group} not found: a new "
                                                            f"cluster has {pg.DEFAULT_GROUP} (ModifyCluster changes "
                                                            f"it once the cluster is available)", 404)
        self._free(identifier)
        if self.fleet.stopping:
            raise ApiError("ServiceUnavailable", "shiftguard is stopping; make the cluster once it runs again", 503)
        member = self.fleet.create(ClusterSpec(identifier, admin, database, tuple(groups)), password,
                                   then=lambda api: api.catalog.change_tags(identifier, tags, [], _MAX_TAGS))
        log.info("API CreateCluster by %s: cluster %s, admin %s, database %s", principal.arn, identifier, admin,
                 database)
        return _starting_cluster_xml(member.spec, member.status)

    @staticmethod
    def _new_identifier(text: str) -> str:
        """A cluster identifier as Redshift takes it, kept lower-case as Redshift does."""
        identifier = text.lower()
        if not _CLUSTER_ID.fullmatch(identifier):
            raise ApiError("InvalidParameterValue", f"{identifier!r} is not a valid cluster identifier: 1-63 "
                                                    f"letters, digits or hyphens, starting with a letter, not "
                                                    f"ending with a hyphen or holding two consecutive hyphens")
        return identifier

    def _free(self, identifier: str) -> None:
        if identifier == self.config.cluster.identifier or self.fleet.get(identifier) is not None:
            raise ApiError("ClusterAlreadyExists", "Cluster already exists")

    async def _created_cluster(self, action: str, params: dict[str, str], principal: Principal, source_ip: str,
                               configured: str):
        """The created cluster a request names, once the caller may do action on it; for the
        configured one, UnsupportedOperation saying why (configured)."""
        identifier = params.get("ClusterIdentifier")
        if not identifier:
            raise ApiError("MissingParameter", "The request must contain the parameter ClusterIdentifier")
        member = self.fleet.get(identifier) if self.fleet is not None else None
        if member is None and identifier != self.config.cluster.identifier:
            raise ApiError("ClusterNotFound", f"Cluster {identifier} not found.", 404)
        await self._may(action, identifier, member, principal, source_ip)
        if member is None:
            raise ApiError("UnsupportedOperation", f"The cluster {identifier} is the one shiftguard is configured "
                                                   f"with: {configured}")
        return member

    async def _rename_cluster(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """ModifyCluster NewClusterIdentifier, alone, for a created cluster: it restarts under
        the new name (fleet.py). Its ARN is the new name's, so the policies naming the old one no
        longer apply to it, and the temporary credentials minted for the old name no longer log
        in (they are revoked). The configured cluster's name is the configuration's."""
        member = await self._created_cluster("ModifyCluster", params, principal, source_ip,
                                             "its identifier is cluster.identifier in the configuration")
        identifier = member.spec.identifier
        others = sorted({k.split(".", 1)[0] for k in params} - {"Action", "Version", "ClusterIdentifier",
                                                                  "NewClusterIdentifier"})
        if others:
            raise ApiError("UnsupportedOperation", f"ModifyCluster NewClusterIdentifier renames the cluster alone "
                                                   f"here: change {', '.join(others)} in another request")
        new = self._new_identifier(params["NewClusterIdentifier"])
        self._free(new)
        if member.status != "available":
            raise ApiError("InvalidClusterState", f"The cluster {identifier} is {member.status}, not available.")
        self.fleet.rename(member, new)
        log.info("API ModifyCluster by %s: cluster %s renamed %s", principal.arn, identifier, new)
        return _starting_cluster_xml(member.spec, member.status)

    async def _delete_cluster(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """Stop a cluster CreateCluster made and remove its data; no snapshots here, so only
        with SkipFinalClusterSnapshot."""
        member = await self._created_cluster("DeleteCluster", params, principal, source_ip,
                                             "it stops with shiftguard, not through the API")
        identifier = member.spec.identifier
        if params.get("FinalClusterSnapshotIdentifier"):
            raise ApiError("UnsupportedOperation", "Snapshots are not supported here: delete the cluster with "
                                                   "SkipFinalClusterSnapshot")
        if params.get("SkipFinalClusterSnapshot", "false").lower() != "true":
            # UNVERIFIED: Redshift's wording; its rule (the API reference, DeleteCluster).
            raise ApiError("InvalidParameterCombination", "FinalClusterSnapshotIdentifier is required unless "
                                                          "SkipFinalClusterSnapshot is specified.")
        if member.status not in ("available", "hardware-failure"):
            # UNVERIFIED: Redshift's wording.
            raise ApiError("InvalidClusterState", f"There is an operation running on the Cluster {identifier} "
                                                  f"({member.status}). Please try to delete it at a later time.")
        described = await self._member_xml(member, status="deleting")
        self.fleet.delete(member)
        log.info("API DeleteCluster by %s: cluster %s", principal.arn, identifier)
        return described

    async def _cluster_xml(self, status: str = "available") -> str:
        """The cluster as DescribeClusters shows it, with the stored security groups, IAM roles,
        parameter group and tags."""
        cluster = self.config.cluster
        host, port = self.endpoint
        _, stored = await self.catalog.load_security_groups()
        groups = "".join(f"<ClusterSecurityGroup><ClusterSecurityGroupName>{escape(g)}</ClusterSecurityGroupName>"
                         f"<Status>active</Status></ClusterSecurityGroup>" for g in stored.attached)
        associated = await self.catalog.cluster_iam_roles()
        roles = "".join(f"<ClusterIamRole><IamRoleArn>{escape(arn)}</IamRoleArn><ApplyStatus>in-sync</ApplyStatus>"
                        f"</ClusterIamRole>" for arn, _ in associated)
        default = "".join(f"<DefaultIamRoleArn>{escape(arn)}</DefaultIamRoleArn>" for arn, is_default in associated
                          if is_default)
        state = await self.catalog.cluster_state(cluster.identifier)
        parameters = await self._parameter_status_xml(state)
        return (f"<Cluster><ClusterIdentifier>{escape(cluster.identifier)}</ClusterIdentifier>"
                f"<NodeType>shiftguard</NodeType><ClusterStatus>{status}</ClusterStatus>{parameters}"
                f"<ClusterAvailabilityStatus>Available</ClusterAvailabilityStatus>"
                f"<MasterUsername>{escape(cluster.admin_user)}</MasterUsername><DBName>{escape(cluster.database)}</DBName>"
                f"<Endpoint><Address>{escape(host)}</Address><Port>{port}</Port></Endpoint>"
                f"<ClusterSecurityGroups>{groups}</ClusterSecurityGroups><NumberOfNodes>1</NumberOfNodes>"
                f"<PubliclyAccessible>false</PubliclyAccessible><Encrypted>false</Encrypted>"
                f"<IamRoles>{roles}</IamRoles>{default}<Tags>{_tags_xml(state.tags)}</Tags></Cluster>")

    async def _parameter_status_xml(self, state: ClusterState) -> str:
        """ClusterParameterGroups: the group associated with the cluster, 'in-sync' when what is in
        force since the last reboot is that group with its values as they are now, else
        'pending-reboot'; and the same for each parameter."""
        values = (await self._group(state.parameter_group))[2]
        statuses = "".join(
            f"<member><ParameterName>{name}</ParameterName><ParameterApplyStatus>"
            f"{'in-sync' if values.get(name) == state.applied.get(name) else 'pending-reboot'}"
            f"</ParameterApplyStatus></member>" for name in pg.PARAMETERS)
        in_sync = state.applied_group == state.parameter_group and values == state.applied
        return (f"<ClusterParameterGroups><ClusterParameterGroup><ParameterGroupName>{escape(state.parameter_group)}"
                f"</ParameterGroupName><ParameterApplyStatus>{'in-sync' if in_sync else 'pending-reboot'}"
                f"</ParameterApplyStatus><ClusterParameterStatusList>{statuses}</ClusterParameterStatusList>"
                f"</ClusterParameterGroup></ClusterParameterGroups>")

    async def _describe_custom_domain_associations(self, params: dict[str, str], principal: Principal,
                                                   source_ip: str) -> str:
        domain = params.get("CustomDomainName") or "(none)"
        # No custom domains here: redshift_connector then falls back to ClusterIdentifier.
        raise ApiError("CustomDomainAssociationNotFoundFault",
                       f"Custom domain {domain} is not associated with any cluster.", 404)

    # ---------------------------------------------------------------- security groups

    def _group_arn(self, name: str) -> str:
        return f"{self._arn}:securitygroup:{name}"

    @staticmethod
    def _group_name(params: dict[str, str]) -> str:
        name = params.get("ClusterSecurityGroupName")
        if not name:
            raise ApiError("MissingParameter", "The request must contain the parameter ClusterSecurityGroupName")
        if not _GROUP_NAME.fullmatch(name):
            raise ApiError("InvalidParameterValue", f"{name!r} is not a valid cluster security group name: 1-255 "
                                                    f"letters, digits, spaces, '.', '_' or '-', starting with a "
                                                    f"letter or digit")
        return name

    @staticmethod
    def _cidr(params: dict[str, str]) -> str:
        if params.get("EC2SecurityGroupName") or params.get("EC2SecurityGroupOwnerId"):
            raise ApiError("InvalidParameterValue", "EC2 security groups are not supported here; authorize a CIDRIP")
        text = params.get("CIDRIP")
        if not text:
            raise ApiError("MissingParameter", "The request must contain the parameter CIDRIP")
        try:
            return canonical_cidr(text)
        except ValueError:
            raise ApiError("InvalidParameterValue", f"Invalid CIDRIP {text!r}: expected an IPv4 or IPv6 CIDR block "
                                                    f"such as 192.0.2.0/24 or 2001:db8::/32") from None

    async def _changed(self) -> None:
        # The change is committed; put it in force here now (other proxies poll for it). When
        # the state cannot be read back the last good rules stay, and the poll retries.
        await self.security_groups.refresh()

    async def _create_cluster_security_group(self, params: dict[str, str], principal: Principal,
                                             source_ip: str) -> str:
        name = self._group_name(params)
        description = params.get("Description")
        if description is None:
            raise ApiError("MissingParameter", "The request must contain the parameter Description")
        self._authorize(principal, "CreateClusterSecurityGroup", self._group_arn(name),
                        self._context(principal, source_ip))
        group = await self.catalog.create_security_group(name, description)
        await self._changed()
        return _security_group_xml(group)

    async def _delete_cluster_security_group(self, params: dict[str, str], principal: Principal,
                                             source_ip: str) -> str:
        name = self._group_name(params)
        self._authorize(principal, "DeleteClusterSecurityGroup", self._group_arn(name),
                        self._context(principal, source_ip))
        await self.catalog.delete_security_group(name)
        await self._changed()
        return ""

    async def _describe_cluster_security_groups(self, params: dict[str, str], principal: Principal,
                                                source_ip: str) -> str:
        name = params.get("ClusterSecurityGroupName") or None
        self._authorize(principal, "DescribeClusterSecurityGroups", self._group_arn(name or "*"),
                        self._context(principal, source_ip))
        _, stored = await self.catalog.load_security_groups()
        groups = sorted(stored.groups, key=lambda g: g.name)
        if name is not None:
            groups = [g for g in groups if g.name == name]
            if not groups:
                raise ApiError("ClusterSecurityGroupNotFound", f"Cluster security group {name} not found.", 404)
        return f"<ClusterSecurityGroups>{''.join(_security_group_xml(g) for g in groups)}</ClusterSecurityGroups>"

    async def _authorize_ingress(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._group_name(params)
        cidr = self._cidr(params)
        self._authorize(principal, "AuthorizeClusterSecurityGroupIngress", self._group_arn(name),
                        self._context(principal, source_ip))
        group = await self.catalog.authorize_ingress(name, cidr)
        await self._changed()
        return _security_group_xml(group)

    async def _revoke_ingress(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._group_name(params)
        cidr = self._cidr(params)
        self._authorize(principal, "RevokeClusterSecurityGroupIngress", self._group_arn(name),
                        self._context(principal, source_ip))
        group = await self.catalog.revoke_ingress(name, cidr)
        await self._changed()
        return _security_group_xml(group)

    async def _modify_cluster(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        if "NewClusterIdentifier" in params:
            return await self._rename_cluster(params, principal, source_ip)
        identifier = await self._cluster_action("ModifyCluster", params, principal, source_ip)
        others = sorted({k.split(".", 1)[0] for k in params} - _MODIFY_CLUSTER_PARAMS)
        if others:
            raise ApiError("UnsupportedOperation", f"ModifyCluster can change only ClusterSecurityGroups, "
                                                   f"MasterUserPassword and ClusterParameterGroupName here, "
                                                   f"not {', '.join(others)}")
        # Everything is checked before anything changes.
        password = params.get("MasterUserPassword")
        admin = self.config.cluster.admin_user
        if password is not None:
            verifiers = self._master_password(password, admin)
        group = params.get("ClusterParameterGroupName")
        if group is not None:
            group = self._parameter_group_name(group)
        if password is not None:
            await self.catalog.set_password(admin, verifiers)
            log.info("ModifyCluster: the password of %s was changed", admin)
        if group is not None:
            await self.catalog.attach_parameter_group(identifier, group, pg.DEFAULT_GROUP)
        if any(k == "ClusterSecurityGroups" or k.startswith("ClusterSecurityGroups.") for k in params):
            # The list replaces the attached groups; an empty list (ClusterSecurityGroups=)
            # detaches all, and then no client is admitted.
            names = list(dict.fromkeys(_members(params, "ClusterSecurityGroups", "ClusterSecurityGroupName")))
            await self.catalog.attach_security_groups(names)
            await self._changed()
        return await self._cluster_xml()

    @staticmethod
    def _master_password(password: str, admin: str) -> dict:
        """The verifiers of an admin's new password, if Redshift's rules (ALTER USER's) take it."""
        try:
            return clear_password(password, admin).verifiers
        except GrammarError as exc:
            # UNVERIFIED: Redshift's wording; the rule broken is ALTER USER's.
            raise ApiError("InvalidParameterValue", f"The parameter MasterUserPassword is not a valid "
                                                    f"password: {exc}") from None

    async def _modify_cluster_iam_roles(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """Associate IAM roles with the cluster (COPY and UNLOAD may name them), dissociate them,
        choose the default. As in AWS, associating a role (or making it the default) also needs
        iam:PassRole on it; roles are those of iam.roles."""
        await self._cluster_action("ModifyClusterIamRoles", params, principal, source_ip)
        context = self._context(principal, source_ip)
        add = list(dict.fromkeys(_members(params, "AddIamRoles", "IamRoleArn")))
        remove = list(dict.fromkeys(_members(params, "RemoveIamRoles", "IamRoleArn")))
        default = params.get("DefaultIamRoleArn") or None
        for arn in add + ([default] if default else []):
            decision = evaluate(principal.policies, "iam:PassRole", arn, context)
            if not decision.allowed:
                raise ApiError("AccessDenied", f"User: {principal.arn} is not authorized to perform: iam:PassRole "
                                               f"on resource: {arn}", 403)
            if self.principals.role(arn) is None:
                # UNVERIFIED wording: shiftguard knows the roles of iam.roles only.
                raise ApiError("InvalidParameterValue", f"The IAM role {arn} does not exist (roles are configured "
                                                        f"in iam.roles).")
        if set(add) & set(remove):
            raise ApiError("InvalidParameterValue", "A role cannot be both added and removed.")
        associated = {arn for arn, _ in await self.catalog.cluster_iam_roles()}
        if default and default not in (associated | set(add)) - set(remove):
            raise ApiError("InvalidParameterValue", f"The default IAM role {default} must be associated with the "
                                                    f"cluster.")
        await self.catalog.modify_cluster_iam_roles(add, remove, default)
        log.info("API ModifyClusterIamRoles by %s: added %s, removed %s, default %s", principal.arn,
                 ", ".join(add) or "none", ", ".join(remove) or "none", default or "unchanged")
        return await self._cluster_xml()

    async def _reboot_cluster(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """Ends every session (on every proxy of the cluster) and puts the associated parameter
        group in force for the next ones."""
        identifier = await self._cluster_action("RebootCluster", params, principal, source_ip)
        await self.catalog.reboot_cluster(identifier)
        await self.cluster.refresh()
        return await self._cluster_xml(status="rebooting")

    # ---------------------------------------------------------------- parameter groups

    def _parameter_group_arn(self, name: str) -> str:
        return f"{self._arn}:parametergroup:{name}"

    @staticmethod
    def _parameter_group_name(name: str | None) -> str:
        if not name:
            raise ApiError("MissingParameter", "The request must contain the parameter ParameterGroupName")
        if name.lower() == pg.DEFAULT_GROUP:
            return pg.DEFAULT_GROUP
        if len(name) > 255 or not pg.GROUP_NAME.fullmatch(name.lower()):
            raise ApiError("InvalidParameterValue", f"{name!r} is not a valid parameter group name: 1-255 letters, "
                                                    f"digits or hyphens, starting with a letter, not ending with a "
                                                    f"hyphen or holding two consecutive hyphens")
        return name.lower()  # stored lower-case, as Redshift does

    async def _group(self, name: str) -> tuple[str, str, dict[str, str]]:
        """(family, description, values set) of a group, the default one included."""
        if name == pg.DEFAULT_GROUP:
            return pg.FAMILY, f"Default parameter group for {pg.FAMILY}", {}
        for stored, family, description, values in await self.catalog.parameter_groups():
            if stored == name:
                return family, description, values
        raise ApiError("ClusterParameterGroupNotFound", f"Parameter group {name} not found.", 404)

    def _changeable(self, name: str) -> None:
        if name == pg.DEFAULT_GROUP:
            # UNVERIFIED: the code (RDS answers InvalidDBParameterGroupState for its default groups).
            raise ApiError("InvalidClusterParameterGroupState",
                           f"The default parameter group {name} cannot be modified or deleted.")

    async def _create_parameter_group(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._parameter_group_name(params.get("ParameterGroupName"))
        family, description = params.get("ParameterGroupFamily"), params.get("Description")
        if family is None or description is None:
            raise ApiError("MissingParameter", "The request must contain the parameters ParameterGroupFamily "
                                               "and Description")
        if family != pg.FAMILY:
            raise ApiError("InvalidParameterValue", f"Parameter group family {family} is not valid; "
                                                    f"the family is {pg.FAMILY}")
        if _structures(params, "Tags", "Tag"):
            raise ApiError("InvalidTagFault", "Tags on parameter groups are not supported here")
        self._authorize(principal, "CreateClusterParameterGroup", self._parameter_group_arn(name),
                        self._context(principal, source_ip))
        if name == pg.DEFAULT_GROUP:
            raise ApiError("ClusterParameterGroupAlreadyExists", f"Parameter group {name} already exists.")
        await self.catalog.create_parameter_group(name, family, description)
        return f"<ClusterParameterGroup>{_parameter_group_xml(name, family, description)}</ClusterParameterGroup>"

    async def _delete_parameter_group(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._parameter_group_name(params.get("ParameterGroupName"))
        self._authorize(principal, "DeleteClusterParameterGroup", self._parameter_group_arn(name),
                        self._context(principal, source_ip))
        self._changeable(name)
        await self.catalog.delete_parameter_group(name)
        return ""

    async def _describe_parameter_groups(self, params: dict[str, str], principal: Principal,
                                         source_ip: str) -> str:
        name = params.get("ParameterGroupName") or None
        name = name and self._parameter_group_name(name)
        self._authorize(principal, "DescribeClusterParameterGroups", self._parameter_group_arn(name or "*"),
                        self._context(principal, source_ip))
        groups = [(pg.DEFAULT_GROUP, *(await self._group(pg.DEFAULT_GROUP))[:2])]
        groups += [(n, family, description) for n, family, description, _ in await self.catalog.parameter_groups()]
        if name is not None:
            groups = [g for g in groups if g[0] == name]
            if not groups:
                raise ApiError("ClusterParameterGroupNotFound", f"Parameter group {name} not found.", 404)
        return "<ParameterGroups>" + "".join(f"<ClusterParameterGroup>{_parameter_group_xml(*g)}</ClusterParameterGroup>"
                                             for g in groups) + "</ParameterGroups>"

    async def _describe_parameters(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._parameter_group_name(params.get("ParameterGroupName"))
        self._authorize(principal, "DescribeClusterParameters", self._parameter_group_arn(name),
                        self._context(principal, source_ip))
        values = (await self._group(name))[2]
        source = params.get("Source")
        chosen = [p for p in pg.PARAMETERS.values()
                  if source is None or source == ("user" if p.name in values else "engine-default")]
        return f"<Parameters>{''.join(_parameter_xml(p, values) for p in chosen)}</Parameters>"

    async def _describe_default_parameters(self, params: dict[str, str], principal: Principal,
                                           source_ip: str) -> str:
        family = params.get("ParameterGroupFamily")
        if family != pg.FAMILY:
            raise ApiError("InvalidParameterValue", f"Parameter group family {family} is not valid; "
                                                    f"the family is {pg.FAMILY}")
        self._authorize(principal, "DescribeDefaultClusterParameters", "*", self._context(principal, source_ip))
        parameters = "".join(_parameter_xml(p, {}) for p in pg.PARAMETERS.values())
        return (f"<DefaultClusterParameters><ParameterGroupFamily>{family}</ParameterGroupFamily>"
                f"<Parameters>{parameters}</Parameters></DefaultClusterParameters>")

    async def _modify_parameter_group(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._parameter_group_name(params.get("ParameterGroupName"))
        given = _structures(params, "Parameters", "Parameter")
        if not given:
            raise ApiError("MissingParameter", "The request must contain the parameter Parameters")
        changes = {}
        for parameter in given:
            if "ParameterValue" not in parameter:
                raise ApiError("InvalidParameterValue",
                               f"The parameter {parameter.get('ParameterName', '')} needs a ParameterValue")
            try:
                changes[parameter.get("ParameterName", "")] = pg.checked_value(parameter.get("ParameterName", ""),
                                                                               parameter["ParameterValue"])
            except pg.ParameterRefused as exc:
                raise ApiError("InvalidParameterValue", str(exc)) from None
        return await self._change_parameter_group(name, changes, "ModifyClusterParameterGroup", principal, source_ip)

    async def _reset_parameter_group(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        name = self._parameter_group_name(params.get("ParameterGroupName"))
        names = [p.get("ParameterName", "") for p in _structures(params, "Parameters", "Parameter")]
        unknown = [n for n in names if n not in pg.PARAMETERS]
        if unknown:
            raise ApiError("InvalidParameterValue", f"Could not find parameter with name: {unknown[0]}")
        # Without Parameters, ResetAllParameters' default (true) applies.
        changes = None if params.get("ResetAllParameters", "true").lower() == "true" and not names \
            else dict.fromkeys(names)
        if changes == {}:
            raise ApiError("InvalidParameterCombination", "Name the Parameters to reset, or ResetAllParameters")
        return await self._change_parameter_group(name, changes, "ResetClusterParameterGroup", principal, source_ip)

    async def _change_parameter_group(self, name: str, changes: dict[str, str | None] | None, action: str,
                                      principal: Principal, source_ip: str) -> str:
        self._authorize(principal, action, self._parameter_group_arn(name), self._context(principal, source_ip))
        self._changeable(name)
        await self.catalog.change_parameter_group(name, changes)
        return (f"<ParameterGroupName>{escape(name)}</ParameterGroupName>"
                f"<ParameterGroupStatus>{_PENDING_REBOOT}</ParameterGroupStatus>")

    # ---------------------------------------------------------------- audit logging

    async def _enable_logging(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        """Deliver the audit logs to a bucket of the `s3` configuration key (audit/delivery.py)."""
        identifier = await self._cluster_action("EnableLogging", params, principal, source_ip)
        if params.get("LogDestinationType", "s3") != "s3":
            raise ApiError("UnsupportedOperation", "Only LogDestinationType s3 is supported here: the logs are "
                                                   "delivered to a bucket of the s3 configuration key, not CloudWatch")
        bucket, prefix = params.get("BucketName"), params.get("S3KeyPrefix", "")
        if not bucket:
            raise ApiError("MissingParameter", "The request must contain the parameter BucketName")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ApiError("InvalidS3BucketNameFault", f"The S3 bucket name {bucket!r} is invalid.")
        if bucket not in self.config.s3:
            raise ApiError("BucketNotFoundFault", f"Could not find bucket {bucket}: map it to a directory in the s3 "
                                                  f"configuration key")
        parts = prefix.split("/")
        if (len(prefix) > 512 or prefix.startswith("/") or any(p in (".", "..") for p in parts)
                or any(c in "'\"\\" or not c.isprintable() or c.isspace() for c in prefix)):
            raise ApiError("InvalidS3KeyPrefixFault", f"The S3 key prefix {prefix!r} is not valid: at most 512 "
                                                      f"printable characters, no spaces, quotes or backslashes, "
                                                      f"no '.' or '..' part, not starting with '/'")
        exports = _members(params, "LogExports", "member") or list(_LOG_TYPES)
        if any(e not in _LOG_TYPES for e in exports):
            raise ApiError("InvalidParameterValue", f"LogExports must name {', '.join(_LOG_TYPES)}")
        await self.catalog.set_logging(identifier, {"bucket": bucket, "prefix": prefix, "exports": exports})
        await self.cluster.refresh()
        return await self._logging_status_xml(identifier)

    async def _disable_logging(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        identifier = await self._cluster_action("DisableLogging", params, principal, source_ip)
        await self.catalog.set_logging(identifier, None)
        await self.cluster.refresh()
        return await self._logging_status_xml(identifier)

    async def _describe_logging_status(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        identifier = await self._cluster_action("DescribeLoggingStatus", params, principal, source_ip)
        return await self._logging_status_xml(identifier)

    async def _logging_status_xml(self, identifier: str) -> str:
        logging_state = (await self.catalog.cluster_state(identifier)).logging
        if logging_state is None:
            return "<LoggingEnabled>false</LoggingEnabled>"
        exports = "".join(f"<member>{e}</member>" for e in logging_state["exports"])
        times = "".join(f"<{tag}>{iso8601(datetime.datetime.fromisoformat(logging_state[key]))}</{tag}>"
                        for key, tag in (("last_delivery", "LastSuccessfulDeliveryTime"),
                                         ("last_failure", "LastFailureTime")) if key in logging_state)
        failure = logging_state.get("last_failure_message")
        return (f"<LoggingEnabled>true</LoggingEnabled><BucketName>{escape(logging_state['bucket'])}</BucketName>"
                f"<S3KeyPrefix>{escape(logging_state['prefix'])}</S3KeyPrefix>{times}"
                + (f"<LastFailureMessage>{escape(failure)}</LastFailureMessage>" if failure else "")
                + f"<LogDestinationType>s3</LogDestinationType><LogExports>{exports}</LogExports>")

    # ---------------------------------------------------------------- tags

    def _tagged_cluster(self, params: dict[str, str]) -> str:
        """The cluster a ResourceName ARN names (the only taggable resource here)."""
        name = params.get("ResourceName")
        if not name:
            raise ApiError("MissingParameter", "The request must contain the parameter ResourceName")
        if name != f"{self._arn}:cluster:{self.config.cluster.identifier}":
            raise ApiError("ResourceNotFoundFault", f"The resource {name} could not be found: only this cluster's "
                                                    f"ARN can be tagged here.", 404)
        return self.config.cluster.identifier

    async def _create_tags(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        identifier = self._tagged_cluster(params)
        tags = _request_tags(params)
        if not tags:
            raise ApiError("MissingParameter", "The request must contain the parameter Tags")
        await self._cluster_action("CreateTags", params, principal, source_ip, identifier, **_tag_context(tags))
        await self.catalog.change_tags(identifier, tags, [], _MAX_TAGS)
        return ""

    async def _delete_tags(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        identifier = self._tagged_cluster(params)
        keys = _members(params, "TagKeys", "TagKey")
        if not keys:
            raise ApiError("MissingParameter", "The request must contain the parameter TagKeys")
        await self._cluster_action("DeleteTags", params, principal, source_ip, identifier, **{"aws:TagKeys": keys})
        await self.catalog.change_tags(identifier, {}, keys, _MAX_TAGS)
        return ""

    async def _describe_tags(self, params: dict[str, str], principal: Principal, source_ip: str) -> str:
        identifier = self.config.cluster.identifier
        if params.get("ResourceName"):
            self._tagged_cluster(params)
        await self._cluster_action("DescribeTags", params, principal, source_ip, identifier)
        keys, values = _members(params, "TagKeys", "TagKey"), _members(params, "TagValues", "TagValue")
        tags = (await self.catalog.cluster_state(identifier)).tags
        if params.get("ResourceType", "cluster").lower() != "cluster":
            tags = {}
        chosen = {k: v for k, v in tags.items() if (not keys or k in keys) and (not values or v in values)}
        resources = "".join(f"<TaggedResource><Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>"
                            f"<ResourceName>{self._arn}:cluster:{identifier}</ResourceName>"
                            f"<ResourceType>cluster</ResourceType></TaggedResource>" for k, v in sorted(chosen.items()))
        return f"<TaggedResources>{resources}</TaggedResources>"
