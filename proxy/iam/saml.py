"""SAML 2.0 assertions for STS AssumeRoleWithSAML: an IAM SAML provider's metadata (its entity id
and signing certificates) and the verification of a base64 SAMLResponse against it. Pure: the
time is an argument, nothing is stored (replays are refused by sts.py through the catalog).

The XML signature is checked by signxml, never here: canonicalisation and digests are its job.
Everything read after that comes from what signxml returns as signed (VerifyResult.signed_xml,
re-parsed from the canonical form, so comments are gone: `alice<!---->@x` reads `alice@x`), which
is the defence against XML signature wrapping. The unsigned envelope is looked at only to
refuse (more than one assertion, an encrypted one, a failure status), never to accept.
XML is parsed with DTDs, entities and network access off; signxml refuses DTDs outright.

A refusal raises SamlRefused with STS's error code and the reason, which goes to the proxy's
log only: the caller sees STS's generic message.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier

SAML_AUDIENCE = "https://signin.aws.amazon.com/saml"   # Audience and Recipient of assertions for AWS
ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_NAME_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
SESSION_DURATION_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
REDSHIFT_ATTRIBUTES = "https://redshift.amazon.com/SAML/Attributes/"
SKEW = datetime.timedelta(minutes=5)   # clock difference tolerated on every time bound
MAX_ASSERTION_CHARS = 100_000          # STS's limit on SAMLAssertion

_NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
       "md": "urn:oasis:names:tc:SAML:2.0:metadata", "ds": "http://www.w3.org/2000/09/xmldsig#"}
_NAMEID_PREFIX = "urn:oasis:names:tc:SAML:2.0:nameid-format:"
_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"


class SamlRefused(Exception):
    """code: STS's error code for the caller; the message is the reason, for the log only."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


def _invalid(reason: str) -> SamlRefused:
    return SamlRefused("InvalidIdentityToken", reason)


def safe_parser() -> etree.XMLParser:
    """No DTD loading, no entity expansion, no network, no huge trees."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False)


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


@dataclass(frozen=True)
class SamlProvider:
    """An IAM SAML provider: arn:aws:iam::<account>:saml-provider/<name>."""

    name: str
    arn: str
    entity_id: str
    certificates: tuple[x509.Certificate, ...]

    @classmethod
    def from_metadata(cls, name: str, account: str, metadata: str) -> "SamlProvider":
        """From IdP metadata XML: the EntityDescriptor's entityID and the X.509 certificates of its
        IDPSSODescriptor's signing keys (KeyDescriptor use="signing" or without use). Raises
        ValueError."""
        try:
            root = etree.fromstring(metadata.encode(), parser=safe_parser())
        except etree.XMLSyntaxError as exc:
            raise ValueError(f"not XML: {exc}") from None
        if root.getroottree().docinfo.internalDTD is not None:
            raise ValueError("metadata with a DTD is refused")
        if root.tag != _q("md:EntityDescriptor") or not root.get("entityID"):
            raise ValueError("not SAML metadata: expected an md:EntityDescriptor with an entityID")
        certificates = []
        for descriptor in root.iterfind("md:IDPSSODescriptor/md:KeyDescriptor", _NS):
            if descriptor.get("use", "signing") != "signing":
                continue
            for text in descriptor.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS):
                try:
                    der = base64.b64decode("".join((text.text or "").split()), validate=True)
                    certificates.append(x509.load_der_x509_certificate(der))
                except (binascii.Error, ValueError) as exc:
                    raise ValueError(f"a signing certificate is unreadable: {exc}") from None
        if not certificates:
            raise ValueError("the metadata has no IDPSSODescriptor signing certificate")
        return cls(name, f"arn:aws:iam::{account}:saml-provider/{name}", root.get("entityID"), tuple(certificates))


@dataclass(frozen=True)
class SamlAssertion:
    """What a verified assertion says (all of it from the signed XML)."""

    id: str
    issuer: str
    subject: str
    subject_type: str                      # persistent, transient, or the NameID Format in full
    recipient: str
    expires: datetime.datetime             # the earliest NotOnOrAfter: remembered until then
    session_not_on_or_after: datetime.datetime | None
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def role_pairs(self) -> set[tuple[str, str]]:
        """The Role attribute's (role ARN, provider ARN) pairs; either order is accepted, as AWS does."""
        pairs = set()
        for value in self.attributes.get(ROLE_ATTRIBUTE, []):
            parts = [p.strip() for p in value.split(",")]
            if len(parts) != 2:
                continue
            role = next((p for p in parts if ":role/" in p), None)
            provider = next((p for p in parts if ":saml-provider/" in p), None)
            if role and provider:
                pairs.add((role, provider))
        return pairs

    def single(self, name: str) -> str | None:
        values = self.attributes.get(name, [])
        return values[0] if values else None


