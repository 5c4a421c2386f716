"""The broker's side of a Kafka SASL login, for ``tools/tcp_proxy.py --sasl-user``.

The local broker (Tansu 0.6) keeps no users, so it refuses every SASL login and a
login that succeeds cannot be tested against it. The proxy, in front of it, does
the login the way Apache Kafka does (KIP-152: ApiVersions, SaslHandshake v1, then
SaslAuthenticate requests) and, once the client is in, forwards its requests to
the broker untouched (and the answers back). What it checks is real: the client's PLAIN
credentials (RFC 4616), or its SCRAM-SHA-256/512 proof (RFC 5802, RFC 7677),
against one user; a wrong password or user gets Apache Kafka's refusal, error
SASL_AUTHENTICATION_FAILED (58) with its message, and the connection is closed
(as Apache Kafka does, 100 ms later). With a session lifetime, the client must log
in again on the open connection before it ends (KIP-368, see forward_requests).
The ApiVersions request goes to the broker and its answer back to the client,
so the client sees the broker's versions. Only what kafka-python sends is
spoken: a SaslHandshake v0 (unframed tokens) or any other request before the
login ends the connection.

The requests and responses are read and written with kafka-python's own protocol
classes: this is test tooling next to the client it serves, not a broker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from kafka.protocol.sasl import (SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
                                 SaslHandshakeResponse)

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *SCRAM_HASHES)
SCRAM_ITERATIONS = 4096
# Where tcp_proxy.py --sasl-user reads the user's password (not from its command
# line, which ps shows).
PASSWORD_VARIABLE = "TCP_PROXY_SASL_PASSWORD"
# Apache Kafka closes a connection whose login failed only after this delay
# (connection.failed.authentication.delay.ms, 100 ms by default, KIP-306), so the
# client reads the refusal before the connection ends.
FAILED_LOGIN_CLOSE_DELAY = 0.1


class LoginFailed(Exception):
    """The client's credentials are wrong (Apache Kafka's message)."""


@dataclass
class SaslUser:
    name: str
    password: str
    mechanisms: tuple[str, ...] = MECHANISMS
    session_lifetime_ms: int = 0  # 0: sessions never expire (see forward_requests)


@dataclass
class ScramServer:
    """One SCRAM exchange, server side: client-first -> server-first, client-final ->
    server-final (RFC 5802 section 3)."""

    user: SaslUser
    mechanism: str
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _client_first_bare: str = ""
    _server_first: str = ""

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, SCRAM_HASHES[self.mechanism]).digest()

    def _refused(self) -> LoginFailed:
        return LoginFailed("Authentication failed during authentication due to invalid credentials with SASL "
                           f"mechanism {self.mechanism}")

    def step(self, token: bytes) -> tuple[bytes, bool]:
        """The answer to the client's next message, and whether the login is done."""
        if not self._client_first_bare:
            return self._first(token), False
        return self._final(token), True

    def _first(self, client_first: bytes) -> bytes:
        text = client_first.decode("utf-8")
        if not text.startswith(("n,,", "y,,")):
            raise self._refused()
        self._client_first_bare = text[3:]
        fields = _attributes(self._client_first_bare)
        name = fields.get("n", "").replace("=2C", ",").replace("=3D", "=")
        if name != self.user.name or "r" not in fields:
            raise self._refused()
        self.nonce = fields["r"] + self.nonce
        self._server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={SCRAM_ITERATIONS}"
        return self._server_first.encode()

    def _final(self, client_final: bytes) -> bytes:
        text = client_final.decode("utf-8")
        without_proof, _, proof = text.rpartition(",p=")
        if _attributes(without_proof).get("r") != self.nonce:
            raise self._refused()
        salted = hashlib.pbkdf2_hmac(SCRAM_HASHES[self.mechanism], self.user.password.encode(), self.salt,
                                     SCRAM_ITERATIONS)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(SCRAM_HASHES[self.mechanism], client_key).digest()
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = self._hmac(stored_key, auth_message)
        try:
            sent_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        except ValueError:
            raise self._refused() from None
        if not hmac.compare_digest(hashlib.new(SCRAM_HASHES[self.mechanism], sent_key).digest(), stored_key):
            raise self._refused()
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature)


