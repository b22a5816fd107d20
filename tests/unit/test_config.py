"""Configuration: defaults, the shipped YAML, environment overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy.config import ENV_KEYS, Config, ConfigError, admin_password, load_config, parse_address

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "shiftguard.yaml"


def test_shipped_yaml_documents_exactly_the_defaults():
    assert load_config(SHIPPED, env={}) == Config()
    keys = yaml.safe_load(SHIPPED.read_text())
    assert set(keys) == {f for f in Config.__dataclass_fields__}


def test_defaults():
    config = load_config(SHIPPED, env={})
    assert (config.cluster.identifier, config.cluster.region, config.cluster.account_id,
            config.cluster.database, config.cluster.admin_user) == (
        "shiftguard", "us-east-1", "123456789012", "dev", "awsuser")
    assert [str(a) for a in config.listen_addresses] == ["127.0.0.1:5439"]
    assert str(config.api_address) == "127.0.0.1:5440"


def test_environment_overrides_file(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("cluster:\n  region: eu-west-1\ntls:\n  require_ssl: false\n")
    config = load_config(file, env={"SHIFTGUARD_CLUSTER_REGION": "ap-south-1",
                                    "SHIFTGUARD_TLS_REQUIRE_SSL": "true",
                                    "SHIFTGUARD_LISTEN": "127.0.0.1:1,[::1]:2",
                                    "SHIFTGUARD_ADMIN_PASSWORD": "not a key"})
    assert config.cluster.region == "ap-south-1"
    assert config.tls.require_ssl is True
    assert [str(a) for a in config.listen_addresses] == ["127.0.0.1:1", "[::1]:2"]
    assert ENV_KEYS["SHIFTGUARD_BACKEND_DSN"] == ["backend", "dsn"]


@pytest.mark.parametrize("text, env, message", [
    ("clusterr: {}\n", {}, "clusterr: unknown key"),
    ("cluster:\n  regoin: x\n", {}, "cluster.regoin: unknown key"),
    ("cluster:\n  account_id: 12\n", {}, "cluster.account_id: must be 12 digits"),
    ("tls:\n  require_ssl: maybe\n", {}, "tls.require_ssl: expected bool"),
    ("listen: nowhere\n", {}, "listen: expected HOST:PORT"),
    ("limits:\n  auth_timeout: -1\n", {}, "limits.auth_timeout"),
    ("cluster: [1, 2]\n", {}, "cluster: expected a mapping"),
    ("a: [\n", {}, "not valid YAML at line"),
    ("", {"SHIFTGUARD_LISTN": "x"}, "SHIFTGUARD_LISTN: no such configuration key"),
    ("", {"SHIFTGUARD_TLS_REQUIRE_SSL": "perhaps"}, "SHIFTGUARD_TLS_REQUIRE_SSL: expected true or false"),
    ("backend:\n  dsn: mysql://x\n", {}, "backend.dsn: must be a postgresql:// URL"),
    ("tls:\n  cert: /nonexistent.pem\n  key: /nonexistent.key\n", {}, "tls.cert: no such file"),
    ("iam:\n  roles: [{name: r, trust: [nobody]}]\n", {}, "iam.roles[0].trust: no IAM user named 'nobody'"),
    ("iam:\n  roles: [{name: r, trust: 5}]\n", {}, "iam.roles[0].trust: a list of IAM user names"),
    ("iam:\n  roles: [{name: r, trust: {Statement: [{Effect: Allow, Action: x}]}}]\n", {},
     "iam.roles[0].trust.Statement[0]: needs Principal and Action"),
    ("iam:\n  roles: [{name: r, max_session_duration: 60}]\n", {}, "iam.roles[0].max_session_duration"),
    ("iam:\n  roles: [{name: r}, {name: r}]\n", {}, "iam.roles: a role name is used twice"),
    ("iam:\n  saml_providers: [{name: p}]\n", {}, "iam.saml_providers[0]: give exactly one of metadata"),
    ("iam:\n  saml_providers: [{name: p, metadata: '<x/>'}]\n", {},
     "iam.saml_providers[0]: unusable SAML metadata: not SAML metadata"),
    ("iam:\n  saml_providers: [{name: p, metadata_file: /no/such.xml}]\n", {},
     "iam.saml_providers[0]: unusable SAML metadata"),
    ("iam:\n  saml_providers: [{name: 'a b', metadata: '<x/>'}]\n", {}, "iam.saml_providers[0].name"),
    ("iam:\n  oidc_providers: [{url: 'http://x.example', public_key: k}]\n", {},
     "iam.oidc_providers[0].url: the issuer, an https URL"),
    ("iam:\n  oidc_providers: [{url: 'https://x.example'}]\n", {}, "exactly one of jwks, jwks_file or public_key"),
    ("iam:\n  oidc_providers: [{url: 'https://x.example', client_ids: [], jwks_file: /k.json}]\n", {},
     "iam.oidc_providers[0].client_ids: at least one audience"),
    ("iam:\n  local_idp: true\napi_listen: 0.0.0.0:5440\n", {}, "iam.local_idp: the development IdP vouches"),
    ("iam:\n  local_idp_listen: 0.0.0.0:443\n", {}, "iam.local_idp_listen: the development IdP listens on loopback"),
    ("cluster:\n  iam_roles: ['arn:aws:iam::123456789012:role/r']\n", {},
     "cluster.iam_roles[0]: 'arn:aws:iam::123456789012:role/r' is not the ARN of a role in iam.roles"),
    ("cluster:\n  default_iam_role: 'arn:aws:iam::123456789012:role/r'\n", {},
     "cluster.default_iam_role: must be one of cluster.iam_roles"),
])
def test_errors_name_the_key(tmp_path, text, env, message):
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /no/such.yaml"):
        load_config("/no/such.yaml", env={})


@pytest.mark.parametrize("text, loopback", [
    ("127.0.0.1:5439", True), ("[::1]:0", True), ("localhost:1", True),
    ("0.0.0.0:5439", False), ("10.1.2.3:5439", False), ("[::]:5439", False),
])
def test_loopback_detection(text, loopback):
    assert parse_address(text).is_loopback is loopback


def test_admin_password_default_is_flagged():
    assert admin_password({}) == ("Shiftguard-dev-1", True)
    assert admin_password({"SHIFTGUARD_ADMIN_PASSWORD": "Xyz12345"}) == ("Xyz12345", False)
