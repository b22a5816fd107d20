"""Redshift-level state kept in the backing database's private schema."""
