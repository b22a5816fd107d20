"""shiftguard: Amazon Redshift's security model in front of an ordinary PostgreSQL."""

__version__ = "0.1.0"
