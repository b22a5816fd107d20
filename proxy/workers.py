"""`workers: N`: N processes accepting clients on the same listen addresses, and the supervisor
that runs them. Owns the processes, their control channel and the requests they pass each other;
what a worker serves is server.Proxy's, as in one process.

The parent (`shiftguard serve`) starts the embedded PostgreSQL, installs the catalog, serves the
API, runs init_sql and the queued VACUUMs; it accepts no client. It reserves each listen address
(a bound socket with SO_REUSEPORT that never listens, so port 0 is chosen once and a restarted
worker gets the same port), then starts N workers (`python -m proxy.workers FD`). Each worker
is a server.Proxy of its own, on the same backing database, as separate shiftguard instances
are: security groups, users and the cluster's state are read from there, and changes reach
every worker by version counters and LISTEN/NOTIFY. Each listens on the reserved addresses
with SO_REUSEPORT, and the kernel spreads new connections over them.

Control channel: one socket pair per worker carries length-prefixed pickles (only between this
parent and its own child). Parent to worker: the WorkerSpec, then each reloaded Config.
Worker to parent: READY once it listens. The worker's end closing means the parent is gone:
the worker stops. A worker that exits while the parent runs is started again (after
RESTART_DELAY when it did not get as far as READY); SIGTERM/SIGINT to the parent stop every
worker (each drains its sessions, as one process does) before the parent stops the embedded
server.

CancelRequest: the kernel hands the cancel connection to any worker. The process id a client is
given carries its worker's index in its low WORKER_BITS bits (SessionRegistry.new_pid); a worker
receiving a cancel for another's session passes the 16 bytes on to it, over a Unix socket in a
private directory (mode 0700) that only this OS user can reach, as PgBouncer's peers do. The
same sockets carry a login's request, when the user's CONNECTION LIMIT refused it, that the
others end the sessions they keep idle for that role (Peers.forget_role).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .backend.embedded import EmbeddedTarget
from prometheus_client import generate_latest

from .config import MAX_WORKERS, Config
from .frontend.auth import LoginThrottle
from .protocol import messages as m
from .protocol.framing import decode_startup

log = logging.getLogger(__name__)

WORKER_BITS = MAX_WORKERS.bit_length() - 1  # 6: the low bits of a client's process id
READY = b"ready"
METRICS = b"metrics"  # parent to worker: its exposition, please; worker to parent: (METRICS, text)
METRICS_TIMEOUT = 2.0  # seconds a worker has to answer; a worker that does not is left out
RESTART_DELAY = 1.0  # before starting again a worker that failed before it listened
STOP_MARGIN = 15.0  # seconds past the drain a worker has to stop before it is killed
CANCEL_SIZE = 16  # a CancelRequest's bytes
# Between workers only: "end the sessions you keep for this role" (length, code, role OID).
FORGET_ROLE_CODE = 1234 << 16 | 7000
LOGIN_FAILED_CODE = 1234 << 16 | 7001  # length, code, user NUL address NUL
LOGIN_SUCCEEDED_CODE = 1234 << 16 | 7002
_MAX_LOGIN = 2 << 20  # a user name is at most a startup packet (limits.max_startup_size)
_REQUEST = struct.Struct("!ii")
_FORGET = struct.Struct("!iiI")
PEER_TIMEOUT = 5.0  # seconds another worker has to send them
_HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is told at its start."""

    index: int
    config: Config
    addresses: tuple[tuple[str, int], ...]  # the reserved listen addresses, ports chosen
    control_dir: str  # the private directory of the workers' sockets (workers-<index>.sock)
    backend: EmbeddedTarget | None  # the parent's embedded server; None: config.backend.dsn


def owner(pid: int) -> int:
    """The index of the worker that gave a client this process id."""
    return pid & (MAX_WORKERS - 1)


def peer_socket(control_dir: str | Path, index: int) -> str:
    return str(Path(control_dir) / f"worker-{index}.sock")


