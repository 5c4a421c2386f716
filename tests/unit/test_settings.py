"""Settings: SPEC §4 defaults, precedence flag > env > .env > default, clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from metrics_pipeline.redaction import Redactor
from metrics_pipeline.settings import (CONSUMER_OPTIONS, PRODUCER_OPTIONS, REPORT_OPTIONS, SettingsError,
                                       load_consumer_settings, load_producer_settings,
                                       load_report_settings)


def consumer(argv=(), env=None, dotenv: Path | None = None):
    return load_consumer_settings(list(argv), environ=env or {}, dotenv_path=str(dotenv) if dotenv else "")


def producer(argv=(), env=None, dotenv: Path | None = None):
    return load_producer_settings(list(argv), environ=env or {}, dotenv_path=str(dotenv) if dotenv else "")


def test_defaults_are_the_spec_table() -> None:
    c = consumer()
    assert c.kafka.bootstrap_servers == "localhost:29092"
    assert c.kafka.topic == "system-metrics-topic-iabd06"
    assert c.kafka.partitions == 1
    assert c.group_id == "grupo_iabd06_id"
    assert c.mongo.uri == "mongodb://localhost:27017"
    assert c.mongo.database == "monitoring_iabd06"
    assert c.mongo.raw_collection == "system_metrics_raw_iabd06"
    assert c.mongo.kpi_collection == "system_metrics_kpis_iabd06"
    assert c.mongo.deadletter_collection == "system_metrics_deadletter_iabd06"
    assert c.window_size == 20
    assert c.log_level == "INFO"
    assert c.kafka.startup_timeout == 60
    assert c.max_messages is None and c.idle_timeout is None
    # Beyond the table: a group join takes about half the session timeout, so ~5 s
    # (kafka-python's own 45 s made it ~23 s); one bulk write per poll of 2,000.
    assert (c.session_timeout_ms, c.max_poll_interval_ms, c.batch_size) == (10_000, 300_000, 2000)
    p = producer()
    assert p.interval == 10
    assert p.server_ids == ("web01", "web02", "db01", "app01", "cache01")
    assert p.rounds is None and p.seed is None and p.source == "simulated"


def test_flag_beats_environment_beats_dotenv_beats_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("KAFKA_TOPIC=from-dotenv\nKPI_WINDOW_SIZE=30\nMONGODB_DATABASE=db_dotenv\n")
    env = {"KAFKA_TOPIC": "from-env", "KPI_WINDOW_SIZE": "40"}
    c = consumer(["--topic", "from-flag"], env, dotenv)
    assert c.kafka.topic == "from-flag"
    assert c.window_size == 40
    assert c.mongo.database == "db_dotenv"
    assert c.group_id == "grupo_iabd06_id"


def test_empty_values_count_as_not_set(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("KAFKA_TOPIC=\nKAFKA_GROUP_ID=from-dotenv\n")
    c = consumer([], {"KAFKA_GROUP_ID": "  "}, dotenv)
    assert c.kafka.topic == "system-metrics-topic-iabd06"
    assert c.group_id == "from-dotenv"


@pytest.mark.parametrize("content, reason", [
    (b"KAFKA_TOPIC=t\n\n  \nesto no\n", "la línea 4 no tiene la forma NOMBRE=valor"),
    (b'MONGODB_URI="mongodb://u:secreto@h\nKAFKA_TOPIC=t\nKAFKA GROUP=g\n', "las líneas 1, 3 no tienen la forma NOMBRE=valor"),
    (b"KAFKA_TOPIC=t\nMONGODB_DATABASE=m\xe9tricas\n", "no está en UTF-8 (línea 2)"),  # Latin-1
])
def test_a_dotenv_file_that_cannot_be_read_whole_is_a_bad_setting(tmp_path: Path, content: bytes,
                                                                 reason: str) -> None:
    # python-dotenv would skip the line (its setting silently at its default) or raise.
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(content)
    with pytest.raises(SettingsError) as error:
        consumer([], {}, dotenv)
    assert error.value.setting == str(dotenv)
    assert error.value.reason.startswith(reason)
    assert "secreto" not in str(error.value)


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.mkdir(), "no es un fichero (¿un directorio?)"),
    pytest.param(lambda p: os.mkfifo(p), "no es un fichero",  # reading it would wait for ever
                 marks=pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here (Pyodide)")),
    (lambda p: p.symlink_to(p.parent / "borrado.env"), "no se puede leer: No such file"),
])
def test_a_dotenv_that_is_not_a_readable_file_is_a_bad_setting_not_ignored(tmp_path: Path, make, reason: str) -> None:
    dotenv = tmp_path / ".env"
    make(dotenv)
    with pytest.raises(SettingsError) as error:
        consumer([], {}, dotenv)
    assert (error.value.setting, error.value.reason[:len(reason)]) == (str(dotenv), reason)


def test_a_dotenv_file_as_windows_editors_write_it_is_read(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_bytes("\ufeffMONGODB_DATABASE=métricas\r\n# comentario\r\nexport KAFKA_TOPIC='t'\r\n".encode())
    c = consumer([], {}, dotenv)
    assert (c.mongo.database, c.kafka.topic) == ("métricas", "t")


def test_a_dotenv_value_in_single_quotes_is_taken_as_written(tmp_path: Path) -> None:
    # As docker compose and the shell read it: ${...} is expanded, except inside single quotes.
    dotenv = tmp_path / ".env"
    dotenv.write_text("SUFIJO=x\nKAFKA_TOPIC=t-${SUFIJO}\nKAFKA_GROUP_ID='g${SUFIJO}'\n")
    c = consumer([], {}, dotenv)
    assert (c.kafka.topic, c.group_id) == ("t-x", "g${SUFIJO}")
    dotenv.write_text("SUFIJO=x\nKAFKA_GROUP_ID='g${SUFIJO}'\nexport  KAFKA_GROUP_ID = \"h${SUFIJO}\"\n")
    assert consumer([], {}, dotenv).group_id == "hx"  # the last line wins, as it is quoted


@pytest.mark.parametrize("argv, env, setting", [
    (["--window-size", "0"], {}, "KPI_WINDOW_SIZE"),
    (["--window-size", "10001"], {}, "KPI_WINDOW_SIZE"),  # its KPI document could outgrow 16 MB
    ([], {"KPI_WINDOW_SIZE": "veinte"}, "KPI_WINDOW_SIZE"),
    (["--partitions", "-1"], {}, "KAFKA_TOPIC_PARTITIONS"),
    # Kafka's protocol carries these as 32-bit integers: a larger one could not be sent.
    (["--partitions", "2147483648"], {}, "KAFKA_TOPIC_PARTITIONS"),
    (["--session-timeout-ms", "2147483648"], {}, "KAFKA_SESSION_TIMEOUT_MS"),
    ([], {"KAFKA_MAX_POLL_INTERVAL_MS": "3000000000"}, "KAFKA_MAX_POLL_INTERVAL_MS"),
    (["--bootstrap-servers", "localhost"], {}, "KAFKA_BOOTSTRAP_SERVERS"),
    (["--bootstrap-servers", "h:99999"], {}, "KAFKA_BOOTSTRAP_SERVERS"),
    (["--topic", "con espacios"], {}, "KAFKA_TOPIC"),
    (["--mongodb-uri", "http://x"], {}, "MONGODB_URI"),
    (["--database", "a.b"], {}, "MONGODB_DATABASE"),
    (["--raw-collection", "system.x"], {}, "MONGODB_RAW_COLLECTION"),
    (["--kpi-collection", "a$b"], {}, "MONGODB_KPI_COLLECTION"),
    (["--log-level", "CHATTY"], {}, "LOG_LEVEL"),
    (["--startup-timeout", "0"], {}, "STARTUP_TIMEOUT_SECONDS"),
    (["--startup-timeout", "nan"], {}, "STARTUP_TIMEOUT_SECONDS"),
    (["--max-messages", "0"], {}, "--max-messages"),
    (["--idle-timeout", "-1"], {}, "--idle-timeout"),
    (["--idle-timeout", "1e12"], {}, "--idle-timeout"),  # beyond what a thread may wait
    (["--startup-timeout", "2592001"], {}, "STARTUP_TIMEOUT_SECONDS"),  # 30 days and a second
    (["--alert-cpu-avg", "mucho"], {}, "ALERT_CPU_AVG"),
    # Thresholds no window can cross: a typo would silence the alert without a word.
    (["--alert-cpu-avg", "101"], {}, "ALERT_CPU_AVG"),
    ([], {"ALERT_MEMORY_AVG": "1e3"}, "ALERT_MEMORY_AVG"),
    (["--alert-error-sum", "2.5"], {}, "ALERT_ERROR_SUM"),
    ([], {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
    ([], {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_USERNAME"),
    ([], {"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
])
def test_bad_consumer_values_name_the_setting(argv, env, setting) -> None:
    with pytest.raises(SettingsError) as caught:
        consumer(argv, env)
    assert setting in str(caught.value)


@pytest.mark.parametrize("argv, setting", [
    (["--interval", "-1"], "PRODUCER_INTERVAL_SECONDS"),
    (["--interval", "1e12"], "PRODUCER_INTERVAL_SECONDS"),  # beyond what a thread may wait
    (["--rounds", "1" + "0" * 20], "--rounds"),
    (["--servers", "web01,,db01"], "SERVER_IDS"),
    (["--servers", "web01,web01"], "SERVER_IDS"),
    (["--servers", "web01," + "x" * 254], "SERVER_IDS"),
    (["--rounds", "0"], "--rounds"),
    (["--seed", "x"], "--seed"),
    (["--source", "snmp"], "METRICS_SOURCE"),
    (["--source", "psutil", "--servers", "a,b"], "SERVER_IDS"),
    (["--source", "psutil", "--seed", "7"], "--seed"),  # real readings: a seed would change nothing
])
def test_bad_producer_values_name_the_setting(argv, setting) -> None:
    with pytest.raises(SettingsError) as caught:
        producer(argv)
    assert setting in str(caught.value)


def test_a_database_name_too_long_for_mongodb_says_so() -> None:
    assert consumer(["--database", "d" * 63]).mongo.database == "d" * 63
    for name in ("d" * 64, "ñ" * 32):  # MongoDB counts bytes
        with pytest.raises(SettingsError, match="MONGODB_DATABASE.*como mucho 63 bytes, no 64"):
            consumer(["--database", name])


def test_database_and_collection_together_fit_mongodb_namespace_limit() -> None:
    # 63 + "." + 191 = 255 bytes, MongoDB's limit (accepted by SecantusDB too); one
    # more byte used to be an exit 1 from MongoDB at start-up instead of a setting.
    assert consumer(["--database", "d" * 63, "--raw-collection", "r" * 191]).mongo.raw_collection == "r" * 191
    with pytest.raises(SettingsError, match=r"^MONGODB_KPI_COLLECTION .*suman 256 bytes; MongoDB admite como mucho 255"):
        consumer(["--database", "d" * 63, "--kpi-collection", "k" * 192])
    with pytest.raises(SettingsError, match="MONGODB_DEADLETTER_COLLECTION"):
        consumer(["--deadletter-collection", "ñ" * 120])  # bytes, not characters


def test_the_largest_values_are_accepted() -> None:
    c = consumer(["--partitions", "2147483647", "--session-timeout-ms", "2147483647",
                  "--idle-timeout", "2592000", "--startup-timeout", "2592000"])
    assert (c.kafka.partitions, c.session_timeout_ms, c.idle_timeout) == (2**31 - 1, 2**31 - 1, 2592000)
    assert producer(["--interval", "2592000", "--seed", str(2**63)]).interval == 2592000


@pytest.mark.parametrize("argv, setting, words", [
    # Python reads at most 4,300 digits (int() raises its own English ValueError) and
    # floats 1e999 as infinity: each is a value out of range, said in one short line.
    (["--window-size", "7" * 5000], "KPI_WINDOW_SIZE", "tiene 5000 cifras: es demasiado grande"),
    (["--partitions=-" + "7" * 5000], "KAFKA_TOPIC_PARTITIONS", "tiene 5000 cifras: es demasiado pequeño"),
    (["--window-size", "1" + "0" * 100], "KPI_WINDOW_SIZE", "debe ser un entero <= 10000, no 1000000"),
    (["--bootstrap-servers", "kafka:" + "9" * 5000], "KAFKA_BOOTSTRAP_SERVERS", "host:puerto, no 'kafka:999"),
    (["--startup-timeout", "9" * 5000], "STARTUP_TIMEOUT_SECONDS", "<= 2592000, no '999"),
    (["--startup-timeout=-1e999"], "STARTUP_TIMEOUT_SECONDS", "> 0, no '-1e999'"),
    (["--alert-cpu-avg", "1e999"], "ALERT_CPU_AVG", "<= 100, no '1e999'"),
    (["--log-level", "x" * 5000], "LOG_LEVEL", "'xxx"),
    (["--window-size", "x" * 5000], "KPI_WINDOW_SIZE", "entero, no 'xxx"),
])
def test_a_huge_value_is_out_of_range_in_one_short_line(argv, setting, words) -> None:
    with pytest.raises(SettingsError) as caught:
        consumer(argv)
    assert str(caught.value).startswith(setting) and words in str(caught.value)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("argv, env, setting", [
    ([], {"MONGODB_DATABASE": "m\udce9tricas"}, "MONGODB_DATABASE (o --database)"),
    (["--mongodb-uri", "mongodb://ana:contrase\udcf1a@db/"], {}, "MONGODB_URI (--mongodb-uri)"),
    ([], {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "ana",
          "KAFKA_SASL_PASSWORD": "contrase\udcf1a"}, "KAFKA_SASL_PASSWORD (o --sasl-password)"),
])
def test_a_value_that_is_not_utf8_is_refused_without_showing_it(argv, env, setting) -> None:
    # What Python makes of a Latin-1 terminal's "é": a lone surrogate, which pymongo
    # and kafka-python cannot encode (a traceback, before this check).
    with pytest.raises(SettingsError) as caught:
        consumer(argv, env)
    assert str(caught.value).startswith(setting) and "no es texto UTF-8" in str(caught.value)
    assert "contrase" not in str(caught.value) and "tricas" not in str(caught.value)


def test_error_names_the_environment_variable_when_the_value_came_from_there() -> None:
    with pytest.raises(SettingsError) as caught:
        consumer([], {"KPI_WINDOW_SIZE": "-3"})
    assert str(caught.value).startswith("KPI_WINDOW_SIZE (o --window-size)")


def test_alert_thresholds_can_be_switched_off() -> None:
    c = consumer(["--alert-cpu-avg", "off", "--alert-error-sum", "3"])
    assert c.alerts.cpu_percent_avg is None
    assert c.alerts.memory_percent_avg == 90
    assert c.alerts.error_count_sum == 3


def test_choices_are_read_in_any_case_and_kept_as_documented() -> None:
    p = producer(["--source", " PSUTIL ", "--log-level", "debug", "--security-protocol", "sasl_ssl",
                  "--sasl-mechanism", "scram-sha-256", "--sasl-username", "u", "--sasl-password", "p4ss"])
    assert (p.source, p.log_level) == ("psutil", "DEBUG")
    assert (p.kafka.security_protocol, p.kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert load_report_settings(["--chart", "No"], environ={}, dotenv_path="").chart is False
    with pytest.raises(SettingsError, match=r"--chart: 'maybe' no es válido: los valores posibles son yes, no$"):
        load_report_settings(["--chart", "maybe"], environ={}, dotenv_path="")


def test_psutil_source_keeps_one_given_server_id() -> None:
    p = producer(["--source", "psutil", "--servers", "mi-portatil"])
    assert p.server_ids == ("mi-portatil",) and p.server_ids_given
    assert not producer(["--source", "psutil"]).server_ids_given


def test_secrets_are_known_and_never_in_repr() -> None:
    c = consumer([], {"MONGODB_URI": "mongodb+srv://ana:S3cr%40to@cluster0.example.net/",
                      "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
                      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "kafka-pass-123"})
    assert set(c.secrets) == {"S3cr@to", "kafka-pass-123"}
    assert "S3cr" not in repr(c) and "kafka-pass" not in repr(c)
    # Registered as soon as read: any later line masks them.
    assert Redactor()("fallo con kafka-pass-123 y S3cr%40to") == "fallo con *** y ***"


def test_a_password_with_unencoded_slash_and_at_is_refused_without_showing_any_piece_of_it() -> None:
    # pymongo would accept it, with "ss" as the host (named in every error line) and
    # "2026@localhost:27017" as the database.
    with pytest.raises(SettingsError) as caught:
        consumer([], {"MONGODB_URI": "mongodb://alumno:Pq@ss/2026@localhost:27017"})
    line = str(caught.value)
    assert "MONGODB_URI" in line and "@ → %40" in line
    assert "Pq" not in line and "ss/2026" not in line and "2026@" not in line
    assert Redactor()("Pq@ss/2026") == "***", "the whole password is registered as a secret"
    consumer([], {"MONGODB_URI": "mongodb://alumno:Pq%40ss%2F2026@localhost:27017/db?appName=a@b"})  # encoded: fine


def test_the_atlas_line_of_env_example_uncommented_as_it_is_says_so(tmp_path: Path) -> None:
    # Else: a minute of DNS errors for "<cluster>.mongodb.net", then exit 1.
    line = next(text for text in (Path(__file__).resolve().parents[2] / ".env.example").read_text().splitlines()
                if text.startswith("# MONGODB_URI=mongodb+srv://"))
    dotenv = tmp_path / ".env"
    dotenv.write_text(line.removeprefix("# ") + "\n")
    with pytest.raises(SettingsError) as caught:
        consumer(dotenv=dotenv)
    message = Redactor()(str(caught.value))  # what the error line shows
    assert message.startswith("MONGODB_URI (o --mongodb-uri): todavía lleva <usuario>, <contraseña>, <cluster> de "
                              ".env.example"), message
    with pytest.raises(SettingsError, match="todavía lleva <cluster> de .env.example"):
        consumer(["--mongodb-uri", "mongodb+srv://ana:Largu1sima@<cluster>.mongodb.net/"])


def test_a_uri_without_credentials_is_not_a_secret() -> None:
    consumer([], {"MONGODB_URI": "mongodb://db.example.net:27018/"})
    assert Redactor()("MongoDB (mongodb://db.example.net:27018/) no responde") == \
        "MongoDB (mongodb://db.example.net:27018/) no responde"
    consumer([], {"MONGODB_URI": "mongodb://db.example.net/?authMechanismProperties=AWS_SESSION_TOKEN:tok-42"})
    assert "tok-42" not in Redactor()("mongodb://db.example.net/?authMechanismProperties=AWS_SESSION_TOKEN:tok-42")


def test_help_lists_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    for loader, options in ((load_consumer_settings, CONSUMER_OPTIONS), (load_producer_settings, PRODUCER_OPTIONS),
                            (load_report_settings, REPORT_OPTIONS)):
        with pytest.raises(SystemExit) as caught:
            loader(["--help"], environ={}, dotenv_path="")
        assert caught.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert text.startswith("uso:")
        for option in options:
            assert option.flag in text
            if option.env:
                assert option.env in text
            default = option.default if option.default is not None else option.unset
            assert f"por defecto: {default}" in text, option.flag
        assert text.count("por defecto:") == len(options), "one default per flag, no more"


def test_unknown_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        consumer(["--windowsize", "3"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--windowsize" in err


@pytest.mark.parametrize("argv", [["--mongodb-uri", "mongodb://ana:S3cret@db"],
                                  ["--mongodb-uri=mongodb://ana:S3cret@db"], ["--sasl-pasword", "S3cret"], ["S3cret"]])
def test_unknown_flags_are_named_but_their_values_never_shown(argv, capsys: pytest.CaptureFixture[str]) -> None:
    # The producer has no --mongodb-uri: a URI given to it by mistake must not be echoed.
    with pytest.raises(SystemExit) as caught:
        producer(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "S3cret" not in err and "1 valor que no se muestra" in err
    assert argv[0].split("=")[0] in err or argv[0] == "S3cret"


@pytest.mark.parametrize("argv, setting", [
    (["--kpi-collection", "system_metrics_raw_iabd06"], "MONGODB_KPI_COLLECTION"),
    (["--deadletter-collection", "system_metrics_kpis_iabd06"], "MONGODB_DEADLETTER_COLLECTION"),
    (["--raw-collection", "x", "--deadletter-collection", "x"], "MONGODB_DEADLETTER_COLLECTION"),
])
def test_two_collections_with_one_name_are_refused(argv, setting) -> None:
    with pytest.raises(SettingsError) as caught:
        consumer(argv)
    assert caught.value.setting.startswith(setting) and "cada colección necesita su propio nombre" in str(caught.value)


def test_report_settings() -> None:
    r = load_report_settings(["--last", "5", "--since", "2026-11-26"], environ={}, dotenv_path="")
    assert r.last == 5 and r.since.isoformat() == "2026-11-26T00:00:00+00:00" and r.chart
    with pytest.raises(SettingsError):
        load_report_settings(["--since", "ayer"], environ={}, dotenv_path="")
    with pytest.raises(SettingsError, match="--since: '0001-01-01T00:00[+]05:00' en UTC cae fuera"):
        load_report_settings(["--since", "0001-01-01T00:00+05:00"], environ={}, dotenv_path="")
    with pytest.raises(SettingsError, match="--last"):  # MongoDB's limit is a 64-bit integer
        load_report_settings(["--last", "1" + "0" * 20], environ={}, dotenv_path="")
    assert load_report_settings(["--output", "hoy.PNG"], environ={}, dotenv_path="").output == "hoy.PNG"
    for other in ("hoy.pdf", "hoy.xyz", "hoy"):  # matplotlib would write another format, or fail
        with pytest.raises(SettingsError, match="--output"):
            load_report_settings(["--output", other], environ={}, dotenv_path="")


def test_a_report_output_in_a_missing_folder_is_a_bad_setting(tmp_path: Path) -> None:
    # Known before connecting, not after a report that may take a while.
    with pytest.raises(SettingsError, match="^--output: la carpeta 'no-hay' no existe$"):
        load_report_settings(["--output", "no-hay/x.png"], environ={}, dotenv_path="")
    long_path = str(tmp_path / ("x" * 80) / "informes" / "hoy.png")  # the end is what tells where
    with pytest.raises(SettingsError, match="^--output: la carpeta '…x+/informes' no existe$"):
        load_report_settings(["--output", long_path], environ={}, dotenv_path="")
    (tmp_path / "carpeta.png").mkdir()
    with pytest.raises(SettingsError, match="--output: '.*carpeta.png' es una carpeta, no un fichero"):
        load_report_settings(["--output", str(tmp_path / "carpeta.png")], environ={}, dotenv_path="")
    chart = str(tmp_path / "x.png")
    assert load_report_settings(["--output", chart], environ={}, dotenv_path="").output == chart


def test_the_readme_settings_table_matches_the_option_tables() -> None:
    """Each row of README's «Configuración» table: variable, flag, default and which
    scripts read it, as the option tables say (the --help texts come from those)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| `(--[a-z-]+)` \| (.*) \| ([a-z ]+) \|$", readme, re.M)
    readers = {"ambos": {"P", "C"}, "los tres": {"P", "C", "R"}, "productor": {"P"}, "consumidor": {"C"},
               "consumidor e informe": {"C", "R"}}
    options: dict[str, tuple[str, str | None, set[str]]] = {}
    for script, table in (("P", PRODUCER_OPTIONS), ("C", CONSUMER_OPTIONS), ("R", REPORT_OPTIONS)):
        for option in table:
            if option.env:
                options.setdefault(option.env, (option.flag, option.default, set()))[2].add(script)
    assert {row[0] for row in rows} == set(options)
    for env, flag, default, who in rows:
        assert (flag, readers[who]) == (options[env][0], options[env][2]), env
        assert default.startswith(f"`{options[env][1]}`" if options[env][1] else "sin valor"), env


