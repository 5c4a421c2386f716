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