async def send(writer: asyncio.StreamWriter, value) -> None:
    data = pickle.dumps(value)
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def receive(reader: asyncio.StreamReader):
    """The next value, or None at the end of the channel."""
    try:
        size, = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


class Peers:
    """A worker's view of the others: who owns a process id, passing a cancel on to it, and
    telling them all what must hold in every worker (a role's kept sessions to end, a failed
    login to count)."""

    def __init__(self, index: int, count: int, control_dir: str):
        self.index = index
        self.count = count
        self.control_dir = control_dir
        self._sending: set[asyncio.Task] = set()

    def mine(self, pid: int) -> bool:
        return owner(pid) == self.index

    async def forward(self, pid: int, packet: bytes) -> None:
        """Pass a CancelRequest on to the worker that gave out pid. A worker that is not there
        (exited, restarting) has no session left to cancel: nothing is sent."""
        await self._send(owner(pid), packet)

    def forget_role(self, oid: int) -> None:
        """A login of the role was refused for its CONNECTION LIMIT: the sessions the other
        workers keep idle for it (from before it had the limit) count against it, and go."""
        self._tell_all(_FORGET.pack(_FORGET.size, FORGET_ROLE_CODE, oid))

    def login_failed(self, user: str, address: str) -> None:
        self._tell_all(_login(LOGIN_FAILED_CODE, user, address))

    def login_succeeded(self, user: str, address: str) -> None:
        self._tell_all(_login(LOGIN_SUCCEEDED_CODE, user, address))

    def _tell_all(self, packet: bytes) -> None:
        for index in range(self.count):
            if index != self.index:
                task = asyncio.get_running_loop().create_task(self._send(index, packet))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, index: int, packet: bytes) -> None:
        try:
            _, writer = await asyncio.open_unix_connection(peer_socket(self.control_dir, index))
        except OSError as exc:
            log.info("a request for worker %d was not passed on: %s", index, exc)
            return
        writer.write(packet)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


def _login(code: int, user: str, address: str) -> bytes:
    body = user.encode("utf-8", "surrogatepass") + b"\0" + address.encode() + b"\0"
    return _REQUEST.pack(_REQUEST.size + len(body), code) + body


class SharedThrottle(LoginThrottle):
    """The login throttle of a worker: a failed login counts in every worker (the kernel gives
    a client's next attempt to any of them), and a login that ends a count ends it in every
    worker, so `auth.lockout_failures` is the limit in all, as with one process."""

    def __init__(self, peers: Peers, *args):
        super().__init__(*args)
        self.peers = peers

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        super().failed(user, address, now)
        self.peers.login_failed(user, address)

    def succeeded(self, user: str, address: str) -> None:
        counting = self.counting(user, address)
        super().succeeded(user, address)
        if counting:  # every worker counts the same failures: only then do the others count any
            self.peers.login_succeeded(user, address)

    def told(self, code: int, user: str, address: str) -> None:
        """What another worker saw, counted here as if seen here."""
        if code == LOGIN_FAILED_CODE:
            super().failed(user, address)
        else:
            super().succeeded(user, address)


