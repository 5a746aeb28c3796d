"""A KRaft node run from Kafka's Maven jars: fetch, format, start, stop; alone, or one of a local cluster."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from broker import settings
from broker.settings import BrokerSettings
from bus.clients import kafka_answers, replication_for
from fleet.errors import FleetError

log = logging.getLogger(__name__)

POM = settings.HERE / "pom.xml"
LIBS_DIR = settings.WORK_DIR / "libs"
MIN_JAVA = 17


class BrokerError(FleetError):
    """Something the user must fix; the message says what, in one line."""


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise BrokerError(f"{POM} does not pin <kafka.version>")
    return match.group(1)


@dataclass
class StartResult:
    pid: int
    seconds: float
    already_running: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Quorum:
    """A node's place in a cluster of several: its id and every controller's (id, port).

    The voters are fixed when the cluster is formatted (a static quorum): every node of the local
    cluster is one, so three nodes keep a majority with one of them down.
    """

    node_id: int
    voters: tuple[tuple[int, int], ...]


class LocalBroker:
    """One broker process whose config, data, logs and pid file live in ``config.node_dir``.

    Without a ``quorum`` it is a single node that is its own controller quorum (`--standalone`).
    """

    def __init__(self, config: BrokerSettings | None = None, quorum: Quorum | None = None) -> None:
        self.config = config or BrokerSettings()
        self.quorum = quorum
        node = self.config.node_dir
        self.data_dir = node / "data"
        self.logs_dir = node / "logs"
        self.properties = node / "server.properties"
        self.pid_file = node / "broker.pid"
        self.cluster_id_file = node / "cluster.id"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.port}"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    # --- state ---------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of this node's broker if it is alive, cleaning up a stale pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_our_broker(pid, self.properties):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def answers_metadata(self, timeout_s: float = 2.0) -> bool:
        """True when kafka-python gets a metadata response from the broker."""
        return kafka_answers(self.bootstrap, timeout_s)

    # --- commands ------------------------------------------------------------------------

    def start(self) -> StartResult:
        started = time.monotonic()
        result = self.launch()
        if not result.already_running:
            self.wait_until_ready(result.pid, started)
            result.seconds = time.monotonic() - started
        return result

    def launch(self) -> StartResult:
        """Format the storage once and start the JVM, without waiting for it to answer (a node of a
        cluster cannot answer before a majority of its controllers runs)."""
        started = time.monotonic()
        pid = self.running_pid()
        if pid is not None:
            return StartResult(pid=pid, seconds=0.0, already_running=True)
        for port in (self.config.port, self.config.controller_port):
            if port_in_use(port):
                raise BrokerError(
                    f"port {port} is taken by another process, not this project's broker: stop it, "
                    f"choose other ports with BROKER_PORT/BROKER_CONTROLLER_PORT, or use that Kafka "
                    f"with KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
                )
        java = find_java(self.config.java_home)
        libs = self.libs_dir()
        self._write_properties()
        notes = []
        if self._format_storage_once(java, libs):
            notes.append(f"formatted storage in {self.data_dir}")
        pid = self._launch(java, libs)
        return StartResult(pid=pid, seconds=time.monotonic() - started, notes=notes)

    def stop(self, timeout_s: float = 30.0) -> float | None:
        """Stop the broker cleanly; seconds it took, or None if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return None
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not process_alive(pid), timeout_s):
            log.warning("broker pid %d did not stop in %.0f s; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_alive(pid), 10.0)
        self.pid_file.unlink(missing_ok=True)
        ports = (self.config.port, self.config.controller_port)
        if not wait_for(lambda: not any(port_in_use(p) for p in ports), 10.0):
            raise BrokerError(f"broker stopped but ports {ports} are still taken")
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, as a crash would; for tests of recovery."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_alive(pid), 10.0)
            self.pid_file.unlink(missing_ok=True)

    def reset(self) -> None:
        """Delete this node's data, logs and cluster id (the broker must be stopped)."""
        if self.running_pid() is not None:
            raise BrokerError("the broker is running: run `python -m broker stop` first")
        shutil.rmtree(self.config.node_dir, ignore_errors=True)

    def libs_dir(self) -> Path:
        """Kafka's jars: KAFKA_HOME/libs when given, else Maven's, fetched once."""
        if self.config.kafka_home is not None:
            libs = self.config.kafka_home / "libs"
            if not any(libs.glob("kafka_2.13-*.jar")):
                raise BrokerError(f"KAFKA_HOME={self.config.kafka_home} has no libs/kafka_2.13-*.jar")
            return libs
        fetch_jars()
        return LIBS_DIR

    # --- steps of start ------------------------------------------------------------------

    def _write_properties(self) -> None:
        self.config.node_dir.mkdir(parents=True, exist_ok=True)
        template = Template((settings.HERE / "server.properties").read_text())
        if self.quorum is None:
            node_id, nodes = 1, 1
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{self.config.controller_port}"
        else:
            node_id, nodes = self.quorum.node_id, len(self.quorum.voters)
            voters = ",".join(f"{voter}@127.0.0.1:{port}" for voter, port in self.quorum.voters)
            quorum = f"controller.quorum.voters={voters}"
        replicas, min_isr = replication_for(nodes)
        self.properties.write_text(
            template.substitute(
                node_id=node_id,
                quorum=quorum,
                port=self.config.port,
                controller_port=self.config.controller_port,
                data_dir=self.data_dir,
                replicas=replicas,
                min_isr=min_isr,
            )
        )

    def _cluster_id(self) -> str:
        if self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        cluster_id = new_cluster_id()
        self.cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id

    def _format_storage_once(self, java: str, libs: Path) -> bool:
        cluster_id = self._cluster_id()
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            formatted_for = _read_properties(meta).get("cluster.id")
            if formatted_for != cluster_id:
                raise BrokerError(
                    f"storage in {self.data_dir} was formatted for cluster {formatted_for}, but this node's "
                    f"cluster id is {cluster_id}: run `python -m broker reset` to wipe it (its topics are lost)"
                )
            return False
        result = subprocess.run(
            [
                java,
                *self._java_options(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties),
                # A single node makes itself the quorum; a cluster's voters are named in its properties.
                *(["--standalone"] if self.quorum is None else []),
            ],
            env=self._java_env(libs),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BrokerError(f"formatting storage in {self.data_dir} failed: {last[0]}")
        return True

    def _launch(self, java: str, libs: Path) -> int:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logs_dir / "kafka.out", "ab") as out:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.config.heap}",
                    f"-Xms{self.config.heap}",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    *self._java_options(),
                    "kafka.Kafka",
                    str(self.properties),
                ],
                env=self._java_env(libs),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal that started it must not kill it
                cwd=self.config.node_dir,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def wait_until_ready(self, pid: int, started: float) -> None:
        """Wait until the broker answers metadata requests, or raise saying why it did not."""
        deadline = started + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if not process_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited during start-up: {self._last_error()} (full log: python -m broker logs)"
                )
            if self.answers_metadata(timeout_s=1.0):
                return
            time.sleep(0.2)
        raise BrokerError(
            f"the broker did not answer within {self.config.start_timeout_s:.0f} s (log: python -m broker logs)"
        )

    def _last_error(self) -> str:
        lines = []
        for path in (self.log_file, self.logs_dir / "kafka.out"):
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        errors = [line for line in lines if " ERROR " in line or "Exception" in line]
        return (errors or lines or ["no log written"])[-1].strip()

    def _java_options(self) -> list[str]:
        return [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={settings.HERE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
        ]

    @staticmethod
    def _java_env(libs: Path) -> dict[str, str]:
        return {**os.environ, "CLASSPATH": f"{libs}/*"}


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as `kafka-storage random-uuid` prints."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka refuses ids that look like command-line flags
            return text


def find_java(java_home: Path | None) -> str:
    """The java binary (``java_home`` first, else on PATH), checked to be version 17 or newer."""
    java = str(java_home / "bin" / "java") if java_home else shutil.which("java")
    install = "install a JDK 17 or newer (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless)"
    if not java or not Path(java).exists():
        raise BrokerError(f"Java not found: {install}, or use Docker (docker compose up)")
    result = subprocess.run([java, "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise BrokerError(f"could not read the version of {java}: {install}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0" style
        major = int(match.group(2) or 0)
    if major < MIN_JAVA:
        raise BrokerError(
            f"Java {major} found at {java}, but Kafka {kafka_version()} needs Java {MIN_JAVA}+: {install}"
        )
    return java


def fetch_jars() -> bool:
    """Copy Kafka's runtime jars from Maven Central into LIBS_DIR; False if already there."""
    stamp = LIBS_DIR / ".pom-sha256"
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == pom_hash:
        return False
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            f"Maven is missing and no Kafka jars are cached in {LIBS_DIR}: install Maven "
            "(Debian/Ubuntu: sudo apt-get install maven), or set KAFKA_HOME to a Kafka install"
        )
    log.info("fetching Kafka %s jars from Maven Central into %s", kafka_version(), LIBS_DIR)
    settings.WORK_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=settings.WORK_DIR))
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line] or ["see mvn output"]
        raise BrokerError(f"Maven could not fetch Kafka's jars: {errors[0]}")
    (staging / ".pom-sha256").write_text(pom_hash + "\n")
    # Swap in the complete set at once, so an interrupted download never looks cached.
    shutil.rmtree(LIBS_DIR, ignore_errors=True)
    staging.rename(LIBS_DIR)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _is_our_broker(pid: int, properties: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return process_alive(pid)  # no /proc (macOS): trust the pid file while the process lives
    return b"kafka.Kafka" in cmdline and str(properties).encode() in cmdline


def process_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, exited but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def _read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}
