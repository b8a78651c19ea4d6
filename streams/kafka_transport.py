"""Faust's aiokafka transport with a configurable fetch wait.

Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. Apache
Kafka answers a waiting fetch as soon as records arrive, so the value only bounds idle polling;
Tansu (the broker used locally and in CI) answers it when the wait runs out, so every record
waited up to 1.5 s before the agent saw it: measured with plain aiokafka on Tansu, a record
produced every 100 ms reached the consumer after 397 ms (p50) with a 1,500 ms wait and after
2 ms with a 100 ms one. A short wait costs a few idle fetch requests a second on either broker.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


def kafka_transport(fetch_max_wait_s: float) -> type[driver.Transport]:
    """Faust's ``kafka://`` transport whose consumer waits at most ``fetch_max_wait_s`` per fetch."""
    if fetch_max_wait_s <= 0:
        raise ValueError(f"fetch_max_wait_s must be > 0, got {fetch_max_wait_s}")
    wait_ms = max(1, round(fetch_max_wait_s * 1000))

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands this to its fetcher in start(), which has not run yet; Faust passes
            # no way to set it (see the module docstring), so this is the one place to change it.
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class WaitingConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer

    return Transport
