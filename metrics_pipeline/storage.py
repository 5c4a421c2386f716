"""MongoDB side: connecting, indexes and idempotent bulk writes.

Every write is one ``insert_many(ordered=False)`` per collection and batch. The
documents carry deterministic ids (see :mod:`metrics_pipeline.documents`), so a
duplicate-key error (code 11000) means "already stored" and is an answer, not a
failure, once a read finds the document with that ``_id``. When none is there, the
key that clashed is another unique index (one a user added, e.g. on
``{server_id, timestamp_utc}``): after one more try (the document may have been
deleted in between) it is *rejected*, below. What happens to the other answers:

* a document MongoDB cannot encode or refuses (too deep, an integer beyond 64 bits,
  a key it does not accept...) is *rejected*: the raw path dead-letters it with the
  server's reason, so one bad message never blocks the batch;
* a network error, a timeout, an election, a server shutting down, a lock timeout,
  a full disk are *transient* (for one document as for the whole call):
  :class:`StorageUnavailable` is raised and the caller retries the whole batch
  (the retry is idempotent, for the same reason as a replay);
* a *write concern error* (the primary applied the write but could not confirm it
  as durable: a replication timeout, a step-down) is transient too: such a write
  may still be rolled back, so it is never taken as stored (and no offset is
  committed for it) until a retry is acknowledged. A write concern the deployment
  can never satisfy is fatal;
* anything else (authentication, authorisation) is :class:`StorageFatal`: retrying
  cannot cure it, so the consumer stops without committing.

Every write asks for ``j: true`` (on top of the URI's ``w``, e.g. Atlas's
``w=majority``): MongoDB acknowledges it only once it is in the on-disk journal.
Offsets are committed right after the acknowledgement, so a write acknowledged
from memory and lost in a crash of the database (``kill -9`` of a
standalone ``mongod`` loses up to its last 100 ms of such writes) would be a message
lost for good. Atlas already journals majority writes; a standalone server, like the
compose ``mongo``, does not unless asked. The fault tests kill the database right
after a commit to check this.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import warnings
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import bson
import pymongo
from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING, MongoClient, ReadPreference, WriteConcern, uri_parser
from pymongo.collection import Collection
from pymongo.errors import (BulkWriteError, ConfigurationError, ConnectionFailure, InvalidURI,
                            OperationFailure, PyMongoError)

from metrics_pipeline.documents import reincarnated_id
from metrics_pipeline.errors import StartupError
from metrics_pipeline.redaction import describe_mongodb_uri, uri_options
from metrics_pipeline.settings import MongoSettings, SettingsError, no_password_prompt
from metrics_pipeline.startup import NotReady, wait_for_server

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
REFUSED = "MongoDB rechazó el documento: "  # a document's own error: the dead-letter reason starts so
UNSATISFIABLE_WRITE_CONCERN = {79, 100}  # UnknownReplWriteConcern, UnsatisfiableWriteConcern
UNAUTHORIZED = 13
AUTH_ERROR_CODES = {UNAUTHORIZED, 18, 8000}  # Unauthorized, AuthenticationFailed, Atlas "AtlasError"
# What to do about an Unauthorized: the user of the URI may read but not write (e.g. an
# Atlas user with the "read" role); retrying cannot cure it.
UNAUTHORIZED_HINT = ("; el usuario de MONGODB_URI necesita permiso de escritura en la base de datos "
                     "(p. ej. el rol readWrite)")
# Errors of a moment, whole call or one document alike: the same write is retried
# (WARNING lines, nothing committed meanwhile) instead of a valid message being
# dead-lettered or the consumer stopping. MongoDB's names (src/mongo/base/error_codes.yml):
TRANSIENT_CODES = {
    # HostUnreachable, HostNotFound, NetworkTimeout, SocketException, NetworkInterfaceExceededTimeLimit
    6, 7, 89, 9001, 202,
    # ShutdownInProgress, InterruptedAtShutdown, PrimarySteppedDown, NotWritablePrimary,
    # LegacyNotPrimary, InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary
    91, 11600, 189, 10107, 10058, 11602, 13435, 13436,
    # MaxTimeMSExpired, ExceededTimeLimit, LockTimeout, LockBusy, WriteConflict, ConflictingOperationInProgress
    50, 262, 24, 46, 112, 117,
    # FailedToSatisfyReadPreference, ReadConcernMajorityNotAvailableYet, StaleEpoch, StaleConfig, StaleShardVersion
    133, 134, 150, 13388, 63,
    14031,  # OutOfDiskSpace: writes go on once the disk has room again
}
MAX_BSON_SIZE = 16 * 1024 * 1024
# Documents read back by _id (the owners of duplicate ids: after a crash, a whole
# batch of a replay) are asked for this many ids per query. On MongoDB each query is
# an index lookup, and a replay is rare, so the extra round trips cost little; the
# local SecantusDB answers an $in in time quadratic in its length (measured: 200 ids
# in 0.09 s, 2,000 in 7 s), which made a stop during a replay exceed 10 s.
FIND_IDS_PER_QUERY = 200
# A dead letter keeps the record's bytes; a broker allowing records near 16 MB would
# make it too large for MongoDB, and the partition would stop at it. Beyond these
# sizes the bytes are cut, and the document says so (value_truncated, value_size).
MAX_DEADLETTER_BYTES = {"value": 15 * 1024 * 1024, "key": 512 * 1024}
# Writes get no overall deadline on purpose: a large batch to a distant cluster may
# take a while. A MongoDB that is down fails server selection within
# SERVER_SELECTION_MS, and a connection that hangs fails after SOCKET_TIMEOUT_MS.
SERVER_SELECTION_MS = 5000
SOCKET_TIMEOUT_MS = 60000
# pymongo checks the server every HEARTBEAT_MS; a check that times out cancels the
# operations in flight. A MongoDB that hangs (a frozen process, packets dropped on
# the way) is so noticed within HEARTBEAT_MS + SERVER_SELECTION_MS, ~7 s, instead of
# the driver's default 10 + 5 s: a stop during such a hang exits within the 10 s of
# SPEC §5 (tests/integration/test_fault_mongodb_outage.py).
HEARTBEAT_MS = 2000
# Closing a client ends its sessions on the server (endSessions), and with a MongoDB
# that does not answer that waits SERVER_SELECTION_MS. The server expires unused
# sessions by itself, so closing waits at most CLOSE_SECONDS: a stop during an outage
# stays within the 10 s of SPEC §5.
CLOSE_SECONDS = 1.0
STARTUP_OPERATION_SECONDS = 30.0
PING_ATTEMPT_SECONDS = 3.0  # one WARNING per failed attempt at start-up


def journaled(given: WriteConcern) -> WriteConcern:
    """The URI's write concern (``w``, ``wtimeoutMS``) plus ``j: true`` (see the module
    doc: acknowledged means on disk). ``w=0`` would acknowledge nothing and is dropped;
    ``fsync`` cannot go with ``j`` and asks for no more than it."""
    document = {key: value for key, value in given.document.items() if key not in ("j", "fsync")}
    if document.get("w") == 0:
        del document["w"]
    return WriteConcern(**document, j=True)


class StorageUnavailable(Exception):
    """MongoDB did not answer; retrying the same write is safe."""


class StorageFatal(Exception):
    """MongoDB refused in a way retrying cannot cure."""


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """A one-line reason, without pymongo's topology dump, led by the server's name
    for the error when it gave one ("NotWritablePrimary: not primary")."""
    text = str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0]
    text = text.split(", full error:")[0]
    text = " ".join(text.split()) or type(exc).__name__
    details = getattr(exc, "details", None)
    name = details.get("codeName") if isinstance(details, dict) else None
    if isinstance(name, str) and name and name not in text:
        text = f"{name}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify(exc: PyMongoError) -> Exception:
    """Map a pymongo error to StorageUnavailable or StorageFatal."""
    if isinstance(exc, ConnectionFailure):
        return StorageUnavailable(short_reason(exc))
    if isinstance(exc, OperationFailure):
        if exc.code in AUTH_ERROR_CODES:
            return _refused("la operación", short_reason(exc), exc.code)
        if exc.code in TRANSIENT_CODES or exc.has_error_label("RetryableWriteError"):
            return StorageUnavailable(short_reason(exc))
        return _refused("la operación", short_reason(exc), exc.code)
    return StorageUnavailable(short_reason(exc))


def sort_write_errors(details: Mapping[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """What the answer to an unordered ``insert_many`` that failed in part means
    (a BulkWriteError's ``details``): (duplicate index -> server message, rejected
    index -> reason). A document's error of a moment (a lock timeout, a full disk, a
    step-down) is the whole write's: StorageUnavailable, so the batch is retried and
    no valid message is dead-lettered for it; an authorisation error, StorageFatal."""
    duplicates: dict[int, str] = {}
    rejected: dict[int, str] = {}
    for error in details.get("writeErrors", []):
        index, code = error["index"], error.get("code")
        if code == DUPLICATE_KEY:
            duplicates[index] = f"{REFUSED}{error.get('errmsg', code)}"
        elif code in TRANSIENT_CODES:
            raise StorageUnavailable(error.get("errmsg", str(code)))
        elif code in AUTH_ERROR_CODES:
            raise _refused("la escritura", error.get("errmsg", code), code)
        else:
            rejected[index] = f"{REFUSED}{error.get('errmsg', code)}"
    concern_errors = details.get("writeConcernErrors") or []
    if concern_errors:  # see the module doc: not stored until a retry says so
        error = concern_errors[0]
        why = error.get("errmsg", error.get("code"))
        if error.get("code") in UNSATISFIABLE_WRITE_CONCERN:
            raise StorageFatal(f"MongoDB no puede cumplir el write concern pedido: {why}")
        raise StorageUnavailable(f"write concern no cumplido ({why})")
    return duplicates, rejected


def _refused(what: str, reason: Any, code: int | None) -> StorageFatal:
    """MongoDB refused ``what`` for good; an Unauthorized also says what to do."""
    hint = UNAUTHORIZED_HINT if code == UNAUTHORIZED else ""
    return StorageFatal(f"MongoDB rechazó {what}: {reason}{hint}")


# What pymongo raises for a URI it cannot use at all.
_BAD_URI = (InvalidURI, ConfigurationError, ValueError, TypeError)


def _ignores_an_option(warning: warnings.WarningMessage) -> bool:
    """A warning of pymongo's URI parser: an option it will go on without."""
    return warning.category is UserWarning and "uri_parser" in warning.filename