def test_a_kafka_ca_file_must_be_a_pem_tls_can_load_and_needs_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", exc_type=ImportError)  # Pyodide: no binary cryptography
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(ca)
    assert consumer(["--security-protocol", "SSL", "--ssl-cafile", str(ca)]).kafka.ssl_cafile == str(ca)
    assert producer([], {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
                         "KAFKA_SASL_USERNAME": "ana", "KAFKA_SASL_PASSWORD": "pw",
                         "KAFKA_SSL_CAFILE": str(ca)}).kafka.ssl_cafile == str(ca)
    not_pem = tmp_path / "clave.txt"
    not_pem.write_text("esto no es un certificado\n")
    for value, says in ((str(tmp_path / "no-existe.pem"), "no existe el fichero"),
                        (str(not_pem), "no es un certificado PEM que TLS pueda leer")):
        with pytest.raises(SettingsError) as caught:
            consumer([], {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": value})
        assert caught.value.setting.startswith("KAFKA_SSL_CAFILE") and says in str(caught.value)
    with pytest.raises(SettingsError) as caught:  # PLAINTEXT would never read it: say so
        producer(["--ssl-cafile", str(ca)])
    assert caught.value.setting.startswith("KAFKA_SSL_CAFILE") and "(ahora PLAINTEXT)" in str(caught.value)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_with_a_protocol_that_would_ignore_them_are_refused(protocol: str) -> None:
    # kafka-python would connect without SASL: the credentials given would do nothing.
    env = {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "ana",
           "KAFKA_SASL_PASSWORD": "S3cret-largo"}
    with pytest.raises(SettingsError) as caught:
        producer([], env)
    assert str(caught.value) == ("KAFKA_SASL_MECHANISM (--sasl-mechanism): solo sirve con KAFKA_SECURITY_PROTOCOL="
                                 f"SASL_SSL o SASL_PLAINTEXT (ahora {protocol})")


def test_a_client_certificate_comes_with_its_key_and_tls_must_be_able_to_use_them(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", exc_type=ImportError)  # Pyodide: no binary cryptography
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    mine, other = ca.issue_cert("alumno"), ca.issue_cert("otro")
    cert, key, other_key, locked = (tmp_path / n for n in ("alumno.pem", "alumno.key", "otro.key", "cifrada.key"))
    mine.cert_chain_pems[0].write_to_path(cert)
    mine.private_key_pem.write_to_path(key)
    other.private_key_pem.write_to_path(other_key)
    private = serialization.load_pem_private_key(mine.private_key_pem.bytes(), password=None)
    locked.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"clave")))
    ssl_env = {"KAFKA_SECURITY_PROTOCOL": "SSL"}
    k = consumer(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)], ssl_env).kafka
    assert (k.ssl_certfile, k.ssl_keyfile) == (str(cert), str(key))
    for argv, setting, says in (
            (["--ssl-certfile", str(cert)], "KAFKA_SSL_KEYFILE", "van juntos: falta este"),
            (["--ssl-keyfile", str(key)], "KAFKA_SSL_CERTFILE", "van juntos: falta este"),
            (["--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key)], "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE",
             "la clave debe ser la de ese certificado"),
            # OpenSSL would ask for the password on the terminal, inside kafka-python.
            (["--ssl-certfile", str(cert), "--ssl-keyfile", str(locked)], "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE",
             "cifrada con una contraseña"),
            (["--ssl-certfile", str(tmp_path / "no.pem"), "--ssl-keyfile", str(key)], "KAFKA_SSL_CERTFILE",
             "no existe el fichero")):
        with pytest.raises(SettingsError) as caught:
            consumer(argv, ssl_env)
        assert caught.value.setting.startswith(setting) and says in str(caught.value), str(caught.value)
    with pytest.raises(SettingsError) as caught:
        producer(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
    assert caught.value.setting.startswith("KAFKA_SSL_CERTFILE") and "(ahora PLAINTEXT)" in str(caught.value)
