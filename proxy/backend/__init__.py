"""Reaching PostgreSQL: the embedded server, login as a mapped role, cancel requests."""