def open_client(settings: MongoSettings, app_name: str) -> MongoClient:
    """Build the client (no network yet). A malformed URI is a settings error, and so
    is an option pymongo would only warn about and then ignore (``tls=maybe``, an
    unknown or repeated option): an ignored ``tls`` or ``authMechanism`` is not what
    the user asked for."""
    _check_client_key(settings.uri)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(
                settings.uri, connect=False, appname=app_name, tz_aware=True,
                serverSelectionTimeoutMS=SERVER_SELECTION_MS, connectTimeoutMS=SERVER_SELECTION_MS,
                heartbeatFrequencyMS=HEARTBEAT_MS,
                socketTimeoutMS=SOCKET_TIMEOUT_MS)
        except _BAD_URI as exc:
            raise SettingsError("MONGODB_URI (--mongodb-uri)", f"no es una URI de MongoDB válida: {exc}") from None
        except ssl.SSLError as exc:  # a file there, but not the PEM certificate or key TLS expects
            raise SettingsError("MONGODB_URI (--mongodb-uri)", "un fichero de las opciones TLS de la URI (tlsCAFile, "
                                f"tlsCertificateKeyFile) no es un PEM que TLS pueda cargar ({exc})") from None
        except OSError as exc:  # a file an option names (tlsCAFile, tlsCertificateKeyFile) cannot be read
            option = re.search(r"The (\w+) file", str(exc))  # pymongo names the option in lower case
            which = f"la opción {option.group(1)}" if option else "una opción de la URI"
            raise SettingsError("MONGODB_URI (--mongodb-uri)", f"no se puede leer el fichero que nombra {which} "
                                f"({os.strerror(exc.errno) if exc.errno else exc})") from None
    ignored = []
    for warning in caught:
        if _ignores_an_option(warning):
            ignored.append(str(warning.message))
        else:  # e.g. a deprecated option that still works: shown as it would have been
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if ignored:
        client.close()
        names = _options_pymongo_ignores(settings.uri)
        named = f" ({', '.join(names)})" if names else ""
        raise SettingsError("MONGODB_URI (--mongodb-uri)", f"opción no válida en la URI{named}, que pymongo "
                            "ignoraría: " + "; ".join(dict.fromkeys(ignored)))
    return client


