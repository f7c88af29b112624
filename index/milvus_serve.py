"""Milvus Lite served on a local TCP port, so several processes share one .db file.

    python -m rag milvus-lite --db data/milvus.db --port 19530     # then --milvus-uri http://127.0.0.1:19530

Opened as a file (`--milvus-uri data/milvus.db`), Milvus Lite serves the one process that
opened it, and that process loads the whole collection into memory before its first read or
write (about 5 s per 100k chunks): every `rag index` run pays the load, and it cannot run while
the chat has the file open. Served here, Lite's core (the same binary) listens on a port and
keeps the collection loaded between clients: `rag index`, `rag ask` and the chat all connect
by URI, as they would to a Milvus server. Lite has no authentication, so it listens on the
loopback address unless told otherwise.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from index.milvus_store import INSTALL_HINT, MilvusLiteBusy, is_lite_uri, lock_lite

logger = logging.getLogger(__name__)

DEFAULT_PORT = 19530
START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: an address only this machine reaches."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _lite_binary() -> Path:
    """The Milvus Lite server binary shipped in the milvus-lite wheel."""
    try:
        from milvus_lite.server import BIN_PATH
    except ImportError as exc:
        raise ImportError(f"serving Milvus Lite needs milvus-lite: {INSTALL_HINT}") from exc
    binary = Path(BIN_PATH) / "milvus"
    if not binary.is_file():
        raise ImportError(f"the milvus-lite package has no server binary at {binary}")
    return binary


def _death_signal():
    """A function for the child to run before exec: be sent SIGTERM when its parent dies.

    Without it a kill -9 of the serving process would leave Lite running on the file with
    nobody holding the file's locks, so a direct open could start a second core on it. prctl
    is looked up here, before the fork: the child only calls it. (Linux: PR_SET_PDEATHSIG
    follows the thread that started the child, so start() belongs on a long-lived thread.)
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no such guard
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _lock_lite_file(path: Path) -> IO[str]:
    """Milvus Lite's own lock on the file, so a direct open of it is refused while served."""
    handle = open(path.parent / f".{path.name}.lock", "a", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise MilvusLiteBusy(f"{path} is open in another Milvus Lite process") from None
    return handle


class LiteServer:
    """One .db file served by Milvus Lite's binary at http://host:port until stopped."""

    def __init__(self, db: Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        if not 1 <= port <= 65_535:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        if not host.strip():
            raise ValueError("host is empty: give an address such as 127.0.0.1")
        is_lite_uri(str(db))  # the .db name rules, with their message
        self.db = Path(db).expanduser().resolve()
        if not self.db.parent.is_dir():
            raise ValueError(f"folder of the Milvus Lite file does not exist: {self.db.parent}")
        self.host, self.port = host, port
        self._process: subprocess.Popen | None = None
        self._locks: list[IO[str]] = []

    @property
    def uri(self) -> str:
        """The URI clients give as --milvus-uri."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> LiteServer:
        """Start serving; ValueError when the port is taken, MilvusLiteBusy when the file is."""
        if _port_open(self.host, self.port):
            raise ValueError(f"port {self.port} on {self.host} is already in use")
        binary = _lite_binary()
        self._locks = [lock_lite(self.db)]
        try:
            self._locks.append(_lock_lite_file(self.db))
            env = {
                **os.environ,
                "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            }
            for attempt in range(START_ATTEMPTS):
                self._process = subprocess.Popen(
                    [str(binary), str(self.db), f"{self.host}:{self.port}", "ERROR"],
                    env=env, cwd=str(self.db.parent), preexec_fn=_death_signal(),
                )  # fmt: skip
                try:
                    self._wait_listening()
                    break
                except RuntimeError:
                    # Lite's core now and then aborts at start (status -6, seen once in CI).
                    if attempt + 1 == START_ATTEMPTS or self._process.poll() is None:
                        raise
                    logger.warning("Milvus Lite aborted while starting; starting it again")
                    time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        if not is_loopback(self.host):
            logger.warning("Milvus Lite has no authentication: anyone who reaches %s can read "
                           "and change the index", self.uri)  # fmt: skip
        logger.info("Milvus Lite serving %s at %s", self.db, self.uri)
        return self

    def _wait_listening(self) -> None:
        """Return once the port accepts connections; RuntimeError if the server exits first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(self.host, self.port):
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"Milvus Lite exited with status {code} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Milvus Lite did not listen on {self.uri} within "
                                   f"{START_TIMEOUT_S:.0f} s")  # fmt: skip
            time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def wait(self) -> int:
        """Block until the server exits; its exit status."""
        return self._process.wait() if self._process is not None else 0

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and release the file (idempotent)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        for handle in self._locks:
            handle.close()
        self._locks = []

    def __enter__(self) -> LiteServer:
        return self if self._process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
