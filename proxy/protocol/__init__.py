"""Sans-I/O PostgreSQL v3 codec: framing, the messages the proxy inspects, builders. No asyncio here."""
