"""A development identity provider, for tests and local trials only (iam.local_idp, off by
default): it signs SAML 2.0 responses for AssumeRoleWithSAML and OIDC ID tokens for
AssumeRoleWithWebIdentity with an RSA key kept in data_dir/idp, and publishes its SAML metadata
and JWKS, so that the proxy can name it as a configured SAML provider (`shiftguard`) and OIDC
provider. In process it vouches for whoever asks; over HTTPS (an ADFS-style form login, as
redshift_connector's AdfsCredentialsProvider drives it) only for users added with a password.
Never enable it where the API port is reachable by anyone but the tests.

Signing is signxml's (RSA-SHA256, exclusive canonicalisation) and pyjwt's; the key and the
self-signed certificate are made with cryptography.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import os
import secrets
import uuid
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import CanonicalizationMethod

from .saml import REDSHIFT_ATTRIBUTES, ROLE_ATTRIBUTE, SAML_AUDIENCE, SESSION_NAME_ATTRIBUTE, safe_parser

PROVIDER_NAME = "shiftguard"                          # arn:aws:iam::<account>:saml-provider/shiftguard
ENTITY_ID = "urn:shiftguard:local-idp"
# The OIDC issuer: .invalid (RFC 2606) because nothing is ever fetched from it.
OIDC_ISSUER = "https://local-idp.shiftguard.invalid"
OIDC_AUDIENCE = "sts.amazonaws.com"
_KEY_ID = "local-idp"

_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
_ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
_METADATA = "urn:oasis:names:tc:SAML:2.0:metadata"
_DSIG = "http://www.w3.org/2000/09/xmldsig#"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_or_make(directory: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key_path, cert_path = directory / "signing.key", directory / "signing.crt"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shiftguard local IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


class LocalIdp:
    """The development IdP of one data directory."""

    def __init__(self, directory: Path, account: str):
        self.key, self.certificate = _load_or_make(directory)
        self._users: dict[str, tuple[str, dict]] = {}   # form-login users: name -> (password, options)
        self.account = account
        self.provider_arn = f"arn:aws:iam::{account}:saml-provider/{PROVIDER_NAME}"
        self.oidc_provider_arn = f"arn:aws:iam::{account}:oidc-provider/{OIDC_ISSUER.removeprefix('https://')}"

    def _certificate_base64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    def metadata(self) -> str:
        """SAML metadata (an EntityDescriptor with the signing certificate), as IAM takes it."""
        return (f'<md:EntityDescriptor xmlns:md="{_METADATA}" entityID="{ENTITY_ID}">'
                f'<md:IDPSSODescriptor protocolSupportEnumeration="{_PROTOCOL}">'
                f'<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="{_DSIG}"><ds:X509Data>'
                f"<ds:X509Certificate>{self._certificate_base64()}</ds:X509Certificate>"
                f"</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
                f'<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>'
                f"</md:IDPSSODescriptor></md:EntityDescriptor>")

    def jwks(self) -> dict:
        """The OIDC signing key as a JWKS (the OIDC provider's `jwks`)."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [jwk | {"kid": _KEY_ID, "use": "sig", "alg": "RS256"}]}

    def assertion(self, user: str, roles: list[str], *, session_name: str | None = None,
                  db_user: str | None = None, db_groups: list[str] = (), auto_create: bool | None = None,
                  attributes: dict[str, list[str]] | None = None, lifetime: int = 300,
                  now: datetime.datetime | None = None) -> etree._Element:
        """An unsigned Assertion for user (its NameID, persistent), naming each role with this
        provider in the Role attribute, and Redshift's DbUser / DbGroups / AutoCreate when given."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        until = _iso(now + datetime.timedelta(seconds=lifetime))
        values = {ROLE_ATTRIBUTE: [f"{role},{self.provider_arn}" for role in roles],
                  SESSION_NAME_ATTRIBUTE: [session_name or user]}
        if db_user is not None:
            values[REDSHIFT_ATTRIBUTES + "DbUser"] = [db_user]
        if db_groups:
            values[REDSHIFT_ATTRIBUTES + "DbGroups"] = list(db_groups)
        if auto_create is not None:
            values[REDSHIFT_ATTRIBUTES + "AutoCreate"] = [str(auto_create).lower()]
        values.update(attributes or {})
        saml = f"{{{_ASSERTION}}}"
        assertion = etree.Element(saml + "Assertion", nsmap={"saml": _ASSERTION},
                                  ID="_" + uuid.uuid4().hex, Version="2.0", IssueInstant=_iso(now))
        etree.SubElement(assertion, saml + "Issuer").text = ENTITY_ID
        subject = etree.SubElement(assertion, saml + "Subject")
        etree.SubElement(subject, saml + "NameID",
                         Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent").text = user
        confirmation = etree.SubElement(subject, saml + "SubjectConfirmation",
                                        Method="urn:oasis:names:tc:SAML:2.0:cm:bearer")
        etree.SubElement(confirmation, saml + "SubjectConfirmationData", Recipient=SAML_AUDIENCE, NotOnOrAfter=until)
        conditions = etree.SubElement(assertion, saml + "Conditions", NotBefore=_iso(now), NotOnOrAfter=until)
        restriction = etree.SubElement(conditions, saml + "AudienceRestriction")
        etree.SubElement(restriction, saml + "Audience").text = SAML_AUDIENCE
        authn = etree.SubElement(assertion, saml + "AuthnStatement", AuthnInstant=_iso(now),
                                 SessionIndex=assertion.get("ID"))
        context = etree.SubElement(authn, saml + "AuthnContext")
        etree.SubElement(context, saml + "AuthnContextClassRef").text = \
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        statement = etree.SubElement(assertion, saml + "AttributeStatement")
        for name, listed in values.items():
            attribute = etree.SubElement(statement, saml + "Attribute", Name=name)
            for value in listed:
                etree.SubElement(attribute, saml + "AttributeValue").text = value
        return assertion

    def sign(self, element: etree._Element) -> etree._Element:
        """element (an Assertion or a Response) signed, its ds:Signature right after its Issuer
        as the SAML schema puts it."""
        element.insert(1, etree.Element(f"{{{_DSIG}}}Signature", Id="placeholder", nsmap={"ds": _DSIG}))
        signer = XMLSigner(c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return signer.sign(element, key=pem, cert=[self.certificate], reference_uri="#" + element.get("ID"))

    @staticmethod
    def response(*assertions: etree._Element) -> etree._Element:
        """A samlp:Response with status Success around the assertions."""
        response = etree.Element(f"{{{_PROTOCOL}}}Response", nsmap={"samlp": _PROTOCOL, "saml": _ASSERTION},
                                 ID="_" + uuid.uuid4().hex, Version="2.0", Destination=SAML_AUDIENCE,
                                 IssueInstant=_iso(datetime.datetime.now(datetime.timezone.utc)))
        etree.SubElement(response, f"{{{_ASSERTION}}}Issuer").text = ENTITY_ID
        status = etree.SubElement(response, f"{{{_PROTOCOL}}}Status")
        etree.SubElement(status, f"{{{_PROTOCOL}}}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")
        response.extend(assertions)
        return response

    @staticmethod
    def encode(element: etree._Element) -> str:
        """Base64, as a SAMLResponse form field and STS's SAMLAssertion carry it."""
        return base64.b64encode(etree.tostring(element)).decode()

    def saml_response(self, user: str, roles: list[str], **options) -> str:
        """A base64 SAMLResponse whose assertion is signed: what an IdP posts after a login."""
        return self.encode(self.response(self.sign(self.assertion(user, roles, **options))))

    def add_user(self, name: str, password: str, **options) -> None:
        """A user who may sign in through the form login; options as saml_response takes them
        (db_user, db_groups, auto_create, ...)."""
        self._users[name] = (password, options)

    def form_login(self, name: str, password: str, roles: list[str]) -> str | None:
        """The SAMLResponse for an added user whose password matches, else None (an unknown
        user is compared against a throwaway secret, so both take the same time)."""
        entry = self._users.get(name)
        expected = entry[0] if entry is not None else secrets.token_urlsafe(32)
        if not hmac.compare_digest(password.encode(), expected.encode()) or entry is None:
            return None
        return self.saml_response(name, roles, **entry[1])

    def oidc_token(self, user: str, *, audience: str = OIDC_AUDIENCE, lifetime: int = 300,
                   claims: dict | None = None) -> str:
        """An OIDC ID token for user (sub), RS256 with the IdP's key."""
        now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
        payload = {"iss": OIDC_ISSUER, "sub": user, "aud": audience, "iat": now, "nbf": now, "exp": now + lifetime}
        payload.update(claims or {})
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": _KEY_ID})


def roles_trusting(provider_arn: str, config) -> list[str]:
    """The ARNs of the configured roles whose trust policy names provider_arn as
    Principal.Federated: what the IdP lists in a user's Role attribute."""
    arns = []
    for role in config.iam.roles:
        if not isinstance(role.trust, dict):
            continue
        statements = role.trust.get("Statement", [])
        for statement in [statements] if isinstance(statements, dict) else statements:
            principal = statement.get("Principal")
            listed = principal.get("Federated", []) if isinstance(principal, dict) else []
            if provider_arn in ([listed] if isinstance(listed, str) else listed):
                arns.append(f"arn:aws:iam::{role.account or config.cluster.account_id}:role/{role.name}")
                break
    return arns


def parse(encoded: str) -> etree._Element:
    """A base64 SAMLResponse back as XML (for tests that alter one)."""
    return etree.fromstring(base64.b64decode(encoded), parser=safe_parser())