async def listen_for_peers(spec: WorkerSpec, cancel: Callable[[int, int], Awaitable[None]],
                           forget_role: Callable[[int], None], throttle: SharedThrottle) -> asyncio.Server:
    """This worker's socket for the others: each connection brings one request, a CancelRequest
    another worker received for a session of this one (cancel(pid, key) acts on it), a role
    whose kept sessions must go (forget_role(oid)), or a login another worker refused or let in
    (for throttle)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT):
                head = await reader.readexactly(_REQUEST.size)
                size, code = _REQUEST.unpack(head)
                if code == m.CANCEL_REQUEST_CODE and size == CANCEL_SIZE:
                    request = decode_startup(head + await reader.readexactly(size - len(head)))
                    await cancel(request.pid, request.key)
                elif code == FORGET_ROLE_CODE and size == _FORGET.size:
                    _, _, oid = _FORGET.unpack(head + await reader.readexactly(size - len(head)))
                    forget_role(oid)
                elif code in (LOGIN_FAILED_CODE, LOGIN_SUCCEEDED_CODE) and _REQUEST.size < size <= _MAX_LOGIN:
                    user, address, _ = (await reader.readexactly(size - len(head))).split(b"\0")
                    throttle.told(code, user.decode("utf-8", "surrogatepass"), address.decode())
                else:
                    raise m.ProtocolViolation(f"unknown request {code} of {size} bytes")
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, m.ProtocolViolation) as exc:
            log.info("a request from another worker was not read: %s", exc)
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, peer_socket(spec.control_dir, spec.index))


class Workers:
    """The parent's side: reserve the addresses, run and supervise the workers, pass reloads on."""

    def __init__(self, config: Config):
        self.config = config
        self.count = config.workers
        self.addresses: list[tuple[str, int]] = []
        self._reserved: list[socket.socket] = []
        self._control_dir: str | None = None
        self._backend: EmbeddedTarget | None = None
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._channels: dict[int, asyncio.StreamWriter] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._sending: set[asyncio.Task] = set()  # reloads on their way to the workers
        self._asked: dict[int, list[asyncio.Future]] = {}  # expositions asked for, by worker

    def reserve(self) -> list[tuple[str, int]]:
        """Bind each listen address (SO_REUSEPORT, never listening): the ports are chosen here,
        once, and stay this process's while workers come and go. A name of several addresses
        (localhost) gets one port for all of them."""
        for listen in self.config.listen_addresses:
            port = listen.port
            for family, kind, proto, _, address in socket.getaddrinfo(
                    listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
                sock = socket.socket(family, kind, proto)
                self._reserved.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                host, port = sock.getsockname()[:2]
                self.addresses.append((host, port))
        return self.addresses

    async def start(self, backend: EmbeddedTarget | None) -> None:
        """Start every worker and return once all of them listen. Raises OSError when one
        exits first (its own error is on stderr)."""
        self._backend = backend
        self._control_dir = tempfile.mkdtemp(prefix="shiftguard-workers-")  # mode 0700
        started = [asyncio.get_running_loop().create_future() for _ in range(self.count)]
        self._tasks = [asyncio.create_task(self._supervise(index, started[index])) for index in range(self.count)]
        await asyncio.gather(*started)

    async def _supervise(self, index: int, started: asyncio.Future) -> None:
        """Run worker index, and again whenever it exits while the parent runs."""
        while not self._stopping:
            ready, code = await self._run(index, started)
            if self._stopping:
                return
            if not started.done():
                started.set_exception(OSError(f"worker {index} exited (status {code}) before it was listening"))
                return
            log.error("worker %d exited (status %s); starting it again", index, code)
            if not ready:
                await asyncio.sleep(RESTART_DELAY)

    async def _run(self, index: int, started: asyncio.Future) -> tuple[bool, int]:
        """One run of worker index, to its exit: whether it got as far as listening, and its
        exit status."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = self._processes[index] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.workers", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, start_new_session=True)  # a terminal's Ctrl-C reaches the parent only
        if self._stopping:  # started again as stop() began: it stops at once
            process.send_signal(signal.SIGTERM)
        reader, writer = await asyncio.open_connection(sock=ours)
        self._channels[index] = writer
        ready = False
        try:
            await send(writer, WorkerSpec(index, self.config, tuple(self.addresses), self._control_dir,
                                          self._backend))
            while (message := await receive(reader)) is not None:
                if message == READY:
                    ready = True
                    if not started.done():
                        started.set_result(None)
                    else:
                        log.warning("worker %d listens again", index)
                elif isinstance(message, tuple) and message[0] == METRICS:
                    for waiter in self._asked.pop(index, []):
                        if not waiter.done():
                            waiter.set_result(message[1])
        except OSError:
            pass  # the worker went away while it was being told its part
        finally:
            del self._channels[index]
            writer.close()
        return ready, await process.wait()

    def reload(self, config: Config) -> None:
        """Every worker applies the re-read configuration as one process would."""
        self.config = config  # and a worker started from now on gets it at its start
        for writer in self._channels.values():
            task = asyncio.get_running_loop().create_task(_send_quietly(writer, config))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def metrics(self) -> dict[int, str]:
        """Each worker's Prometheus exposition, of those that answer within METRICS_TIMEOUT."""
        loop = asyncio.get_running_loop()
        asked = {}
        for index, writer in list(self._channels.items()):
            asked[index] = loop.create_future()
            self._asked.setdefault(index, []).append(asked[index])
            await _send_quietly(writer, METRICS)
        answers = {}
        for index, future in asked.items():
            with contextlib.suppress(TimeoutError):
                answers[index] = await asyncio.wait_for(future, METRICS_TIMEOUT)
        return answers

    async def stop(self, grace: float) -> None:
        """SIGTERM to every worker (each drains its sessions for up to grace seconds), then
        SIGKILL to any still running; the reserved addresses and the workers' sockets go."""
        self._stopping = True
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for index, process in list(self._processes.items()):
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace + STOP_MARGIN)
            except TimeoutError:
                log.error("worker %d did not stop; killed", index)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._reserved:
            sock.close()
        if self._control_dir is not None:
            shutil.rmtree(self._control_dir, ignore_errors=True)