def _check_client_key(uri: str) -> None:
    """A ``tlsCertificateKeyFile`` whose key is encrypted, without
    ``tlsCertificateKeyFilePassword``: pymongo would let OpenSSL ask for the password
    on the terminal and wait (or fail with "Invalid argument" without one)."""
    options = {name.lower(): value for name, value in uri_options(uri)}
    path = options.get("tlscertificatekeyfile")
    if not path or "tlscertificatekeyfilepassword" in options or not os.path.isfile(path):
        return  # nothing to check, or pymongo says what is wrong with it
    try:
        ssl.create_default_context().load_cert_chain(path, password=no_password_prompt)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError("MONGODB_URI (--mongodb-uri)", f"TLS no puede usar el fichero de tlsCertificateKeyFile "
                            f"({exc}): debe tener el certificado y su clave en PEM; una clave cifrada necesita "
                            "además tlsCertificateKeyFilePassword en la URI") from None


def _options_pymongo_ignores(uri: str) -> list[str]:
    """The names of the URI options pymongo warns about, each one checked alone
    (its message does not always say which: "Unknown option. Did you mean ..."), and
    of those given twice. Names only: a value may be a secret."""
    names: list[str] = []
    seen: set[str] = set()
    for name, value in uri_options(uri):
        if name.lower() in seen:
            names.append(name)
            continue
        seen.add(name.lower())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                uri_parser.parse_uri("mongodb://localhost/?" + urlencode({name: value}), warn=True)
                refused = False
            except _BAD_URI:
                refused = True
        if refused or any(_ignores_an_option(warning) for warning in caught):
            names.append(name)
    return list(dict.fromkeys(names))


