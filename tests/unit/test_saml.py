"""SAML assertions, pure: what iam/saml.py reads from a signed document is what was signed."""

from __future__ import annotations

import copy
import datetime

import pytest
from lxml import etree

from proxy.iam import saml
from proxy.iam.local_idp import LocalIdp

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/r"
NS = {"saml": "urn:oasis:names:tc:SAML:2.0:assertion", "ds": "http://www.w3.org/2000/09/xmldsig#"}


@pytest.fixture(scope="module")
def idp(tmp_path_factory) -> LocalIdp:
    return LocalIdp(tmp_path_factory.mktemp("idp"), ACCOUNT)


@pytest.fixture(scope="module")
def provider(idp) -> saml.SamlProvider:
    return saml.SamlProvider.from_metadata("shiftguard", ACCOUNT, idp.metadata())


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def test_only_the_signed_assertion_is_read(idp):
    """Beneath the envelope check: even where a forged assertion comes first, the verifier's
    result is the signed one."""
    genuine = idp.sign(idp.assertion("bob", [ROLE]))
    forged = copy.deepcopy(genuine)
    forged.set("ID", "_forged")
    forged.remove(forged.find("ds:Signature", NS))
    forged.find("saml:Subject/saml:NameID", NS).text = "alice"
    document = etree.tostring(LocalIdp.response(forged, genuine))
    signed = saml._signed(document, saml.SamlProvider.from_metadata("p", ACCOUNT, idp.metadata()))
    assert signed.get("ID") == genuine.get("ID")
    assert signed.find("saml:Subject/saml:NameID", NS).text == "bob"


def test_a_comment_does_not_cut_the_name(idp, provider):
    response = LocalIdp.response(idp.sign(idp.assertion("alice@example.com.evil", [ROLE])))
    name_id = response.find(".//saml:NameID", NS)
    name_id.text = "alice@example.com"
    comment = etree.Comment("")
    comment.tail = ".evil"
    name_id.append(comment)
    assert saml.verify_response(LocalIdp.encode(response), provider, now()).subject == "alice@example.com.evil"


def test_a_comment_the_idp_signed_is_not_a_cut_either(idp, provider):
    """alice<!---->@x as the IdP put it: canonicalisation drops the comment, so what was signed,
    and what is read, is alice@x (never alice, never @x)."""
    assertion = idp.assertion("placeholder", [ROLE])
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    name_id.text = "alice"
    comment = etree.Comment("")
    comment.tail = "@x"
    name_id.append(comment)
    encoded = LocalIdp.encode(LocalIdp.response(idp.sign(assertion)))
    assert saml.verify_response(encoded, provider, now()).subject == "alice@x"


def test_time_bounds(idp, provider):
    encoded = idp.saml_response("alice", [ROLE])
    assert saml.verify_response(encoded, provider, now() + datetime.timedelta(minutes=9)).subject == "alice"
    with pytest.raises(saml.SamlRefused) as refused:
        saml.verify_response(encoded, provider, now() + datetime.timedelta(minutes=11))  # 5 + skew 5
    assert refused.value.code == "ExpiredTokenException"
    with pytest.raises(saml.SamlRefused) as refused:
        saml.verify_response(encoded, provider, now() - datetime.timedelta(minutes=6))
    assert refused.value.code == "InvalidIdentityToken"


@pytest.mark.parametrize("encoded", ["not base64!", "PGE+PC9hPg==", "x" * 100_001])
def test_not_a_response(provider, encoded):
    with pytest.raises(saml.SamlRefused) as refused:
        saml.verify_response(encoded, provider, now())
    assert refused.value.code == "InvalidIdentityToken"


def test_role_pairs_either_order():
    provider = f"arn:aws:iam::{ACCOUNT}:saml-provider/p"
    assertion = saml.SamlAssertion("i", "iss", "sub", "persistent", saml.SAML_AUDIENCE, now(), None, {
        saml.ROLE_ATTRIBUTE: [f"{ROLE},{provider}", f" {provider} , {ROLE}2", "garbage"]})
    assert assertion.role_pairs() == {(ROLE, provider), (ROLE + "2", provider)}


EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


@pytest.mark.parametrize("name_format, expected", [
    ("urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "transient"),
    (EMAIL, EMAIL),                          # only the SAML 2.0 prefix is taken off
    (None, "unspecified"),
])
def test_subject_type(name_format, expected):
    assert saml.subject_type(name_format) == expected


@pytest.mark.parametrize("metadata, message", [
    ("<x/>", "not SAML metadata"),
    ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="e"/>', "no IDPSSODescriptor"),
    ("<!DOCTYPE x [<!ENTITY e 'x'>]><x/>", "DTD"),
    ("not xml", "not XML"),
])
def test_unusable_metadata(metadata, message):
    with pytest.raises(ValueError, match=message):
        saml.SamlProvider.from_metadata("p", ACCOUNT, metadata)


def _set(path: str, attribute: str | None, value: str | None):
    def change(response):
        element = response.find(path, NS)
        if attribute is None:
            element.text = value
        else:
            element.set(attribute, value)
    return change


def _remove(path: str):
    def change(response):
        element = response.find(path, NS)
        element.getparent().remove(element)
    return change


def _duplicate_id(response):
    """Another element with the signed assertion's ID: the reference is ambiguous."""
    response.find("saml:Issuer", NS).set("ID", response.find("saml:Assertion", NS).get("ID"))


@pytest.mark.parametrize("change", [
    _set(".//ds:SignatureMethod", "Algorithm", "urn:bogus"),
    _set(".//ds:SignatureMethod", "Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
    _set(".//ds:DigestMethod", "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1"),
    _set(".//ds:CanonicalizationMethod", "Algorithm", "urn:bogus"),
    _set(".//ds:SignatureValue", None, None),
    _set(".//ds:SignatureValue", None, "!!!"),
    _set(".//ds:Reference", "URI", "http://example.com/assertion.xml"),
    _set(".//ds:Reference", "URI", "#xpointer(/)"),
    _set(".//ds:Reference", "URI", ""),
    _set(".//ds:Transform", "Algorithm", "http://www.w3.org/TR/1999/REC-xslt-19991116"),
    _duplicate_id,
    _remove(".//ds:X509Data"),
    _remove(".//ds:SignedInfo"),
], ids=["unknown-method", "rsa-sha1", "sha1-digest", "unknown-c14n", "no-value", "bad-value", "external-uri",
        "xpointer", "whole-document", "xslt", "duplicate-id", "no-keyinfo", "no-signedinfo"])
def test_malformed_signatures_are_refused(idp, provider, change):
    response = LocalIdp.response(idp.sign(idp.assertion("alice", [ROLE])))
    change(response)
    with pytest.raises(saml.SamlRefused) as refused:
        saml.verify_response(LocalIdp.encode(response), provider, now())
    assert refused.value.code == "InvalidIdentityToken"