def check_plain(user: SaslUser, token: bytes) -> None:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd``; the authzid, if any, must be
    the user itself, as Apache Kafka requires."""
    parts = token.split(b"\0")
    if len(parts) != 3:
        raise LoginFailed("Authentication failed: Invalid SASL/PLAIN response: expected 3 tokens")
    authzid, name, password = (part.decode("utf-8", "replace") for part in parts)
    if authzid not in ("", name):
        raise LoginFailed("Authentication failed: Client requested an authorization id that is different from "
                          "username")
    if not (hmac.compare_digest(name.encode(), user.name.encode())
            and hmac.compare_digest(password.encode(), user.password.encode())):
        raise LoginFailed("Authentication failed: Invalid username or password")


def _attributes(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _reply(response: Any, version: int, correlation_id: int) -> bytes:
    response.API_VERSION = version  # before with_header: kafka-python's encode(version=) fails on responses
    response.with_header(correlation_id=correlation_id)
    return bytes(response.encode(header=True, framed=True))


async def login(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                broker_reader: asyncio.StreamReader, broker_writer: asyncio.StreamWriter, user: SaslUser) -> bool:
    """Run the login on a new client connection: True once the client is in (the
    caller then forwards its requests, see :func:`forward_requests`), False when it
    is refused or breaks the rules (the caller closes the connection)."""
    while True:
        frame = await _read_frame(client_reader)
        if struct.unpack(">h", frame[:2])[0] != API_VERSIONS:
            return await _authenticate(frame, client_reader, client_writer, user)
        broker_writer.write(struct.pack(">i", len(frame)) + frame)
        await broker_writer.drain()
        answer = await _read_frame(broker_reader)
        client_writer.write(struct.pack(">i", len(answer)) + answer)
        await client_writer.drain()


async def forward_requests(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                           broker_writer: asyncio.StreamWriter, user: SaslUser) -> None:
    """After the login, the client's requests to the broker, frame by frame, until
    either side closes. As Apache Kafka with ``connections.max.reauth.ms``
    (KIP-368), when ``user.session_lifetime_ms`` is set: a SaslHandshake starts a
    re-authentication, answered here, that opens a new session; a session that
    expired ends the connection at the client's next other request. Each is
    written to stderr (the proxy's log)."""
    def expiry() -> float:
        return time.monotonic() + user.session_lifetime_ms / 1000 if user.session_lifetime_ms else math.inf

    expires, again = expiry(), 0
    try:
        while True:
            frame = await _read_frame(client_reader)
            if struct.unpack(">h", frame[:2])[0] == SASL_HANDSHAKE:
                if not await _authenticate(frame, client_reader, client_writer, user):
                    return
                expires, again = expiry(), again + 1
                print(f"reautenticación SASL de {user.name} ({again}.ª en esta conexión)", file=sys.stderr,
                      flush=True)
                continue
            if time.monotonic() > expires:
                print(f"sesión SASL de {user.name} caducada sin reautenticarse: conexión cerrada", file=sys.stderr,
                      flush=True)
                return
            broker_writer.write(struct.pack(">i", len(frame)) + frame)
            await broker_writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        broker_writer.close()
        client_writer.close()


async def _authenticate(frame: bytes, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                        user: SaslUser) -> bool:
    """One SASL exchange from its SaslHandshake (``frame``) to the end of its
    SaslAuthenticate requests: True when the client is in."""
    api_key, version, correlation_id = struct.unpack(">hhi", frame[:8])
    if api_key != SASL_HANDSHAKE or version < 1:
        return False  # as Apache Kafka: anything else before the login ends the connection
    asked = SaslHandshakeRequest.decode(frame, version=version, header=True).mechanism
    known = asked in user.mechanisms
    client_writer.write(_reply(SaslHandshakeResponse(
        error_code=0 if known else UNSUPPORTED_SASL_MECHANISM, mechanisms=list(user.mechanisms)),
        version, correlation_id))
    await client_writer.drain()
    if not known:
        await asyncio.sleep(FAILED_LOGIN_CLOSE_DELAY)
        return False
    scram = ScramServer(user, asked) if asked in SCRAM_HASHES else None
    while True:
        frame = await _read_frame(client_reader)
        api_key, version, correlation_id = struct.unpack(">hhi", frame[:8])
        if api_key != SASL_AUTHENTICATE:
            return False
        token = SaslAuthenticateRequest.decode(frame, version=version, header=True).auth_bytes
        try:
            if scram is None:
                check_plain(user, token)
                answer, done = b"", True
            else:
                answer, done = scram.step(token)
        except (LoginFailed, UnicodeDecodeError) as exc:
            message = str(exc) if isinstance(exc, LoginFailed) else "Authentication failed"
            client_writer.write(_reply(SaslAuthenticateResponse(
                error_code=SASL_AUTHENTICATION_FAILED, error_message=message, auth_bytes=b"",
                session_lifetime_ms=0), version, correlation_id))
            await client_writer.drain()
            await asyncio.sleep(FAILED_LOGIN_CLOSE_DELAY)
            return False
        client_writer.write(_reply(SaslAuthenticateResponse(
            error_code=0, error_message=None, auth_bytes=answer,
            session_lifetime_ms=user.session_lifetime_ms if done else 0), version, correlation_id))
        await client_writer.drain()
        if done:
            return True