def name_qualifier(issuer: str, account: str, provider_name: str) -> str:
    """AWS's NameQualifier (and saml:namequalifier): base64(SHA-1(issuer + account + '/' + name))."""
    return base64.b64encode(hashlib.sha1((issuer + account + "/" + provider_name).encode()).digest()).decode()


def subject_type(name_format: str | None) -> str:
    """AWS's SubjectType: the NameID Format without the SAML 2.0 name-id-format prefix."""
    if not name_format:
        return "unspecified"  # SAML core 8.3: a NameID without Format is unspecified
    return name_format.removeprefix(_NAMEID_PREFIX)


def verify_response(encoded: str, provider: SamlProvider, now: datetime.datetime) -> SamlAssertion:
    """The assertion of a base64 SAMLResponse, verified against provider; raises SamlRefused."""
    if len(encoded) > MAX_ASSERTION_CHARS:
        raise _invalid(f"SAMLAssertion is longer than {MAX_ASSERTION_CHARS} characters")
    try:
        document = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("SAMLAssertion is not base64") from None
    try:
        envelope = etree.fromstring(document, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        raise _invalid(f"SAMLAssertion is not XML: {exc}") from None
    _check_envelope(envelope)
    assertion = _assertion(_signed(document, provider))
    return _read(assertion, provider, now)


def _check_envelope(envelope) -> None:
    """Refusals only: what is not signed can never make an assertion acceptable."""
    if envelope.getroottree().docinfo.internalDTD is not None:
        raise _invalid("the document has a DTD")
    if envelope.tag not in (_q("samlp:Response"), _q("saml:Assertion")):
        raise _invalid(f"the document is a {envelope.tag}, not a SAML Response")
    if envelope.find(".//saml:EncryptedAssertion", _NS) is not None:
        raise _invalid("encrypted assertions are not supported")
    count = len(envelope.findall(".//saml:Assertion", _NS)) + (envelope.tag == _q("saml:Assertion"))
    if count != 1:
        raise _invalid(f"the document has {count} assertions; exactly one is accepted")
    status = envelope.find("samlp:Status/samlp:StatusCode", _NS)
    if status is not None and status.get("Value") != _SUCCESS:
        raise _invalid(f"the IdP's status is {status.get('Value')}")


def _signed(document: bytes, provider: SamlProvider):
    """The element a signature by one of the provider's certificates covers (the Response or the
    Assertion), as signxml returns it. The certificate in the document's KeyInfo is ignored: only
    the configured ones count."""
    reasons = []
    for certificate in provider.certificates:
        try:
            result = XMLVerifier().verify(document, x509_cert=certificate, parser=safe_parser(),
                                          expect_config=SignatureConfiguration(expect_references=1))
        except Exception as exc:  # noqa: BLE001 - whatever the verifier raises on this input: not verified
            # (signxml's InvalidSignature/InvalidDigest/InvalidInput, and for a malformed
            # Signature lxml's DocumentInvalid or a TypeError).
            reasons.append(f"{type(exc).__name__}: {exc}")
            continue
        if result.signed_xml is None:
            raise _invalid("the signature covers no element")
        return result.signed_xml
    raise _invalid("no valid signature by the provider's key: " + "; ".join(reasons))


def _assertion(signed):
    if signed.tag == _q("saml:Assertion"):
        return signed
    if signed.tag != _q("samlp:Response"):
        raise _invalid(f"the signature covers a {signed.tag}, not the Response or the Assertion")
    assertions = signed.findall("saml:Assertion", _NS)
    if len(assertions) != 1:
        raise _invalid(f"the signed Response holds {len(assertions)} assertions; exactly one is accepted")
    status = signed.find("samlp:Status/samlp:StatusCode", _NS)
    if status is None or status.get("Value") != _SUCCESS:
        raise _invalid("the signed Response's status is not Success")
    return assertions[0]


def _text(element, what: str) -> str:
    """An element's whole text; an element with children (or, had one survived, a comment) is
    refused rather than read in part."""
    if element is None:
        raise _invalid(f"the assertion has no {what}")
    if len(element):
        raise _invalid(f"the assertion's {what} has child nodes")
    text = (element.text or "").strip()
    if not text:
        raise _invalid(f"the assertion's {what} is empty")
    return text


def _time(text: str | None, what: str) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(f"{what} is not an xs:dateTime: {text!r}") from None
    if moment.tzinfo is None:
        raise _invalid(f"{what} has no time zone: {text!r}")
    return moment


def _read(assertion, provider: SamlProvider, now: datetime.datetime) -> SamlAssertion:
    if assertion.get("Version") != "2.0" or not assertion.get("ID"):
        raise _invalid("not a SAML 2.0 assertion with an ID")
    issuer = _text(assertion.find("saml:Issuer", _NS), "Issuer")
    if issuer != provider.entity_id:
        raise _invalid(f"issuer {issuer!r} is not the provider's entity id {provider.entity_id!r}")

    conditions = assertion.find("saml:Conditions", _NS)
    if conditions is None:
        raise _invalid("the assertion has no Conditions")
    audiences = [_text(a, "Audience") for a in conditions.iterfind("saml:AudienceRestriction/saml:Audience", _NS)]
    if SAML_AUDIENCE not in audiences:
        raise _invalid(f"audience {audiences!r} does not include {SAML_AUDIENCE}")
    not_before = _time(conditions.get("NotBefore"), "Conditions NotBefore")
    if not_before is not None and now + SKEW < not_before:
        raise _invalid(f"the assertion is not valid before {not_before.isoformat()}")
    deadlines = [_time(conditions.get("NotOnOrAfter"), "Conditions NotOnOrAfter")]

    subject = assertion.find("saml:Subject", _NS)
    name_id = subject.find("saml:NameID", _NS) if subject is not None else None
    sub = _text(name_id, "Subject NameID")
    recipient = None
    for confirmation in subject.iterfind("saml:SubjectConfirmation", _NS):
        data = confirmation.find("saml:SubjectConfirmationData", _NS)
        if confirmation.get("Method") != _BEARER or data is None or data.get("Recipient") != SAML_AUDIENCE:
            continue
        recipient = data.get("Recipient")
        confirmation_not_before = _time(data.get("NotBefore"), "SubjectConfirmationData NotBefore")
        if confirmation_not_before is not None and now + SKEW < confirmation_not_before:
            raise _invalid("the subject confirmation is not valid yet")
        until = _time(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
        if until is None:
            raise _invalid("the bearer SubjectConfirmationData has no NotOnOrAfter")
        deadlines.append(until)
        break
    if recipient is None:
        raise _invalid(f"no bearer SubjectConfirmation with Recipient {SAML_AUDIENCE}")
    expires = min(d for d in deadlines if d is not None)
    if now - SKEW >= expires:
        raise SamlRefused("ExpiredTokenException", f"the assertion expired at {expires.isoformat()}")

    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind("saml:AttributeStatement/saml:Attribute", _NS):
        name = attribute.get("Name")
        values = [_text(v, f"attribute {name}") for v in attribute.iterfind("saml:AttributeValue", _NS)
                  if len(v) or (v.text or "").strip()]
        if name:
            attributes.setdefault(name, []).extend(values)
    authn = assertion.find("saml:AuthnStatement", _NS)
    session_until = _time(authn.get("SessionNotOnOrAfter"), "SessionNotOnOrAfter") if authn is not None else None
    return SamlAssertion(assertion.get("ID"), issuer, sub, subject_type(name_id.get("Format")), recipient,
                         expires + SKEW, session_until, attributes)
