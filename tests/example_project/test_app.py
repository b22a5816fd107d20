"""An application's tests against the Redshift stand-in, as a user would write them."""

import psycopg
import pytest


def revenue_by_customer(conn) -> list[tuple]:
    """The application code under test: Redshift SQL."""
    return conn.execute("SELECT customer, sum(amount), listagg(id, ',') WITHIN GROUP (ORDER BY id) "
                        "FROM orders WHERE placed < dateadd(day, 60, '2024-01-01') GROUP BY customer "
                        "ORDER BY customer").fetchall()


def test_revenue(redshift):
    assert [(c, float(s), ids) for c, s, ids in revenue_by_customer(redshift)] == [
        ("acme", 15.0, "1,2"), ("globex", 7.0, "3")]


def test_writes_are_rolled_back(redshift):
    redshift.execute("INSERT INTO orders (customer, amount, placed) VALUES ('initech', 1, getdate())")
    assert redshift.execute("SELECT count(*) FROM orders").fetchone() == (4,)


def test_previous_test_left_nothing(redshift):
    assert redshift.execute("SELECT count(*) FROM orders").fetchone() == (3,)


def test_reporting_user_has_only_its_grant(redshift_stand_in):
    with psycopg.connect(redshift_stand_in.dsn_for("reporting", "Reporting1")) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")


def test_postgres_only_features_fail_as_on_redshift(redshift):
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="does not support CREATE INDEX"):
        redshift.execute("CREATE INDEX ON orders (customer)")


def test_single_sign_on_through_saml(redshift_stand_in, saml_login):
    """An IdP user signs in with SAML, gets a role session, then database credentials."""
    import boto3

    endpoint = {"endpoint_url": redshift_stand_in.api_endpoint_url, "region_name": "us-east-1"}
    session = boto3.client("sts", aws_access_key_id="-", aws_secret_access_key="-", **endpoint) \
        .assume_role_with_saml(RoleArn="arn:aws:iam::123456789012:role/app-analysts",
                               PrincipalArn="arn:aws:iam::123456789012:saml-provider/shiftguard",
                               SAMLAssertion=saml_login("reporting@example.com", db_user="reporting"))["Credentials"]
    redshift = boto3.client("redshift", aws_access_key_id=session["AccessKeyId"],
                            aws_secret_access_key=session["SecretAccessKey"],
                            aws_session_token=session["SessionToken"], **endpoint)
    db = redshift.get_cluster_credentials(ClusterIdentifier="shiftguard", DbUser="reporting")
    with psycopg.connect(redshift_stand_in.dsn_for(db["DbUser"], db["DbPassword"])) as conn:
        assert conn.execute("SELECT current_user, count(*) FROM orders").fetchone() == ("reporting", 3)
