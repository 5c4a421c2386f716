"""A TCP proxy, optionally adding a fixed delay each way.

    python tools/tcp_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:27017 --delay-ms 20

* The benchmark puts it in front of MongoDB with 20 ms each way, like a database in
  another region (a 40 ms round trip, as a remote Atlas cluster): every chunk of
  bytes is forwarded ``delay`` after it arrived, in order, without holding back the
  next chunk, so latency goes up and bandwidth does not go down.
* The fault tests put it in front of the broker and stop and start it: to the
  clients that is a broker restart that keeps its data, as Apache Kafka does.
* With ``--tls-cert`` and ``--tls-key`` it speaks TLS to its clients and plain TCP
  to the target: a TLS listener in front of the local broker, which has none, so
  the scripts' ``KAFKA_SECURITY_PROTOCOL=SSL`` path can be tested; with
  ``--tls-client-ca`` too, it accepts only clients with a certificate signed by
  that CA (mutual TLS, as Aiven's Kafka asks for).
* With ``--sasl-user`` (the password in the environment variable
  ``TCP_PROXY_SASL_PASSWORD``) it asks each client for a SASL login as Apache Kafka
  does (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; see tools/kafka_sasl.py) before
  forwarding anything: a login that succeeds, which the local broker (it keeps no
  users) cannot give, so the scripts' ``SASL_PLAINTEXT``/``SASL_SSL`` path is tested
  to the end; with ``--tls-cert`` too, the login runs inside TLS (``SASL_SSL``);
  with ``--sasl-session-ms`` too, sessions expire and clients must log in again on
  their open connections (KIP-368), as with Apache Kafka's ``connections.max.reauth.ms``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.arguments import at_least, tool_parser  # noqa: E402
from tools.kafka_sasl import MECHANISMS, PASSWORD_VARIABLE, SaslUser, forward_requests, login  # noqa: E402


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
        writer.close()


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int, delay: float,
                tls: ssl.SSLContext | None = None, sasl: SaslUser | None = None) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        if sasl is not None:
            try:
                logged_in = await login(client_reader, client_writer, server_reader, server_writer, sasl)
            except (OSError, asyncio.IncompleteReadError, ValueError, struct.error) as exc:
                if not (isinstance(exc, asyncio.IncompleteReadError) and not exc.partial):  # not a plain close
                    print(f"login SASL interrumpido: {exc!r}", file=sys.stderr, flush=True)
                logged_in = False
            if not logged_in:
                client_writer.close()
                server_writer.close()
                return
            await asyncio.gather(forward_requests(client_reader, client_writer, server_writer, sasl),
                                 _pipe(server_reader, client_writer, delay), return_exceptions=True)
            return
        await asyncio.gather(_pipe(client_reader, server_writer, delay), _pipe(server_reader, client_writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, listen_host, listen_port, ssl=tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = tool_parser("Proxy TCP con latencia fija en cada sentido.")
    parser.add_argument("--listen", required=True, metavar="HOST:PUERTO", help="dónde escuchar")
    parser.add_argument("--target", required=True, metavar="HOST:PUERTO", help="destino")
    parser.add_argument("--delay-ms", type=at_least(0, float), default=0.0, metavar="MS",
                        help="retardo en cada sentido, en ms")
    parser.add_argument("--tls-cert", metavar="FICHERO", help="certificado PEM: hablar TLS con los clientes")
    parser.add_argument("--tls-key", metavar="FICHERO", help="clave privada PEM del certificado")
    parser.add_argument("--tls-client-ca", metavar="FICHERO",
                        help="exigir a cada cliente un certificado firmado por esta CA (PEM)")
    parser.add_argument("--sasl-user", metavar="NOMBRE",
                        help=f"pedir a cada cliente un login SASL de este usuario, con la contraseña de la "
                             f"variable {PASSWORD_VARIABLE}, como Apache Kafka")
    parser.add_argument("--sasl-mechanisms", default=",".join(MECHANISMS), metavar="LISTA",
                        help="mecanismos SASL que se aceptan, separados por comas")
    parser.add_argument("--sasl-session-ms", type=at_least(0, int), default=0, metavar="MS",
                        help="duración de cada sesión SASL (connections.max.reauth.ms de Apache Kafka): el cliente "
                             "debe volver a autenticarse antes de que acabe; 0: sin límite")
    args = parser.parse_args()
    sasl = None
    if args.sasl_user:
        mechanisms = tuple(m for m in args.sasl_mechanisms.split(",") if m)
        if not os.environ.get(PASSWORD_VARIABLE) or not set(mechanisms) <= set(MECHANISMS):
            parser.error(f"--sasl-user necesita la variable {PASSWORD_VARIABLE}, y --sasl-mechanisms solo "
                         f"admite {', '.join(MECHANISMS)}")
        sasl = SaslUser(args.sasl_user, os.environ[PASSWORD_VARIABLE], mechanisms, args.sasl_session_ms)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.tls_client_ca)
    listen_host, listen_port = args.listen.rsplit(":", 1)
    target_host, target_port = args.target.rsplit(":", 1)
    asyncio.run(serve(listen_host, int(listen_port), target_host, int(target_port), args.delay_ms / 1000, tls,
                      sasl))


if __name__ == "__main__":
    main()
