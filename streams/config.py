"""The configuration of the ingest stage: small typed views of :class:`core.settings.Settings`.

Every setting is declared once, in :mod:`core.settings` (type, environment variable, default with
its unit, doc); this module only says which of them ``streams/`` reads. The top of the stack
(:mod:`interest_graph.launch`, the ops commands) builds an :class:`IngestConfig` with
:meth:`IngestConfig.from_settings` and hands it down; nothing else in ``streams/`` reads
:class:`~core.settings.Settings`. The field defaults are the declared defaults, so
``EventContract()`` and ``IngestConfig()`` are the stock configuration.

:class:`~core.settings.SettingsError` is re-exported for :func:`streams.dead_letter.check_record_limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.domain import EventType
from core.privacy import Privacy
from core.settings import Settings, SettingsError

__all__ = ["EventContract", "IngestConfig", "SettingsError"]


@dataclass(frozen=True, slots=True)
class EventContract:
    """The limits and default weights of the event and catalog contracts
    (:mod:`streams.validation`, :mod:`streams.catalog`).

    Args:
        max_id_length (int): longest accepted user/item/event id, in characters
            (default: ``IG_MAX_ID_LENGTH``'s).
        max_event_bytes (int): largest accepted event value, in bytes (default: ``IG_MAX_EVENT_BYTES``'s).
        max_item_bytes (int): largest accepted catalog record value, in bytes
            (default: ``IG_MAX_ITEM_BYTES``'s).
        max_future_skew_s (float): furthest an event may be stamped in the future, in seconds
            (default: ``IG_MAX_FUTURE_SKEW``'s).
        min_event_ts_ms (int): earliest accepted event time, epoch ms (default: ``IG_MIN_EVENT_TS``'s).
        weight_view (float): default edge weight of a view (default: ``IG_WEIGHT_VIEW``'s).
        weight_click (float): default edge weight of a click (default: ``IG_WEIGHT_CLICK``'s).
        weight_add_to_cart (float): default edge weight of add_to_cart (default: ``IG_WEIGHT_ADD_TO_CART``'s).
        weight_purchase (float): default edge weight of a purchase (default: ``IG_WEIGHT_PURCHASE``'s).
        weight_like (float): default edge weight of a like (default: ``IG_WEIGHT_LIKE``'s).
        weight_rating_per_star (float): weight of a rating event per star of its rating
            (default: ``IG_WEIGHT_RATING_PER_STAR``'s).
        edge_half_life_h (float): event time for an edge weight to halve, in hours; 0 = no decay
            (default: ``IG_EDGE_HALF_LIFE``'s).
    """

    max_id_length: int = Settings.max_id_length.default
    max_event_bytes: int = Settings.max_event_bytes.default
    max_item_bytes: int = Settings.max_item_bytes.default
    max_future_skew_s: float = Settings.max_future_skew_s.default
    min_event_ts_ms: int = Settings.min_event_ts_ms.default
    weight_view: float = Settings.weight_view.default
    weight_click: float = Settings.weight_click.default
    weight_add_to_cart: float = Settings.weight_add_to_cart.default
    weight_purchase: float = Settings.weight_purchase.default
    weight_like: float = Settings.weight_like.default
    weight_rating_per_star: float = Settings.weight_rating_per_star.default
    edge_half_life_h: float = Settings.edge_half_life_h.default

    def __post_init__(self) -> None:
        if self.edge_half_life_h < 0:
            raise ValueError(f"edge_half_life_h must be >= 0, got {self.edge_half_life_h}")

    @property
    def edge_half_life_ms(self) -> float:
        """The edge half-life in ms (0 = no decay)."""
        return self.edge_half_life_h * 3_600_000

    @classmethod
    def from_settings(cls, settings: Settings) -> EventContract:
        """The contract these settings declare.

        Args:
            settings (Settings): the process's settings.
        """
        return settings.section(cls)

    def default_weight(self, event_type: EventType) -> float:
        """Edge weight of an event of this type that carries no explicit weight or rating.

        Args:
            event_type (EventType): the event's type; a rating without stars counts as 4 stars.
        """
        return {
            EventType.VIEW: self.weight_view,
            EventType.CLICK: self.weight_click,
            EventType.ADD_TO_CART: self.weight_add_to_cart,
            EventType.PURCHASE: self.weight_purchase,
            EventType.LIKE: self.weight_like,
            EventType.RATING: self.weight_rating_per_star * 4.0,
        }[event_type]


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What the ingest worker (:mod:`streams.app`, :mod:`streams.worker`) reads: broker, topics,
    consumer group, batching, record size limits and the event contract.

    Args:
        broker_url (str): Kafka bootstrap servers, faust style ``kafka://host:port[;host:port]``
            (default: ``IG_BROKER_URL``'s).
        events_topic (str): topic of interaction events (default: ``IG_EVENTS_TOPIC``'s).
        items_topic (str): topic of item catalog records (default: ``IG_ITEMS_TOPIC``'s).
        dead_letter_topic (str): where rejected records go (default: ``IG_DEAD_LETTER_TOPIC``'s).
        topic_partitions (int): partitions of the events topic when it is created
            (default: ``IG_TOPIC_PARTITIONS``'s).
        consumer_group (str): Faust app id = Kafka consumer group (default: ``IG_CONSUMER_GROUP``'s).
        broker_session_timeout_s (float): consumer group session timeout, in seconds
            (default: ``IG_BROKER_SESSION_TIMEOUT``'s).
        broker_rebalance_timeout_s (float): consumer group rebalance timeout, in seconds
            (default: ``IG_BROKER_REBALANCE_TIMEOUT``'s).
        broker_fetch_max_wait_s (float): longest a fetch waits at the broker for records, in seconds
            (default: ``IG_BROKER_FETCH_MAX_WAIT``'s).
        broker_max_message_bytes (int): largest record the broker accepts, in bytes
            (default: ``IG_BROKER_MAX_MESSAGE_BYTES``'s).
        batch_max_events (int): most events folded into one store transaction
            (default: ``IG_BATCH_MAX_EVENTS``'s).
        batch_window_s (float): longest the agent waits to fill a batch, in seconds
            (default: ``IG_BATCH_WINDOW``'s).
        dead_letter_max_original_bytes (int): most bytes of a rejected record a dead letter keeps
            (default: ``IG_DEAD_LETTER_MAX_ORIGINAL_BYTES``'s).
        stall_after_s (float): pending events with no store write for this long mark the agent
            stalled, in seconds (default: ``IG_STALL_AFTER``'s).
        contract (EventContract): limits and default weights of the records read
            (default: ``EventContract()``).
        privacy (Privacy): pseudonyms, the erasure key and dead-letter redaction
            (default: ``Privacy()``, pseudonyms off and a random erasure key).
    """

    broker_url: str = Settings.broker_url.default
    events_topic: str = Settings.events_topic.default
    items_topic: str = Settings.items_topic.default
    dead_letter_topic: str = Settings.dead_letter_topic.default
    topic_partitions: int = Settings.topic_partitions.default
    consumer_group: str = Settings.consumer_group.default
    broker_session_timeout_s: float = Settings.broker_session_timeout_s.default
    broker_rebalance_timeout_s: float = Settings.broker_rebalance_timeout_s.default
    broker_fetch_max_wait_s: float = Settings.broker_fetch_max_wait_s.default
    broker_max_message_bytes: int = Settings.broker_max_message_bytes.default
    batch_max_events: int = Settings.batch_max_events.default
    batch_window_s: float = Settings.batch_window_s.default
    dead_letter_max_original_bytes: int = Settings.dead_letter_max_original_bytes.default
    stall_after_s: float = Settings.stall_after_s.default
    contract: EventContract = field(default_factory=EventContract)
    privacy: Privacy = field(default_factory=Privacy)

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestConfig:
        """The ingest configuration these settings declare.

        Args:
            settings (Settings): the process's settings.
        """
        return settings.section(cls, contract=EventContract.from_settings(settings),
                                privacy=Privacy.from_settings(settings))

    @property
    def bootstrap_servers(self) -> list[str]:
        """``broker_url`` as host:port strings for kafka-python/aiokafka clients."""
        return [part.split("://", 1)[-1] for part in self.broker_url.split(";") if part]
