"""Can the tests fail? (``make mutants``; not in CI, ~15 minutes.)

Each *mutant* below is one small, deliberate bug in the pipeline: a step taken out,
a bound moved, a setting changed. For each, a copy of the repository gets that one
change and the tests that should notice it run against the copy (the working tree is
never touched). A mutant the tests do not notice *survives*: either the tests miss
a behaviour, or the change does not alter behaviour at all (then it is listed with
``equivalent`` and the reason).

Prints one line per mutant and the totals; exit 1 if a mutant not marked equivalent
survives, or if a mutant's text is no longer in the code (update the list).

    .venv/bin/python tools/mutants.py             # all of them
    .venv/bin/python tools/mutants.py -k window   # those whose name contains "window"
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metrics_pipeline.log_setup import counted  # noqa: E402
from tools.arguments import tool_parser  # noqa: E402

_PLURALS = {"SOBREVIVE": "sobreviven", "NO ENCONTRADO": "no encontrados", "ERROR": "errores"}

UNIT = "tests/unit"
INGEST = "tests/integration/test_ingest.py"
PIPELINE = "tests/integration/test_pipeline.py"
RESTART = "tests/integration/test_fault_broker_restart.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: str  # pytest arguments (files, node ids): the tests that should notice it
    equivalent: str = ""  # why surviving is expected, if it is


MUTANTS = [
    # -- windows and commit positions (metrics_pipeline/windows.py, kpis.py) --
    Mutant("commit ignores the open window", "metrics_pipeline/windows.py",
           "        if self._open.members:\n            return self._open.members[0].offset\n", "", UNIT),
    Mutant("commit inside a window read again", "metrics_pipeline/windows.py",
           "        if self._hold_until is not None:\n            return None\n", "", f"{UNIT} {INGEST}"),
    Mutant("closed windows forgotten id by id", "metrics_pipeline/windows.py",
           "                if self._by_id.get(message_id) is oldest:  # not remembered again since\n",
           "                if True:\n", f"{UNIT} {INGEST}"),
    Mutant("a record delivered again taken for a new log", "metrics_pipeline/windows.py",
           "        return self._offsets[slot] == offset and self._fingerprints[slot] == fingerprint",
           "        return False", f"{UNIT} {INGEST}"),
    Mutant("a clash on another unique index taken for stored", "metrics_pipeline/storage.py",
           "                    outcomes[index] = RawOutcome(existing=None, rejected=why)  # another unique index",
           "                    outcomes[index] = _INSERTED", "tests/integration/test_fault_poison.py"),
    Mutant("a KPI clash on another unique index ignored", "metrics_pipeline/storage.py",
           "                rejected = {i: why for i, why in clashes.items() if reborn[i][\"_id\"] not in stored}",
           "                rejected = {}", "tests/integration/test_fault_poison.py"),
    Mutant("fingerprint ring keyed without the offset", "metrics_pipeline/windows.py",
           "        return self._offsets[slot] == offset and self._fingerprints[slot] == fingerprint",
           "        return self._fingerprints[slot] == fingerprint", UNIT),
    Mutant("rate inverted", "metrics_pipeline/kpis.py", "tasa_procesamiento_msg_seg=n / duration_seconds",
           "tasa_procesamiento_msg_seg=duration_seconds / n", UNIT),
    Mutant("plain sum instead of fsum", "metrics_pipeline/kpis.py", "return math.fsum(values) / len(values)",
           "return sum(values) / len(values)", f"{UNIT} {PIPELINE}"),
    Mutant("window end without the write", "metrics_pipeline/kpis.py",
           "    end_ms = max(math.ceil(stored_at * 1000), start_ms + 1)", "    end_ms = start_ms + 1",
           f"{UNIT} {PIPELINE}"),
    # -- validation (metrics_pipeline/message.py) --
    Mutant("booleans taken as numbers", "metrics_pipeline/message.py",
           "if isinstance(value, bool) or not isinstance(value, (int, float)):",
           "if not isinstance(value, (int, float)):", UNIT),
    Mutant("nesting limit 1,000 levels", "metrics_pipeline/message.py", "MAX_NESTING_DEPTH = 100",
           "MAX_NESTING_DEPTH = 1000", f"{UNIT} tests/integration/test_fault_poison.py"),
    Mutant("cpu up to 101", "metrics_pipeline/message.py", "if not 0 <= values[name] <= 100:",
           "if not 0 <= values[name] <= 101:", UNIT),
    Mutant("reserved fields accepted", "metrics_pipeline/message.py",
           "    reserved = [name for name in RESERVED_FIELDS if name in obj]", "    reserved = []", UNIT),
    Mutant("a field twice in an object taken as the last one", "metrics_pipeline/message.py",
           "    if len(obj) != len(pairs):\n", "    if False:\n", UNIT),
    Mutant("uuid case kept", "metrics_pipeline/message.py", "message_id=message_uuid.lower(),",
           "message_id=message_uuid,", f"{UNIT} {PIPELINE}"),
    # -- the commit path (metrics_pipeline/ingest.py) --
    Mutant("a document MongoDB refuses taken as stored", "metrics_pipeline/storage.py",
           "            rejected[index] = f\"{REFUSED}{error.get('errmsg', code)}\"",
           "            pass", "tests/integration/test_fault_poison.py::"
           "test_a_message_mongodb_refuses_is_dead_lettered_with_its_reason"),
    Mutant("a message sent twice counted twice", "metrics_pipeline/ingest.py",
           "                result.duplicates += 1\n",
           "                result.duplicates += 1\n"
           "                entry.member = member_from_message(entry.message, record.offset)\n", INGEST),
    Mutant("rebuilt window at the new size", "metrics_pipeline/ingest.py",
           "                if state.open_count == 0 and entry.replayed:", "                if False:", INGEST),
    Mutant("closed windows not remembered", "metrics_pipeline/ingest.py",
           "            elif (window_end := self.in_closed_windows.window_end(entry.message.message_id)) is not None:",
           "            elif (window_end := None) is not None:", INGEST),
    Mutant("window end before the raw write", "metrics_pipeline/ingest.py",
           "        stored_at = self.clock.now()\n", "        stored_at = received_at\n", INGEST),
    Mutant("window durations from the system clock", "metrics_pipeline/clock.py",
           "        return self._steady() + self._origin\n", "        return self._wall()\n", UNIT),
    Mutant("window dates left off a stepped system clock", "metrics_pipeline/ingest.py",
           "        bounds = window_bounds(*self.clock.to_utc(window.received_at, window.stored_at))\n",
           "        bounds = window_bounds(window.received_at, window.stored_at)\n",
           "tests/integration/test_ingest.py"),
    # -- documents (metrics_pipeline/documents.py) --
    Mutant("servers map misses one", "metrics_pipeline/documents.py",
           "\"servers\": dict(sorted(Counter(m.server_id for m in members).items())),",
           "\"servers\": dict(sorted(Counter(m.server_id for m in members[1:]).items())),", f"{UNIT} {PIPELINE}"),
    Mutant("message_uuids reversed", "metrics_pipeline/documents.py",
           "\"message_uuids\": [m.message_id for m in members],",
           "\"message_uuids\": [m.message_id for m in reversed(members)],", f"{UNIT} {PIPELINE}"),
    Mutant("first_event_time is the max", "metrics_pipeline/documents.py",
           "\"first_event_time\": min(m.timestamp for m in members),",
           "\"first_event_time\": max(m.timestamp for m in members),", f"{UNIT} {PIPELINE}"),
    Mutant("no ingested_at", "metrics_pipeline/documents.py", "    document[\"ingested_at\"] = ingested_at\n", "",
           f"{UNIT} {PIPELINE}"),
    Mutant("timestamp stored as text", "metrics_pipeline/documents.py",
           "    document[\"timestamp\"] = message.timestamp\n",
           "    document[\"timestamp\"] = message.fields[\"timestamp_utc\"]\n", f"{UNIT} {PIPELINE}"),
    Mutant("extra fields dropped", "metrics_pipeline/documents.py", "    document = dict(message.fields)",
           "    document = {k: v for k, v in message.fields.items() "
           "if k in ('server_id', 'timestamp_utc', 'metrics', 'message_uuid')}", f"{UNIT} {PIPELINE}"),
    Mutant("dead-letter value always binary", "metrics_pipeline/documents.py",
           "    try:\n        return value.decode(\"utf-8\")\n    except UnicodeDecodeError:\n        return Binary(value)",
           "    return Binary(value)", f"{UNIT} tests/integration/test_fault_poison.py"),
    # -- MongoDB (metrics_pipeline/storage.py, retry.py) --
    Mutant("ordered bulk insert", "metrics_pipeline/storage.py", "collection.insert_many(documents, ordered=False)",
           "collection.insert_many(documents, ordered=True)", f"{INGEST} {PIPELINE}"),
    Mutant("no j:true", "metrics_pipeline/storage.py", "    return WriteConcern(**document, j=True)",
           "    return WriteConcern(**document)", UNIT),
    Mutant("write concern error taken as stored", "metrics_pipeline/storage.py",
           "    if concern_errors:  # see the module doc: not stored until a retry says so",
           "    if False:", f"{UNIT} tests/integration/test_fault_mongodb_outage.py"),
    Mutant("a document's error of a moment dead-letters it", "metrics_pipeline/storage.py",
           "        elif code in TRANSIENT_CODES:\n", "        elif False:\n", UNIT),
    Mutant("no index", "metrics_pipeline/storage.py", "                        collection.create_index(keys)",
           "                        pass", f"{UNIT} {PIPELINE}"),
    Mutant("indexes created even when they exist (a user who may not create them cannot start)",
           "metrics_pipeline/storage.py",
           "                    if [tuple(k) for k in keys] not in [[tuple(k) for k in ix] for ix in existing]:",
           "                    if True:", "tests/integration/test_secure_mongodb.py"),
    Mutant("dead letters compared by id only", "metrics_pipeline/storage.py",
           "    return value.hex() if isinstance(value, bytes) else f\"text:{value}\"", "    return \"same\"", INGEST),
    Mutant("an existing document never kept", "metrics_pipeline/storage.py",
           "                if existing is not None and identity(existing) == identity(document):",
           "                if False:", INGEST),
    Mutant("no retry while MongoDB is down", "metrics_pipeline/retry.py",
           "            if stop.wait(delay):\n                raise Stopped(what) from None\n", "            raise exc\n",
           UNIT),
    Mutant("backoff without a cap", "metrics_pipeline/retry.py", "            delay = min(delay * 2, cap)",
           "            delay = delay * 2", UNIT),
    Mutant("reads from a secondary when the URI asks", "metrics_pipeline/storage.py",
           ",\n                                       read_preference=ReadPreference.PRIMARY)", ")", UNIT),
    # -- the consumer loop (metrics_pipeline/consumer_loop.py) --
    Mutant("latest offset for a new group", "metrics_pipeline/consumer_loop.py", "auto_offset_reset=\"earliest\",",
           "auto_offset_reset=\"latest\",", PIPELINE),
    Mutant("auto commit", "metrics_pipeline/consumer_loop.py", "enable_auto_commit=False,",
           "enable_auto_commit=True, auto_commit_interval_ms=100,",
           "tests/integration/test_fault_mongodb_outage.py"),
    Mutant("revoked partitions keep their windows", "metrics_pipeline/consumer_loop.py",
           "            self._drop(gone, \"revocadas\")", "            pass",
           f"{UNIT} tests/integration/test_fault_rebalance.py::test_rebalances_lose_nothing_and_double_nothing"),
    Mutant("lost partitions keep their windows", "metrics_pipeline/consumer_loop.py",
           "                self._drop(numbers, \"perdidas\")", "                pass", UNIT),
    Mutant("rebalance while a batch is being written", "metrics_pipeline/consumer_loop.py",
           "                if self._listener.events:\n                    self._drain()\n",
           "                if self._listener.events:\n", UNIT),
    Mutant("stop without committing the last batches", "metrics_pipeline/consumer_loop.py",
           "                self._submit(records, received_at)\n            self._drain()\n",
           "                self._submit(records, received_at)\n",
           f"{PIPELINE}::test_the_batch_that_reaches_max_messages_is_committed_before_the_consumer_exits "
           "tests/integration/test_fault_signals.py"),
    Mutant("a topic created again is not read from its start", "metrics_pipeline/consumer_loop.py",
           "            self._consumer.seek_to_beginning(*assignment)", "            pass", UNIT),
    Mutant("idle counted from the assignment only", "metrics_pipeline/consumer_loop.py",
           "idle_enough = now - max(self._assigned_at, self._last_message_at or 0.0) >= idle",
           "idle_enough = now - self._assigned_at >= idle", UNIT),
    Mutant("Kafka down raised out of poll() ends the consumer", "metrics_pipeline/consumer_loop.py",
           "                    if not exc.retriable:\n                        raise\n",
           "                    raise\n", UNIT),
    Mutant("idle stop with part of the topic", "metrics_pipeline/consumer_loop.py",
           "            if idle_enough and (self._assigned_whole_topic or now - self._assigned_at >= sessions):",
           "            if idle_enough:", UNIT),
    # -- installation (metrics_pipeline/__init__.py) --
    Mutant("missing packages not checked", "metrics_pipeline/__init__.py",
           "if _missing := missing_packages():", "if _missing := []:", UNIT),
    # -- settings (metrics_pipeline/settings.py) --
    Mutant("a .env line python-dotenv cannot parse is skipped", "metrics_pipeline/settings.py",
           "for binding in bindings if binding.error]", "for binding in bindings if False]", UNIT),
    Mutant("an offset Kafka no longer has goes unsaid", "metrics_pipeline/log_setup.py",
           '    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.INFO)', "    pass  #", UNIT),
    Mutant("an exception in another thread printed raw, secrets included", "metrics_pipeline/log_setup.py",
           "    threading.excepthook = _log_thread_exception\n", "\n", UNIT),
    Mutant("${...} expanded inside single quotes in .env", "metrics_pipeline/settings.py",
           "        if _SINGLE_QUOTED.match(binding.original.string):", "        if False:", UNIT),
    Mutant(".env beats the environment", "metrics_pipeline/settings.py", "            for source in (environ, dotenv):",
           "            for source in (dotenv, environ):", UNIT),
    Mutant("kafka-python's 45 s session", "metrics_pipeline/settings.py",
           "\"KAFKA_SESSION_TIMEOUT_MS\", \"10000\", _int(1000),", "\"KAFKA_SESSION_TIMEOUT_MS\", \"45000\", _int(1000),",
           UNIT),
    Mutant("choices read case-sensitively", "metrics_pipeline/settings.py",
           "        value = canonical.get(text.strip().upper())", "        value = text.strip() if text.strip() in choices else None",
           UNIT),
    Mutant("--help says only 'sin valor' for options without one", "metrics_pipeline/settings.py",
           "        default = option.default if option.default is not None else option.unset",
           "        default = option.default if option.default is not None else \"sin valor\"", UNIT),
    Mutant("matplotlib's INFO lines reach the user", "metrics_pipeline/log_setup.py",
           "    for library in (\"pymongo\", \"matplotlib\"):", "    for library in (\"pymongo\",):",
           "tests/integration/test_report.py::test_report_prints_the_exact_table_and_summary_and_draws_the_chart"),
    Mutant("integer settings unbounded", "metrics_pipeline/settings.py",
           "def _int(minimum: int, maximum: int | None = MAX_INT)", "def _int(minimum: int, maximum: int | None = None)",
           UNIT),
    Mutant("a signal delivered twice at once is 'stop now'", "metrics_pipeline/shutdown.py",
           "            if signum == first_signum and now - first_at < REPEAT_SECONDS:",
           "            if False:", UNIT),
    Mutant("a group join refused for good is a traceback", "metrics_pipeline/consumer_loop.py",
           "                except JOIN_REFUSED as exc:", "                except ZeroDivisionError as exc:",
           f"{UNIT} tests/integration/test_fault_startup.py::"
           "test_a_group_another_program_uses_with_other_strategies_exits_1_naming_the_group"),
    Mutant("a bad URI option not named", "metrics_pipeline/storage.py",
           "        names = _options_pymongo_ignores(settings.uri)", "        names = []", UNIT),
    Mutant("start-up waits twice as long", "metrics_pipeline/startup.py", "    deadline = time.monotonic() + timeout",
           "    deadline = time.monotonic() + 2 * timeout", UNIT),
    Mutant("URL credentials not masked", "metrics_pipeline/redaction.py",
           "            text = _CREDENTIALS_RE.sub(lambda m: f\"{m['scheme']}{m['user']}:{MASK}@\", text)",
           "            pass", UNIT),
    Mutant("URL-encoded password not masked", "metrics_pipeline/redaction.py",
           "variants.update({secret, *_url_encoded(secret)})", "variants.update({secret})", UNIT),
    Mutant("URI password read up to the first '/'", "metrics_pipeline/redaction.py",
           "    return uri.split(\"://\", 1)[-1].split(\"?\", 1)[0]\n",
           "    return uri.split(\"://\", 1)[-1].split(\"?\", 1)[0].split(\"/\", 1)[0]\n", UNIT),
    Mutant("a password with '/' and '@' unencoded accepted", "metrics_pipeline/settings.py",
           "    if \"/\" in authority and authority.index(\"/\") < authority.rfind(\"@\"):",
           "    if False:", UNIT),
    # -- Kafka and the producer --
    Mutant("partition count ignored", "metrics_pipeline/kafka_connection.py",
           "{\"num_partitions\": settings.partitions,\n                                                  \"replication_factor\": -1}}",
           "{\"num_partitions\": 1,\n                                                  \"replication_factor\": -1}}", PIPELINE),
    Mutant("create an existing topic anyway", "metrics_pipeline/kafka_connection.py",
           "        if count:\n            return count, False", "        if False:\n            return count, False",
           f"{PIPELINE}::test_rounds_put_five_keyed_valid_messages_per_round_on_the_topic", equivalent="the broker answers TopicAlreadyExists, which is ignored; only a Kafka whose ACLs "
                                "forbid creating topics would tell, and the local broker has no ACLs"),
    Mutant("consumer lets the broker auto-create the topic", "metrics_pipeline/consumer_loop.py",
           "        forbid_topic_auto_creation(getattr(consumer, \"_cluster\", None))\n", "",
           f"{RESTART}::test_a_consumer_left_without_partitions_gets_the_topic_created_again "
           f"{RESTART}::test_both_scripts_go_on_after_a_broker_that_lost_its_data"),
    Mutant("no rejoin when the topic comes back", "metrics_pipeline/consumer_loop.py",
           "        self._rejoin_pending = True\n", "",
           f"{RESTART}::test_a_consumer_left_without_partitions_gets_the_topic_created_again"),
    Mutant("a join kafka-python dropped is not resumed", "metrics_pipeline/consumer_loop.py",
           "            coordinator.request_rejoin()\n", "            pass\n", UNIT),
    Mutant("a join resumed at first sight", "metrics_pipeline/consumer_loop.py",
           "        elif not self._dropped_join_seen:\n", "        elif False:\n", UNIT),
    Mutant("rejoin in the middle of a rebalance", "metrics_pipeline/consumer_loop.py",
           "        if rebalancing or self._consumer.assignment():", "        if self._consumer.assignment():", UNIT),
    Mutant("rejoin given up while the old partitions are still held", "metrics_pipeline/consumer_loop.py",
           "        if rebalancing or self._consumer.assignment():\n"
           "            return  # partitions, for now: the rebalance the new topic starts may take them\n"
           "        self._rejoin_pending = False\n",
           "        if rebalancing:\n            return\n        self._rejoin_pending = False\n"
           "        if self._consumer.assignment():\n            return\n", UNIT),
    Mutant("producer lets the broker auto-create the topic", "metrics_pipeline/producer_loop.py",
           "    forbid_topic_auto_creation(getattr(producer, \"_metadata\", None))\n", "",
           f"{RESTART}::test_both_scripts_go_on_after_a_broker_that_lost_its_data"),
    Mutant("no message key", "metrics_pipeline/producer_loop.py",
           "future = self.producer.send(self.topic, key=item.key, value=item.value)",
           "future = self.producer.send(self.topic, key=None, value=item.value)", PIPELINE),
    Mutant("acks=1", "metrics_pipeline/producer_loop.py", "            acks=\"all\",", "            acks=1,",
           f"{PIPELINE}::test_the_producer_asks_every_in_sync_replica_to_acknowledge"),
    Mutant("no resend", "metrics_pipeline/producer_loop.py",
           "            if item.attempt < MAX_ATTEMPTS and worth_it and not self.stop.is_set():",
           "            if False:", UNIT),
    Mutant("failed sends not counted", "metrics_pipeline/producer_loop.py", "        self.stats.failed += 1",
           "        pass", UNIT),
    Mutant("rounds drift", "metrics_pipeline/producer_loop.py", "            return scheduled + self.interval\n",
           "            return now + self.interval\n", UNIT),
    Mutant("a commit Kafka never answers not said as Kafka down", "metrics_pipeline/consumer_loop.py",
           '                self.kafka_status.mark_down(f"un commit de offsets lleva {COMMIT_TIMEOUT_MS / 1000:g} s sin '
           'respuesta",\n                                            waited=time.monotonic() - sent_at)\n', "", UNIT),
    Mutant("MongoDB errors without the server's name for them", "metrics_pipeline/storage.py",
           '        text = f"{name}: {text}"\n', "        pass\n",
           "tests/integration/test_fault_mongodb_outage.py::test_a_primary_election_is_waited_out_like_an_outage"),
    Mutant("a KPI write's own retried attempt taken as an earlier write", "metrics_pipeline/storage.py",
           '            if existing.get("calculated_at") != rebuilt["calculated_at"]:\n', "            if True:\n",
           "tests/integration/test_ingest.py"),
    Mutant("a window stored before logged with its rebuilt KPIs and alerts again", "metrics_pipeline/ingest.py",
           "    if written_before:\n", "    if False:\n", UNIT),
    Mutant("an outage counted from the end of the unanswered commit", "metrics_pipeline/consumer_loop.py",
           "waited=time.monotonic() - sent_at)", "waited=0.0)", UNIT),
    Mutant("a paused producer bursts to catch up", "metrics_pipeline/producer_loop.py",
           "        return started + self.interval\n", "        return now\n", UNIT),
    Mutant("a frozen consumer's expired session said as Kafka down", "metrics_pipeline/log_setup.py",
           " and not _SESSION_EXPIRED.search(text):", ":", UNIT),
    Mutant("final flush deaf to a stop", "metrics_pipeline/producer_loop.py",
           "            timeout = FLUSH_SLICE_SECONDS\n", "            timeout = None if deadline is None else 9.9\n",
           UNIT),
    Mutant("a stop waits again for a Kafka that did not answer", "metrics_pipeline/producer_loop.py",
           "        if not flushed:\n            self._abandon_unconfirmed()\n", "",
           "tests/integration/test_fault_signals.py::"
           "test_a_producer_stopped_while_kafka_is_down_accounts_for_every_message"),
    Mutant("a send waits 10 s for a missing topic", "metrics_pipeline/producer_loop.py",
           "MAX_BLOCK_MS = 2_000", "MAX_BLOCK_MS = 10_000",
           "tests/integration/test_fault_signals.py::test_a_stop_while_the_topic_is_missing_ends_within_10_s"),
    Mutant("three decimals", "metrics_pipeline/simulation.py", "\"cpu_percent\": round(cpu, 2),",
           "\"cpu_percent\": round(cpu, 3),", UNIT),
    Mutant("cpu spikes 15 %", "metrics_pipeline/simulation.py", "CPU_SPIKE_PROBABILITY = 0.10",
           "CPU_SPIKE_PROBABILITY = 0.15", UNIT),
    Mutant("network in bytes, not bits", "metrics_pipeline/host_metrics.py",
           "            \"network_mbps\": round(net * 8 / elapsed / 1e6, 2),",
           "            \"network_mbps\": round(net / elapsed / 1e6, 2),", UNIT),
    Mutant("dropped packets not counted", "metrics_pipeline/host_metrics.py",
           "        net_errors=(net.errin + net.errout + net.dropin + net.dropout) if net else 0,",
           "        net_errors=(net.errin + net.errout) if net else 0,", UNIT),
    Mutant("disk per sample, not per second", "metrics_pipeline/host_metrics.py",
           "            \"disk_io_mbps\": round(disk / elapsed / 1e6, 2),",
           "            \"disk_io_mbps\": round(disk / 1e6, 2),", UNIT),
    # -- alerts and the report --
    Mutant("alert at the threshold", "metrics_pipeline/alerts.py", "if threshold is not None and value > threshold:",
           "if threshold is not None and value >= threshold:", UNIT),
    Mutant("report shows the oldest windows", "metrics_pipeline/report.py",
           "    order = [(\"window_end\", -1), (\"kafka.partition\", -1), (\"kafka.first_offset\", -1)]",
           "    order = [(\"window_end\", 1), (\"kafka.partition\", 1), (\"kafka.first_offset\", 1)]",
           "tests/integration/test_report.py"),
    Mutant("report max cpu is the average", "metrics_pipeline/report.py",
           "\"cpu_max\": {\"$max\": \"$metrics.cpu_percent\"},", "\"cpu_max\": {\"$avg\": \"$metrics.cpu_percent\"},",
           "tests/integration/test_report.py"),
    Mutant("report ignores --since", "metrics_pipeline/report.py",
           "    return {**shape, field: {**shape[field], \"$gte\": since}}", "    return shape",
           "tests/integration/test_report.py"),
    Mutant("report reads documents of any shape", "metrics_pipeline/report.py",
           "    if since is None:\n        return shape\n", "    if since is None:\n        return {}\n",
           "tests/integration/test_report.py"),
    Mutant("chart at half size", "metrics_pipeline/report.py", "    fig.savefig(path, dpi=CHART_DPI)",
           "    fig.savefig(path, dpi=CHART_DPI / 2)", "tests/integration/test_report.py"),
    # -- added 2026-11-28 --
    Mutant("messages left to read counted from the start of the topic", "metrics_pipeline/consumer_loop.py",
           "            total += max(0, highwater - position)", "            total += max(0, highwater)",
           f"{PIPELINE}::test_each_batch_line_says_how_many_messages_are_left_to_read"),
    Mutant("no hint for a broker that closes the connection", "metrics_pipeline/kafka_connection.py",
           "    if closed:\n", "    if closed and False:\n",
           "tests/integration/test_fault_startup.py -k hint"),
    Mutant("pymongo's debug lines shown at DEBUG", "metrics_pipeline/log_setup.py",
           "setLevel(max(root.level, logging.WARNING))", "setLevel(root.level)",
           "tests/unit/test_log_setup.py"),
    Mutant("host metrics: the first round measures the start-up", "metrics_pipeline/producer_loop.py",
           "        if self.source.first_round_waits and self.interval > 0:", "        if False:",
           "tests/unit/test_producer_loop.py"),
    Mutant("a SCRAM refusal read as a lost connection", "metrics_pipeline/kafka_connection.py",
           "            if error is not None:\n                raise kafka_errors.SaslAuthenticationFailedError(",
           "            if False:\n                raise kafka_errors.SaslAuthenticationFailedError(",
           "tests/unit/test_kafka_connection.py"),
    Mutant("our SCRAM class breaks a login the broker accepts", "metrics_pipeline/kafka_connection.py",
           "            return bool(super().receive(auth_bytes))", "            return False",
           "tests/integration/test_secure_kafka.py -k accepts"),
    Mutant("SASL password not given to kafka-python", "metrics_pipeline/kafka_connection.py",
           "                      sasl_plain_password=settings.sasl_password)",
           "                      sasl_plain_password=\"\")", "tests/integration/test_secure_kafka.py -k accepts"),
    Mutant("a refused login waited out until the attempt's timeout", "metrics_pipeline/kafka_connection.py",
           "                                     give_up=refused)", "                                     )",
           "tests/integration/test_secure_kafka.py -k wrong_password"),
    Mutant("a start-up attempt that never comes back waited for ever", "metrics_pipeline/startup.py",
           "        if now >= give_up_at:", "        if False:", "tests/unit/test_startup.py"),
    Mutant("an untrusted broker certificate retried until the timeout", "metrics_pipeline/kafka_connection.py",
           "            if status is not None and status.tls_failure:", "            if False:",
           "tests/integration/test_secure_kafka.py -k sin-ca"),
    Mutant("KAFKA_SSL_CAFILE not given to kafka-python", "metrics_pipeline/kafka_connection.py",
           "        config[\"ssl_cafile\"] = settings.ssl_cafile", "        pass",
           "tests/integration/test_secure_kafka.py -k trusting"),
    Mutant("client certificate not given to kafka-python", "metrics_pipeline/kafka_connection.py",
           "        config.update(ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)",
           "        pass", "tests/integration/test_secure_kafka.py -k client_certificate"),
    Mutant("an encrypted client key accepted (OpenSSL would ask for its password)", "metrics_pipeline/settings.py",
           "load_cert_chain(certfile, keyfile, password=no_password_prompt)",
           "load_cert_chain(certfile, keyfile, password=lambda: b\"clave\")", "tests/unit/test_settings.py"),
    Mutant("audit lets averages differ by a millionth", "metrics_pipeline/audit.py",
           "        same = stored == expected if exact else (",
           "        same = math.isclose(stored, expected, rel_tol=1e-6) if exact else (",
           "tests/unit/test_audit.py"),
    # -- added 2026-11-28, afternoon --
    Mutant("closing the terminal kills the scripts at once", "metrics_pipeline/shutdown.py",
           "        signals.append(hangup)", "        pass", "tests/unit/test_shutdown.py"),
    Mutant("nohup's ignored SIGHUP taken over", "metrics_pipeline/shutdown.py",
           " and signal.getsignal(hangup) is not signal.SIG_IGN:", ":", "tests/unit/test_shutdown.py"),
    Mutant("a .env directory silently skipped", "metrics_pipeline/settings.py",
           "    if path and os.path.lexists(path):", "    if path and os.path.isfile(path):",
           "tests/unit/test_settings.py"),
    Mutant("report pads by characters, not terminal columns", "metrics_pipeline/report.py",
           "0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in \"WF\" else 1", "1",
           "tests/unit/test_report.py"),
    Mutant("a server id with edge blanks shown like the trimmed one", "metrics_pipeline/report.py",
           "    if text != text.strip():", "    if False:", "tests/unit/test_report.py"),
    Mutant("scripts started without stderr cannot log", "metrics_pipeline/cli.py",
           "    ensure_standard_streams()\n    tolerate_unencodable_output()\n    sys.exit",
           "    tolerate_unencodable_output()\n    sys.exit", f"{PIPELINE} -k closed"),
    Mutant("another message reusing a stored message_uuid taken for a copy", "metrics_pipeline/ingest.py",
           "                if not same_message(outcome.existing, entry.message):",
           "                if False:", f"{PIPELINE} -k reusing"),
    Mutant("only the first lookup query of a replay is read", "metrics_pipeline/storage.py",
           "            for start in range(0, len(ids), FIND_IDS_PER_QUERY):",
           "            for start in range(0, min(len(ids), 1), FIND_IDS_PER_QUERY):", f"{INGEST} -k lookup"),
    Mutant("alert thresholds beyond 100 %", "metrics_pipeline/settings.py",
           "\"ALERT_CPU_AVG\", \"80\", _threshold(_float(0, maximum=100)),",
           "\"ALERT_CPU_AVG\", \"80\", _threshold(_float(0)),", "tests/unit/test_settings.py"),
]


def _copy_of_the_repository(into: Path) -> Path:
    """The tracked files (and the working tree's edits of them), nothing else."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    copy = into / "repo"
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


# Slow checks that no mutant here is about (mypy twice; the unit tests again under
# Pyodide, which would install it with npm in every copy): left out of every run.
NOT_FOR_MUTANTS = ("tests/unit/test_types.py", "tests/unit/test_python_versions.py")


def pytest_command(tests: list[str]) -> list[str]:
    """Stop at the first failure: one is enough to call a mutant detected."""
    ignored = [f"--ignore={path}" for path in NOT_FOR_MUTANTS]
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *ignored, *tests]