def wait_until_reachable(client: MongoClient, settings: MongoSettings, stop: threading.Event) -> None:
    """Ping until MongoDB answers (:func:`~metrics_pipeline.startup.wait_for_server`);
    credentials MongoDB refuses are a StartupError at once."""
    label = describe_mongodb_uri(settings.uri)

    def attempt(seconds_left: float) -> None:
        try:
            _ping(client, max(min(PING_ATTEMPT_SECONDS, seconds_left), 0.5))
        except OperationFailure as exc:
            if exc.code in AUTH_ERROR_CODES:
                raise StartupError(f"MongoDB ({label}) rechazó las credenciales: {short_reason(exc)}") from None
            raise NotReady(short_reason(exc)) from None
        except PyMongoError as exc:
            raise NotReady(short_reason(exc)) from None

    wait_for_server(f"MongoDB ({label})", attempt, stop, settings.startup_timeout, "no se ha leído ni guardado nada")


def _ping(client: MongoClient, seconds: float) -> None:
    with pymongo.timeout(seconds):
        client.admin.command("ping")


@dataclass(frozen=True)
class RawOutcome:
    """What became of one raw document of a batch."""

    existing: dict[str, Any] | None  # the document already stored under the same _id
    rejected: str | None             # MongoDB cannot store it: why


_INSERTED = RawOutcome(existing=None, rejected=None)


def _encoding_problem(document: dict[str, Any]) -> str | None:
    try:
        size = len(bson.encode(document))
    except (bson.errors.InvalidDocument, bson.errors.InvalidStringData, OverflowError,
            UnicodeEncodeError, ValueError, TypeError) as exc:
        return f"MongoDB no puede guardar el documento: {short_reason(exc)}"
    if size > MAX_BSON_SIZE:
        return f"el documento ocupa {size} bytes, más que el máximo de MongoDB ({MAX_BSON_SIZE})"
    return None


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, (bytes, Binary)) else value


def uri_database(client: MongoClient) -> str | None:
    """The database in the URI's path (``mongodb+srv://…/metrics?…``), if any. Other
    programs (mongosh, Compass) open it by default; pymongo authenticates there when
    the URI has no authSource; the data go to MONGODB_DATABASE all the same."""
    try:
        return client.get_default_database().name
    except ConfigurationError:
        return None


