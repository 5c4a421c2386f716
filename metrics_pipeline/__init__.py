"""The logic behind the course scripts, one module per concern.

* ``settings``: every setting (flag, environment, ``.env``), parsed and checked;
* ``message``: the metric message schema and its validation;
* ``simulation`` / ``host_metrics``: where the producer's metrics come from;
* ``producer_loop``: sending rounds of messages, each send confirmed;
* ``kafka_connection``: client options, waiting for Kafka, creating the topic;
* ``consumer_loop``: group membership, polling, rebalances, stopping;
* ``ingest``: the commit path of one batch (store, windows, KPIs, commit);
* ``windows`` / ``kpis`` / ``alerts`` / ``documents``: pure logic of the windows;
* ``storage`` / ``retry``: MongoDB writes and retrying them;
* ``report``: the KPI report and its chart;
* ``log_setup`` / ``redaction`` / ``shutdown`` / ``cli`` / ``clock`` / ``errors``: plumbing.
"""

import sys as _sys

# datetime.fromisoformat reads every ISO 8601 form (a "Z" suffix included) only since
# Python 3.11: on an older Python valid messages would go to the dead-letter collection.
if _sys.version_info < (3, 11):  # pragma: no cover - this machine runs 3.11
    _sys.stderr.write("error: estos scripts necesitan Python 3.11 o posterior; este es "
                      f"{_sys.version.split()[0]}\n")
    raise SystemExit(1)