def _run(mutant: Mutant, copy: Path) -> tuple[str, str]:
    path = copy / mutant.path
    original = path.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        return "NO ENCONTRADO", f"el texto a cambiar aparece {original.count(mutant.old)} veces en {mutant.path}"
    path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        done = subprocess.run(pytest_command(mutant.tests.split()), cwd=copy, capture_output=True, text=True,
                              timeout=1200)
    except subprocess.TimeoutExpired:
        return "DETECTADO", "los tests no terminaron en 20 min"
    finally:
        path.write_text(original, encoding="utf-8")
    return verdict(done.returncode, (done.stdout.strip().splitlines() or [""])[-1], done.stderr)


def verdict(returncode: int, summary: str, stderr: str) -> tuple[str, str]:
    """A mutant is detected only by a test that *fails*. A test that errors (a fixture
    could not start a server, a file is missing from the copy) proves nothing about the
    mutant, so it is an ERROR to look at, as is any other exit of pytest."""
    if returncode == 1 and " failed" in f" {summary}":
        return "DETECTADO", summary
    if returncode == 0:
        return "SOBREVIVE", summary
    return "ERROR", f"pytest salió con {returncode}: {summary or stderr[-300:]}"


def main() -> int:
    parser = tool_parser("Errores introducidos a propósito: ¿los detectan los tests?")
    parser.add_argument("-k", dest="pattern", default="", metavar="TEXTO",
                        help="solo los mutantes cuyo nombre contiene TEXTO (por defecto: todos)")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.pattern in m.name]
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = _copy_of_the_repository(Path(tmp))
        for number, mutant in enumerate(chosen, 1):
            verdict, detail = _run(mutant, copy)
            if verdict == "SOBREVIVE" and mutant.equivalent:
                verdict, detail = "EQUIVALENTE", mutant.equivalent
            outcomes[verdict] = outcomes.get(verdict, 0) + 1
            print(f"{number:2d}/{len(chosen)} {verdict:13s} {mutant.name} ({mutant.path}): {detail}", flush=True)
    totals = ", ".join(counted(n, verdict.lower(), _PLURALS.get(verdict)) for verdict, n in sorted(outcomes.items()))
    print(f"\n{counted(len(chosen), 'mutante')} en {time.monotonic() - started:.0f} s: {totals}. "
          f"Orden: make mutants", flush=True)
    return 1 if set(outcomes) - {"DETECTADO", "EQUIVALENTE"} else 0


if __name__ == "__main__":
    sys.exit(main())
