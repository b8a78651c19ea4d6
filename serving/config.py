"""Serving's own configuration: the settings the server and the client read, and nothing else.

Every setting is declared once, in :mod:`core.settings`; :meth:`ServingConfig.from_settings` and
:meth:`ClientConfig.from_settings` pick this room's fields at the top (``interest_graph``), and
only these values travel down. This is the one module of ``serving`` that imports the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.privacy import Privacy
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """What :func:`~serving.server.start_serving` and the servicer read.

    Attributes:
        grpc_addr (str): Address the server binds (``IG_GRPC_ADDR``).
        grpc_share_port (bool): SO_REUSEPORT (``IG_GRPC_SHARE_PORT``).
        max_k (int): Largest k a client may ask for (``IG_MAX_K``).
        max_id_length (int): Longest accepted user/item id (``IG_MAX_ID_LENGTH``), chars.
        max_filter_values (int): Most categories one item filter may name (``IG_MAX_FILTER_VALUES``).
        max_streams (int): Most concurrent WatchRecommendations streams (``IG_MAX_STREAMS``).
        grpc_workers (int): Threads answering unary RPCs (``IG_GRPC_WORKERS``).
        index_poll_s (float): How often the index loader pulls new embeddings (``IG_INDEX_POLL``), s.
        grace_s (float): Grace period for in-flight RPCs on shutdown (``IG_GRACE``), s.
        ann_min_items (int): Catalogs with fewer items are searched exactly; 0 = never HNSW
            (``IG_ANN_MIN_ITEMS``).
        ann_min_scan_mb (float): Exact-scan size (items x width x 4 bytes) from which HNSW is used
            (``IG_ANN_MIN_SCAN_MB``), MB.
        ann_ef_search (int): HNSW efSearch, the narrowest calibrated (``IG_ANN_EF_SEARCH``).
        ann_target_recall (float): Recall@10 each graph is calibrated to; 0 = off (``IG_ANN_TARGET_RECALL``).
        ann_ef_max (int): Widest efSearch calibration may choose (``IG_ANN_EF_MAX``).
        item_codec (str): How item vectors are held, ``f32`` or ``int8`` (``IG_ITEM_CODEC``).
        trending (bool): Users without a personal vector get the trending list (``IG_TRENDING``).
        trending_half_life_s (float): Half-life of a trending contribution, event time; 0 = all-time
            (``IG_TRENDING_HALF_LIFE``), s.
        trending_reseed_s (float): ``serve`` alone: seconds between trending updates from the store
            (``IG_TRENDING_RESEED``), s.
        blend_prior_interactions (float): n0 of the personal weight n / (n + n0); 0 = no blending
            (``IG_BLEND_PRIOR_INTERACTIONS``).
        next_items (bool): Judge each segment's mix of next items and personal share (``IG_NEXT_ITEMS``).
        next_items_judged_per_s (float): Committed events judged per second at most
            (``IG_NEXT_ITEMS_JUDGED_PER_S``), events/s.
        tls_cert (str): Server certificate PEM file; with ``tls_key`` turns TLS on (``IG_TLS_CERT``).
        tls_key (str): Server private key PEM file (``IG_TLS_KEY``).
        admin_service (bool): Serve the Admin service beside the Recommender (``IG_ADMIN_SERVICE``).
        auth_token (str): Bearer token every RPC must carry; empty = no auth (``IG_AUTH_TOKEN``).
            A secret: kept out of ``repr``.
        privacy (Privacy): Pseudonyms (client ids are mapped like ingest maps them) and the
            erasure key (forgotten users are dropped); ``IG_ID_KEY``, ``IG_ERASURE_KEY``.
    """

    grpc_addr: str
    grpc_share_port: bool
    max_k: int
    max_id_length: int
    max_filter_values: int
    max_streams: int
    grpc_workers: int
    index_poll_s: float
    grace_s: float
    ann_min_items: int
    ann_min_scan_mb: float
    ann_ef_search: int
    ann_target_recall: float
    ann_ef_max: int
    item_codec: str
    trending: bool
    trending_half_life_s: float
    trending_reseed_s: float
    blend_prior_interactions: float
    next_items: bool
    next_items_judged_per_s: float
    tls_cert: str
    tls_key: str
    admin_service: bool
    auth_token: str = field(repr=False)
    privacy: Privacy = field(default_factory=Privacy, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingConfig:
        return settings.section(cls, privacy=Privacy.from_settings(settings))


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What :meth:`~serving.client.RecommenderClient.from_config` reads.

    Attributes:
        grpc_addr (str): Address of the server (``IG_GRPC_ADDR``).
        tls_root_cert (str): CA certificate PEM file to trust; empty = plaintext (``IG_TLS_ROOT_CERT``).
        auth_token (str): Bearer token sent with every call; empty = none (``IG_AUTH_TOKEN``).
            A secret: kept out of ``repr``.
    """

    grpc_addr: str
    tls_root_cert: str
    auth_token: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientConfig:
        return settings.section(cls)
