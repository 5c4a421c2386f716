"""What the scripts ask of Kafka besides sending and reading: no auto-created topic.

The behaviour itself (a broker that lost its data gets the topic back with
KAFKA_TOPIC_PARTITIONS partitions, created by the producer) is tested against a real
broker in tests/integration/test_fault_broker_restart.py.
"""

from __future__ import annotations

from kafka.cluster import ClusterMetadata

from metrics_pipeline.kafka_connection import forbid_topic_auto_creation


def test_metadata_requests_stop_asking_the_broker_to_create_the_topic() -> None:
    cluster = ClusterMetadata(bootstrap_servers="localhost:1")  # no network until used
    # What a producer or consumer of kafka-python 3.0.x keeps, whatever it was given.
    assert cluster.metadata_request().allow_auto_topic_creation is True
    forbid_topic_auto_creation(cluster)
    assert cluster.metadata_request().allow_auto_topic_creation is False


def test_a_client_of_another_shape_is_left_alone() -> None:
    forbid_topic_auto_creation(None)
    forbid_topic_auto_creation(object())
    forbid_topic_auto_creation(type("Cluster", (), {"config": {"other": 1}})())