class MetricsStore:
    """The three collections of the pipeline."""

    def __init__(self, client: MongoClient, settings: MongoSettings) -> None:
        self.client = client
        # Reads from the primary whatever the URI's readPreference: after a write, the
        # consumer reads back what it just stored (the owner of a duplicate _id, the
        # windows already written), and a lagging secondary may not have it yet.
        database = client.get_database(settings.database, write_concern=journaled(client.write_concern),
                                       read_preference=ReadPreference.PRIMARY)
        self.database = database
        self.raw: Collection = database[settings.raw_collection]
        self.kpis: Collection = database[settings.kpi_collection]
        self.deadletter: Collection = database[settings.deadletter_collection]

    # -- set-up ---------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Check that the collections keep ``_id`` unique, and create the indexes of
        SPEC §3 unless an index on the same keys exists (whatever its name). Run at
        start-up: a failure is a StartupError. Then say where the data go (and warn
        when the URI names another database)."""
        wanted = ((self.raw, [("server_id", ASCENDING), ("timestamp", DESCENDING)]),
                  (self.kpis, [("window_end", DESCENDING)]))
        try:
            with pymongo.timeout(STARTUP_OPERATION_SECONDS):
                self._refuse_unsafe_collections()
                for collection, keys in wanted:
                    existing = [list(ix["key"]) for ix in collection.index_information().values()]
                    if [tuple(k) for k in keys] not in [[tuple(k) for k in ix] for ix in existing]:
                        collection.create_index(keys)
        except PyMongoError as exc:
            raise StartupError(f"No se pudieron crear los índices en MongoDB: {classify(exc)}") from None
        log.info("MongoDB: base de datos %s, colecciones %s (raw), %s (KPI) y %s (dead-letter)", self.database.name,
                 self.raw.name, self.kpis.name, self.deadletter.name)
        if (other := uri_database(self.client)) not in (None, "admin", self.database.name):
            log.warning("MONGODB_URI nombra la base de datos %s, pero los datos van a %s (MONGODB_DATABASE): la de la "
                        "URI solo sirve, sin authSource, para autenticarse. Para guardarlos en %s, dé "
                        "MONGODB_DATABASE=%s", other, self.database.name, other, other)

    def _refuse_unsafe_collections(self) -> None:
        """Refuse a collection created beforehand that cannot hold what it promises.

        * time series (MongoDB's suggestion for metrics, so one a user may create):
          ``_id`` is not unique there, and a replay would store every message again,
          silently; everything exactly-once rests on that uniqueness;
        * a view: nothing can be written to it (SecantusDB even acknowledges the
          writes and keeps nothing)."""
        names = [self.raw.name, self.kpis.name, self.deadletter.name]
        for info in self._collections_info(names):
            where = f"La colección {self.database.name}.{info['name']}"
            if info.get("type") == "timeseries" or "timeseries" in (info.get("options") or {}):
                raise StartupError(
                    f"{where} es de series temporales (timeseries), donde MongoDB no impide dos documentos con el "
                    f"mismo _id: cada relectura de Kafka se guardaría otra vez. Use otro nombre de colección o "
                    f"créela como colección normal")
            if info.get("type") == "view":
                raise StartupError(f"{where} es una vista (view), en la que no se puede escribir. Use otro nombre "
                                   f"de colección")

    def _collections_info(self, names: list[str]) -> list[MutableMapping[str, Any]]:
        """listCollections for ``names``. A user whose role grants those collections and
        not the database's listCollections may still list them by name and type
        (MongoDB 4.0+, ``authorizedCollections``); failing that, the check is skipped
        with a WARNING: such a user can write, and refusing to start would be worse."""
        query = {"name": {"$in": names}}
        try:
            return list(self.database.list_collections(filter=query))
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
        try:
            return list(self.database.list_collections(filter=query, nameOnly=True, authorizedCollections=True))
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
        log.warning("Sin permiso para listar las colecciones de %s (listCollections): no se comprueba que no sean "
                    "de series temporales ni vistas", self.database.name)
        return []

    def close(self) -> None:
        with pymongo.timeout(CLOSE_SECONDS):  # see CLOSE_SECONDS
            self.client.close()

    # -- the low-level write ----------------------------------------------------

    def _insert(self, collection: Collection, documents: Sequence[dict[str, Any]]
                ) -> tuple[dict[int, str], dict[int, str]]:
        """insert_many(ordered=False). Returns (duplicate index -> server message,
        rejected index -> reason).

        Raises StorageUnavailable / StorageFatal for errors of the whole call.
        """
        if not documents:
            return {}, {}
        try:
            collection.insert_many(documents, ordered=False)
            return {}, {}
        except BulkWriteError as exc:
            details = exc.details
        except (bson.errors.InvalidDocument, bson.errors.InvalidStringData, OverflowError,
                UnicodeEncodeError, pymongo.errors.DocumentTooLarge):
            # Some document cannot be encoded. Find which, write the others.
            problems = {i: p for i, d in enumerate(documents) if (p := _encoding_problem(d))}
            if not problems:
                raise
            keep = [i for i in range(len(documents)) if i not in problems]
            duplicates, rejected = self._insert(collection, [documents[i] for i in keep])
            rejected = {keep[i]: reason for i, reason in rejected.items()}
            rejected.update(problems)
            return {keep[i]: why for i, why in duplicates.items()}, rejected
        except PyMongoError as exc:
            raise classify(exc) from None
        return sort_write_errors(details)

    def _find_by_ids(self, collection: Collection, ids: list[Any], projection: dict[str, Any] | None
                     ) -> dict[Any, dict[str, Any]]:
        found: dict[Any, dict[str, Any]] = {}
        try:
            for start in range(0, len(ids), FIND_IDS_PER_QUERY):
                chunk = ids[start:start + FIND_IDS_PER_QUERY]
                found.update((doc["_id"], doc) for doc in collection.find({"_id": {"$in": chunk}}, projection))
        except PyMongoError as exc:
            raise classify(exc) from None
        return found

    # -- the three collections ------------------------------------------------

    def insert_raw(self, documents: Sequence[dict[str, Any]]) -> list[RawOutcome]:
        """Store raw documents; one outcome per document, in order.

        A duplicate ``_id`` is reported with the document already stored, so the
        caller can tell a replay (same offset) from a duplicate message (the same
        message sent again, at another offset) and from another message that reuses
        a stored message_uuid (another content).
        """
        outcomes = [_INSERTED] * len(documents)
        pending = list(range(len(documents)))  # indexes into documents
        for attempt in range(2):
            duplicates, rejected = self._insert(self.raw, [documents[i] for i in pending])
            for position, reason in rejected.items():
                outcomes[pending[position]] = RawOutcome(existing=None, rejected=reason)
            if not duplicates:
                break
            ids = [documents[pending[position]]["_id"] for position in duplicates]
            found = self._find_by_ids(self.raw, ids, None)
            again = []
            for position, why in duplicates.items():
                index = pending[position]
                existing = found.get(documents[index]["_id"])
                if existing is not None:
                    outcomes[index] = RawOutcome(existing=existing, rejected=None)
                elif attempt == 0:
                    again.append(index)  # deleted between our insert and our read: store it again
                else:
                    outcomes[index] = RawOutcome(existing=None, rejected=why)  # another unique index
            pending = again
            if not pending:
                break
        return outcomes

    def _insert_keeping_first(self, collection: Collection, documents: Sequence[dict[str, Any]], what: str,
                              projection: dict[str, Any], identity: Callable[[dict[str, Any]], Any],
                              kept: Callable[[dict[str, Any], dict[str, Any]], None] | None = None) -> None:
        """Insert documents whose ``_id`` may already be taken.

        An existing document with the same ``identity`` is the same one written before
        a crash: the first is kept. Another identity means the topic's offsets started
        again: the new document is stored under :func:`reincarnated_id`, stable for its
        content, so its own replays collide in turn. That id is set on the caller's
        document, so what the caller logs afterwards is the id that was stored.
        """
        duplicates, rejected = self._insert(collection, documents)
        if not rejected and duplicates:
            found = self._find_by_ids(collection, [documents[i]["_id"] for i in duplicates], projection)
            reborn = []
            for index in duplicates:
                document = documents[index]
                existing = found.get(document["_id"])
                if existing is not None and identity(existing) == identity(document):
                    if kept is not None:
                        kept(existing, document)
                    continue
                document["_id"] = reincarnated_id(document["_id"], str(identity(document)))
                reborn.append(document)
            clashes, rejected = self._insert(collection, reborn)
            if clashes and not rejected:
                # The same content stored under its reincarnated id before is the same
                # document; a clash with no such id is another unique index.
                ids = [reborn[i]["_id"] for i in clashes]
                stored = self._find_by_ids(collection, ids, {"_id": 1})
                rejected = {i: why for i, why in clashes.items() if reborn[i]["_id"] not in stored}
        if rejected:
            reason = next(iter(rejected.values())).removeprefix(REFUSED)
            raise StorageFatal(f"MongoDB rechazó un documento {what}: {reason}")

    def insert_deadletters(self, documents: Sequence[dict[str, Any]]) -> None:
        """Store dead-letter documents; the same message (same value) is kept once."""
        self._insert_keeping_first(self.deadletter, [_fit_deadletter(d) for d in documents], "dead-letter",
                                   {"value": 1}, _deadletter_identity)

    def stored_windows(self, ids: Sequence[str]) -> dict[str, tuple[str | None, int]]:
        """KPI documents among ``ids``: id -> (first message_uuid, message_count)."""
        found = self._find_by_ids(self.kpis, list(ids), _KPI_IDENTITY_FIELDS)
        return {key: (_first_message(doc), doc.get("message_count") or 0) for key, doc in found.items()}

    def insert_kpis(self, documents: Sequence[dict[str, Any]]) -> set[str]:
        """Store KPI documents. A window rebuilt after a crash (or read again by another
        group) has the same id and the same first message: the document written first
        is kept. Returns the ids of those kept from an earlier write; a document this
        very call's documents wrote on an attempt that failed midway (same
        ``calculated_at``) is not one of them."""
        earlier: set[str] = set()

        def kept(existing: dict[str, Any], rebuilt: dict[str, Any]) -> None:
            _warn_if_resized(existing, rebuilt)
            if existing.get("calculated_at") != rebuilt["calculated_at"]:
                earlier.add(rebuilt["_id"])

        self._insert_keeping_first(self.kpis, documents, "KPI", _KPI_IDENTITY_FIELDS, _first_message, kept)
        return earlier


# What tells one stored window from another with the same id: its first message
# (and its size, for _warn_if_resized and stored_windows; when it was calculated, for
# insert_kpis).
_KPI_IDENTITY_FIELDS = {"message_uuids": {"$slice": 1}, "message_count": 1, "calculated_at": 1}


def _first_message(kpi: dict[str, Any]) -> str | None:
    return (kpi.get("message_uuids") or [None])[0]


def _warn_if_resized(existing: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """A rebuilt window keeps the document written first; with another size, say so."""
    if existing.get("message_count") != rebuilt["message_count"]:
        log.warning("La ventana %s ya estaba guardada con %s mensajes y se ha reconstruido con %d, sin "
                    "relectura que lo avisara (¿documentos raw borrados a mano, y otro KPI_WINDOW_SIZE?): se "
                    "conserva la primera, así que esta ventana y la siguiente no encajan (mensajes sin ventana "
                    "o en dos)", rebuilt["_id"], existing.get("message_count"), rebuilt["message_count"])


def _deadletter_identity(document: dict[str, Any]) -> str:
    value = _plain(document.get("value"))
    return value.hex() if isinstance(value, bytes) else f"text:{value}"


def _fit_deadletter(document: dict[str, Any]) -> dict[str, Any]:
    """Cut a value or key too large for one MongoDB document (MAX_DEADLETTER_BYTES)."""
    fitted = dict(document)
    for name, limit in MAX_DEADLETTER_BYTES.items():
        data = document[name]
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data or b"")
        if len(raw) > limit:
            fitted.update({name: Binary(raw[:limit]), f"{name}_truncated": True, f"{name}_size": len(raw)})
    return fitted
