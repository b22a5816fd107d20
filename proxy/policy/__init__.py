"""Pure decisions over parsed SQL and connection facts: verdicts, never I/O."""
