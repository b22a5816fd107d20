"""Accepting clients: listener, TLS, startup packet, authentication, the connection's states."""
