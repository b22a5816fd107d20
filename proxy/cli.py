"""The `shiftguard` command line: argument parsing, logging setup, exit codes. No logic of its own.

Exit codes: 0 after a clean shutdown, 2 for a configuration or startup problem (one line on
stderr, no traceback), 1 for an unexpected failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import __version__
from .backend.embedded import EmbeddedError
from .backend.session import BackendUnavailable
from .config import ConfigError, load_config


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """'time LEVEL logger: message key=value ...' (the extra fields a record carries)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return super().format(record) + (f" {extra}" if extra else "")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        data = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shiftguard",
        description="A PostgreSQL wire-protocol proxy with Amazon Redshift's security model.")
    parser.add_argument("--version", action="version", version=f"shiftguard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the proxy (embedded PostgreSQL unless --backend)")
    serve.add_argument("--config", metavar="FILE",
                       help="YAML configuration (default: config/shiftguard.yaml when present)")
    serve.add_argument("--listen", metavar="HOST:PORT", action="append",
                       help="client address; repeat for several; port 0 picks a free port "
                            "(default 127.0.0.1:5439)")
    serve.add_argument("--api-listen", metavar="HOST:PORT",
                       help="control-plane HTTP address (default 127.0.0.1:5440)")
    serve.add_argument("--data-dir", metavar="DIR",
                       help="embedded PostgreSQL, TLS certificate (default ./.shiftguard)")
    serve.add_argument("--backend", metavar="DSN",
                       help="front an external PostgreSQL: postgresql://user:password@host:port/db")
    serve.add_argument("--workers", metavar="N", type=int,
                       help="processes accepting clients on the listen addresses (default 1)")
    creds = commands.add_parser(
        "credentials", help="print temporary database credentials (as `aws redshift get-cluster-credentials`), "
                            "signed on this machine; or revoke them")
    creds.add_argument("--db-user", metavar="NAME")
    creds.add_argument("--db-name", metavar="DB")
    creds.add_argument("--db-groups", metavar="G1,G2", default="")
    creds.add_argument("--auto-create", action="store_true")
    creds.add_argument("--duration", type=int, default=900, metavar="SECONDS")
    creds.add_argument("--revoke", action="store_true", help="revoke the user's (or --token-id's) tokens")
    creds.add_argument("--token-id", metavar="ID")
    creds.add_argument("--config", metavar="FILE")
    creds.add_argument("--data-dir", metavar="DIR")
    creds.add_argument("--backend", metavar="DSN")
    reload = commands.add_parser("reload", help="make a running `shiftguard serve` re-read its configuration "
                                                "(as SIGHUP does)")
    reload.add_argument("--data-dir", metavar="DIR", default=None,
                        help="the data directory of the running proxy (default: as configured)")
    reload.add_argument("--config", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "reload":
        return _signal_running(args)
    if args.command == "credentials":
        return _credentials(args)
    if args.command != "serve":
        parser.print_help()
        return 2

    def reread():
        return load_config(args.config, overrides={
            "listen": args.listen, "api_listen": args.api_listen, "data_dir": args.data_dir,
            "backend.dsn": args.backend, "workers": args.workers})

    try:
        config = reread()
    except ConfigError as exc:
        print(f"shiftguard: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    from .server import StartupError, serve

    try:
        return run_loop(serve(config, reread))
    except (StartupError, EmbeddedError, BackendUnavailable) as exc:
        print(f"shiftguard: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"shiftguard: cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def setup_logging(config) -> None:
    """Log lines on stderr, as configured (the parent's and each worker's alike)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])


def _credentials(args) -> int:
    from .iam.local import credentials

    if not args.db_user and not (args.revoke and args.token_id):
        print("shiftguard: credentials needs --db-user (or --revoke --token-id ID)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, overrides={"data_dir": args.data_dir, "backend.dsn": args.backend})
        groups = [g.strip().lower() for g in args.db_groups.split(",") if g.strip()]
        print(asyncio.run(credentials(config, db_user=args.db_user, db_name=args.db_name, groups=groups,
                                      auto_create=args.auto_create, duration=args.duration, revoke=args.revoke,
                                      token_id=args.token_id)))
        return 0
    except ConfigError as exc:
        print(f"shiftguard: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"shiftguard: {exc}", file=sys.stderr)
        return 2


def _signal_running(args) -> int:
    """`shiftguard reload`: SIGHUP to the proxy whose pid file is in the data directory."""
    import os
    import signal
    from pathlib import Path

    from .server import PID_FILE

    try:
        data_dir = args.data_dir or load_config(args.config).data_dir
    except ConfigError as exc:
        print(f"shiftguard: configuration error: {exc}", file=sys.stderr)
        return 2
    pid_file = Path(data_dir) / PID_FILE
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        print(f"shiftguard: no running shiftguard found ({pid_file})", file=sys.stderr)
        return 1
    print(f"reload signalled to pid {pid}")
    return 0


def run_loop(coro) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
