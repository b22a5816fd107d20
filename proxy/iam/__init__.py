"""The AWS-compatible control plane: HTTP server, SigV4 verification, IAM policies, tokens."""