async def _send_quietly(writer: asyncio.StreamWriter, value) -> None:
    with contextlib.suppress(OSError):  # a worker that went away gets it when started again
        await send(writer, value)


class _Tagged(logging.Filter):
    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


async def _serve(channel: socket.socket) -> int:
    """A worker's life: receive its spec, serve as a Proxy until SIGTERM/SIGINT or until the
    parent is gone, applying each configuration the parent sends."""
    from .cli import setup_logging
    from .server import Proxy

    reader, writer = await asyncio.open_connection(sock=channel)
    spec: WorkerSpec | None = await receive(reader)
    if spec is None:
        return 1
    setup_logging(spec.config)
    for handler in logging.getLogger().handlers:  # each line says which worker wrote it
        handler.addFilter(_Tagged(spec.index))
    proxy = Proxy(spec.config, own_backend=spec.backend, worker=spec)
    stop, orphaned = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the parent re-reads, and sends it here

    async def follow() -> None:
        while (message := await receive(reader)) is not None:
            if message == METRICS:
                await send(writer, (METRICS, generate_latest(proxy.context.metrics.registry).decode()))
                continue
            try:
                proxy.reload(message)
            except (OSError, ValueError) as exc:  # the files changed again since the parent read them
                log.error("worker %d: reload refused: %s", spec.index, exc)
        orphaned.set()  # the parent is gone
        stop.set()

    try:
        await proxy.start()
        await send(writer, READY)
        follower = asyncio.create_task(follow())
        await stop.wait()
        follower.cancel()
    finally:
        await proxy.stop(grace=0 if not stop.is_set() else 10.0)
        # Its socket goes; when the parent was killed, the last worker out removes the
        # directory (while the parent runs, a worker started again needs it).
        with contextlib.suppress(OSError):
            os.unlink(peer_socket(spec.control_dir, spec.index))
            if orphaned.is_set():
                os.rmdir(spec.control_dir)
    return 0


def worker_main() -> int:
    """`python -m proxy.workers FD`: FD is the worker's end of its control channel."""
    from .cli import run_loop

    channel = socket.socket(fileno=int(sys.argv[1]))
    try:
        return run_loop(_serve(channel))
    except Exception as exc:  # the parent reports the exit; the reason is here
        print(f"shiftguard worker: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # the module proper, not this __main__ copy, is what the spec unpickles to
    from proxy.workers import worker_main as main

    sys.exit(main())
