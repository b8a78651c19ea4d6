"""The Kafka transport factory: a fetch wait is a positive duration, kept in whole milliseconds."""

from __future__ import annotations

import pytest
from faust.transport.drivers import aiokafka as driver

from streams.kafka_transport import kafka_transport


def test_transport_is_fausts_kafka_transport_with_our_consumer() -> None:
    transport = kafka_transport(0.1)
    assert issubclass(transport, driver.Transport)
    assert issubclass(transport.Consumer, driver.Consumer) and transport.Consumer is not driver.Consumer


@pytest.mark.parametrize("wait_s", [0.0, -1.0])
def test_fetch_wait_must_be_positive(wait_s: float) -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_s"):
        kafka_transport(wait_s)
