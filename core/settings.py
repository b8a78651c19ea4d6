"""Settings, declared once: type, environment variable, default (with its unit) and a docstring.

Each :class:`Setting` is a descriptor on :class:`Settings`; ``Settings.from_env()`` reads the
environment, ``Settings(**overrides)`` is what tests use. ``interest-graph settings`` prints the
reference table generated from these declarations, so the docs cannot drift from the code.
"""

from __future__ import annotations

import builtins  # the Setting field named 'type' shadows the builtin in its class body
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from core.errors import InterestGraphError

T = TypeVar("T")
#: A room's config dataclass (see :meth:`Settings.section`).
C = TypeVar("C")


class SettingsError(InterestGraphError, ValueError):
    """A setting has a value of the wrong type or out of range (not retryable)."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"expected a boolean, got {raw!r}")


def _item_codec(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"f32", "int8"}:
        raise ValueError("expected f32 or int8")
    return value


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One declared setting. ``unit`` is part of the docs (``"ms"``, ``"s"``, ``"events"``...).

    A ``secret`` (a password, a token) is never printed and never put in an environment dump
    (:meth:`Settings.as_environ`): a child process inherits it from where it was set, the environment.
    """

    type: Callable[[str], T]
    env: str
    default: T
    doc: str
    unit: str = ""
    secret: bool = False
    #: The attribute name on :class:`Settings`, filled in by ``__set_name__``.
    name: str = field(default="", init=False)

    def __set_name__(self, owner: builtins.type, name: str) -> None:
        object.__setattr__(self, "name", name)

    @overload
    def __get__(self, obj: None, owner: builtins.type) -> Setting[T]: ...
    @overload
    def __get__(self, obj: Settings, owner: builtins.type) -> T: ...
    def __get__(self, obj: Settings | None, owner: builtins.type) -> Setting[T] | T:
        if obj is None:
            return self
        return obj._values.get(self.name, self.default)

    def parse(self, raw: str) -> T:
        try:
            return self.type(raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{self.env}={raw!r}: {exc}") from exc


class Settings:
    """All interest-graph settings. Read from the environment with :meth:`from_env`."""

    # --- Kafka -----------------------------------------------------------------------------
    broker_url = Setting(str, "IG_BROKER_URL", "kafka://127.0.0.1:9092",
                         "Kafka bootstrap servers, faust style (``kafka://host:port[;host:port]``).")
    events_topic = Setting(str, "IG_EVENTS_TOPIC", "ig-events",
                           "Topic of interaction events (JSON, keyed by user_id).")
    items_topic = Setting(str, "IG_ITEMS_TOPIC", "ig-items",
                          "Topic of item catalog records (JSON: item_id, title, categories, text).")
    dead_letter_topic = Setting(str, "IG_DEAD_LETTER_TOPIC", "ig-events-dlq",
                                "Where invalid events go, with the original bytes and the reason.")
    topic_partitions = Setting(int, "IG_TOPIC_PARTITIONS", 4,
                               "Partitions of the events topic when it is created.", "partitions")
    consumer_group = Setting(str, "IG_CONSUMER_GROUP", "interest-graph",
                             "Faust app id = Kafka consumer group of the ingest agents.")
    broker_session_timeout_s = Setting(float, "IG_BROKER_SESSION_TIMEOUT", 6.0,
                                       "Consumer group session timeout; short so restarts rejoin fast.", "s")
    broker_rebalance_timeout_s = Setting(float, "IG_BROKER_REBALANCE_TIMEOUT", 6.0,
                                         "Consumer group rebalance timeout.", "s")
    broker_fetch_max_wait_s = Setting(float, "IG_BROKER_FETCH_MAX_WAIT", 0.1,
                                      "Longest a consumer fetch waits at the broker for records. Tansu answers "
                                      "a fetch only when this runs out (Faust's fixed 1.5 s made every event wait "
                                      "up to 1.5 s); Apache Kafka answers as soon as records arrive.", "s")
    broker_max_message_bytes = Setting(int, "IG_BROKER_MAX_MESSAGE_BYTES", 1_048_588,
                                       "Largest record the broker accepts (Apache Kafka's ``message.max.bytes``; "
                                       "its default). Our producers refuse bigger records and our consumers fetch "
                                       "at least this much per partition, so every record a broker holds can be "
                                       "read. Tansu 0.6 sets no limit of its own. IG_MAX_EVENT_BYTES, "
                                       "IG_MAX_ITEM_BYTES and every dead letter must fit well under it.", "bytes")
    # --- Ingest ----------------------------------------------------------------------------
    batch_max_events = Setting(int, "IG_BATCH_MAX_EVENTS", 5000,
                               "Most events the ingest agent folds into one store transaction.", "events")
    batch_window_s = Setting(float, "IG_BATCH_WINDOW", 0.05,
                             "Longest the agent waits to fill a batch before flushing it.", "s")
    max_event_bytes = Setting(int, "IG_MAX_EVENT_BYTES", 65_536,
                              "Largest accepted event value; bigger ones are dead-lettered as ``too_large`` "
                              "without being decoded (a valid event with 256-character ids is under 1 KiB).",
                              "bytes")
    max_item_bytes = Setting(int, "IG_MAX_ITEM_BYTES", 262_144,
                             "Largest accepted catalog record value; bigger ones are dead-lettered as "
                             "``too_large`` without being decoded (title and text keep 10,000 characters each).",
                             "bytes")
    dead_letter_max_original_bytes = Setting(int, "IG_DEAD_LETTER_MAX_ORIGINAL_BYTES", 16_384,
                                             "Most bytes of a rejected record a dead letter keeps; a longer "
                                             "record is cut, and its dead letter carries its full length and "
                                             "sha256. Must leave every dead letter under "
                                             "IG_BROKER_MAX_MESSAGE_BYTES.", "bytes")
    max_id_length = Setting(int, "IG_MAX_ID_LENGTH", 256,
                            "Longest accepted user/item/event id; longer events are dead-lettered.", "chars")
    max_future_skew_s = Setting(float, "IG_MAX_FUTURE_SKEW", 86400.0,
                                "Events stamped further than this in the future are dead-lettered.", "s")
    min_event_ts_ms = Setting(int, "IG_MIN_EVENT_TS", 631152000000,
                              "Events older than this (1990-01-01) are dead-lettered as absurd.", "epoch ms")
    weight_view = Setting(float, "IG_WEIGHT_VIEW", 0.5, "Default edge weight of a view.")
    weight_click = Setting(float, "IG_WEIGHT_CLICK", 1.0, "Default edge weight of a click.")
    weight_add_to_cart = Setting(float, "IG_WEIGHT_ADD_TO_CART", 2.0, "Default edge weight of add_to_cart.")
    weight_purchase = Setting(float, "IG_WEIGHT_PURCHASE", 4.0, "Default edge weight of a purchase.")
    weight_like = Setting(float, "IG_WEIGHT_LIKE", 2.0, "Default edge weight of a like.")
    weight_rating_per_star = Setting(float, "IG_WEIGHT_RATING_PER_STAR", 0.5,
                                     "Weight of a rating event per star of its rating (4 stars -> 2.0).")
    edge_half_life_h = Setting(float, "IG_EDGE_HALF_LIFE", 0.0,
                               "Event time for an edge weight to halve (interests that drift); 0 = weights never "
                               "decay. The store keeps weights in reference-time units (core.domain.EdgeDecay) and "
                               "refuses to change a half-life once it holds edges: replay the topic into a new "
                               "store instead.", "h")
    stall_after_s = Setting(float, "IG_STALL_AFTER", 30.0,
                            "Events pending this long with no store write mark the ingest agent stalled "
                            "(metric ig_ingest_stalled, `status`).", "s")
    # --- Graph store -----------------------------------------------------------------------
    store_backend = Setting(str, "IG_STORE", "ladybug", "Graph store backend: ``ladybug`` or ``neo4j``.")
    store_path = Setting(str, "IG_STORE_PATH", "data/graph.lbdb", "LadybugDB database path (embedded).")
    store_checkpoint_mb = Setting(float, "IG_STORE_CHECKPOINT_MB", 16.0,
                                  "The store folds LadybugDB's write-ahead log into the database file once the log "
                                  "holds this much: the write that crosses it holds new transactions back, waits for "
                                  "those running to end and checkpoints (graph_store/checkpoint_gate.py). On a grown "
                                  "store a checkpoint costs 300-700 ms whatever its size, so fewer are cheaper: 60 "
                                  "batches of 2,500 events spent 10 s checkpointing at 4 MiB and 3.3 s at 16 MiB "
                                  "(bench/RESULTS.md). Must be > 0.", "MiB")
    neo4j_uri = Setting(str, "NEO4J_URI", "", "Neo4j bolt URI; empty means no Neo4j.")
    neo4j_user = Setting(str, "NEO4J_USER", "neo4j", "Neo4j user name.")
    neo4j_password = Setting(str, "NEO4J_PASSWORD", "", "Neo4j password.", secret=True)
    neo4j_database = Setting(str, "NEO4J_DATABASE", "neo4j", "Neo4j database name.")
    # --- Model and refresh -----------------------------------------------------------------
    model_dir = Setting(str, "IG_MODEL_DIR", "data/model", "Where `train` writes and the worker reads the checkpoint.")
    model_method = Setting(str, "IG_MODEL_METHOD", "spectral",
                           "What `train` and the worker's bootstrap fit: ``spectral`` (SpectralCF, training-free, "
                           "served as-is), ``lightgcn`` (BPR), or the inductive GNNs ``sage`` (GraphSAGE) and "
                           "``gat`` (GAT), BPR-trained. The worker serves whatever the checkpoint holds.")
    spectral_rank = Setting(int, "IG_SPECTRAL_RANK", 992,
                            "Largest SpectralCF rank = embedding width (clipped to min(users, items)). 992 serves "
                            "an item in 996 bytes with int8 codes and its fold-in scale, under 1 KB, at recall@20 "
                            "0.1905 / NDCG@20 0.1597 on Gowalla (1,024: 0.1903 / 0.1597 at 1,028 bytes; "
                            "bench/serving_width.py).", "dims")
    spectral_values = Setting(str, "IG_SPECTRAL_VALUES", "weight",
                              "SpectralCF matrix values: ``weight`` (the edge's accumulated weight) or ``binary``.")
    embedding_dim = Setting(int, "IG_EMBEDDING_DIM", 64, "Embedding width of LightGCN.", "dims")
    num_layers = Setting(int, "IG_NUM_LAYERS", 2, "Propagation layers K of LightGCN (the k of k-hop refresh).")
    refresh_interval_s = Setting(float, "IG_REFRESH_INTERVAL", 0.2, "How often the refresh worker polls.", "s")
    refresh_fanout = Setting(int, "IG_REFRESH_FANOUT", 50,
                             "Most neighbours per node (highest weight first) pulled for a refresh; 0 = no cap.",
                             "neighbours")
    refresh_max_seeds = Setting(int, "IG_REFRESH_MAX_SEEDS", 2000,
                                "Most changed nodes taken into one refresh round.", "nodes")
    persist_interval_s = Setting(float, "IG_PERSIST_INTERVAL", 10.0,
                                 "In `up`, refreshed embeddings reach serving at once and the store behind it, "
                                 "coalesced, this often; 0 = every round, before serving (as `refresh` always does). "
                                 "A restart recomputes what a kill lost from the stored cursor; longer intervals "
                                 "coalesce more rewrites of the same item and leave ingest the store's write lock.",
                                 "s")
    bootstrap_min_edges = Setting(int, "IG_BOOTSTRAP_MIN_EDGES", 1000,
                                  "Without a checkpoint the refresh worker trains its own once the graph has "
                                  "this many edges, and retrains it whenever the graph doubles; 0 = never.",
                                  "edges")
    bootstrap_epochs = Setting(int, "IG_BOOTSTRAP_EPOCHS", 10,
                               "Training epochs of the refresh worker's own checkpoints.", "epochs")
    cold_start_interval_s = Setting(float, "IG_COLD_START_INTERVAL", 5.0,
                                    "How often the refresh worker embeds catalog items nobody has interacted "
                                    "with from their text (needs the ``text`` extra); 0 = never.", "s")
    cold_start_fit_items = Setting(int, "IG_COLD_START_FIT_ITEMS", 2000,
                                   "Warm items (catalog text and an embedding) the text projection is fitted on, "
                                   "once per loaded model.", "items")
    cold_start_batch = Setting(int, "IG_COLD_START_BATCH", 512,
                               "Most cold catalog items embedded per cold-start pass.", "items")
    # --- Serving ---------------------------------------------------------------------------
    grpc_addr = Setting(str, "IG_GRPC_ADDR", "127.0.0.1:50051", "Address the gRPC server binds / clients call.")
    grpc_share_port = Setting(bool, "IG_GRPC_SHARE_PORT", False,
                              "Let several serving processes bind the same address (SO_REUSEPORT), each "
                              "with its own index; the kernel spreads client connections (not calls) "
                              "over them. One Python server process uses about one core. Off: a taken "
                              "port is an error.")
    grpc_workers = Setting(int, "IG_GRPC_WORKERS", 16,
                           "Threads answering unary RPCs (IG_MAX_STREAMS more serve streams). Calls beyond "
                           "them wait in gRPC's queue without holding the interpreter lock; each thread "
                           "running Python competes for it with the rest of the process.", "threads")
    max_k = Setting(int, "IG_MAX_K", 1000, "Largest k a client may ask for.", "items")
    index_poll_s = Setting(float, "IG_INDEX_POLL", 0.1, "How often the server pulls new embeddings.", "s")
    grace_s = Setting(float, "IG_GRACE", 5.0, "Grace period for in-flight RPCs on shutdown.", "s")
    max_filter_values = Setting(int, "IG_MAX_FILTER_VALUES", 64,
                                "Most categories one include/exclude item filter may name.", "values")
    max_streams = Setting(int, "IG_MAX_STREAMS", 8,
                          "Most concurrent WatchRecommendations streams (more get RESOURCE_EXHAUSTED).", "streams")
    ann_min_items = Setting(int, "IG_ANN_MIN_ITEMS", 10_000,
                            "Catalogs with fewer items are always searched exactly; 0 = never HNSW.", "items")
    ann_min_scan_mb = Setting(float, "IG_ANN_MIN_SCAN_MB", 50.0,
                              "Catalogs whose exact scan reads at least this much (items x width x 4 bytes) "
                              "are searched with HNSW: 195,000 items at 64 dims, 12,600 at SpectralCF's 992. "
                              "An exact scan costs memory bandwidth in proportion (6.7 ms for 20,000 x 1,024 "
                              "on one core, against 0.7 ms for HNSW at recall@10 0.98).", "MB")
    item_codec = Setting(_item_codec, "IG_ITEM_CODEC", "int8",
                         "How serving holds item vectors: int8 (a signed byte per coordinate, one scale per "
                         "dimension: 996 bytes per item at the default 992 dims with the fold-in scale, recall@20 "
                         "and NDCG@20 on Gowalla within "
                         "0.001 of float32, bench/serving_width.py) or f32 (4 KB per item). The HNSW graph "
                         "holds the same codes.")
    ann_ef_search = Setting(int, "IG_ANN_EF_SEARCH", 128,
                            "HNSW search breadth (efSearch): higher = better recall, slower. With "
                            "IG_ANN_TARGET_RECALL, the narrowest breadth calibration tries.", "nodes")
    ann_target_recall = Setting(float, "IG_ANN_TARGET_RECALL", 0.95,
                                "Recall@10 against exact search each new HNSW graph is calibrated to: the "
                                "server measures its own served search on a sample of queries and widens "
                                "efSearch until it gets there (bench/ann_sweep.py: 128 suffices at 100,000 "
                                "fitted 992-dim items, 1,000,000 need about 768); 0 = IG_ANN_EF_SEARCH fixed.")
    ann_ef_max = Setting(int, "IG_ANN_EF_MAX", 1024,
                         "The widest efSearch calibration may choose (bounds the latency it may spend).", "nodes")
    trending = Setting(bool, "IG_TRENDING", True,
                       "Users without a personal vector (brand new, or no item the model knows) get the "
                       "trending list, its reply's source TRENDING; off = NOT_FOUND for them.")
    trending_half_life_s = Setting(float, "IG_TRENDING_HALF_LIFE", 15_768_000.0,
                                   "Half-life of an interaction's weight in the trending list, in event time; "
                                   "0 = all-time popularity. The default, 4,380 h (half a year), was the best of "
                                   "6 h to 1 year on replayed MovieLens (bench/streaming_eval.py, HR@10 0.0375 "
                                   "against 0.0082 at 6 h and 0.0277 all-time).", "s")
    trending_reseed_s = Setting(float, "IG_TRENDING_RESEED", 60.0,
                                "`serve` on its own: how often trending adds what the store's item totals grew "
                                "by (`up` hears every commit instead); 0 = only at start.", "s")
    blend_prior_interactions = Setting(float, "IG_BLEND_PRIOR_INTERACTIONS", 10.0,
                                       "n0 of the personal weight n / (n + n0) of a user with n items; the rest "
                                       "of the weight goes to trending (reply source BLENDED). 0 = personal "
                                       "lists for every user with a vector. The default gained HR@10 on each of "
                                       "six replayed stream cuts (bench/streaming_eval.py: 0.6-5 % overall, up to "
                                       "10-16 % for users with at most 5 items).", "interactions")
    next_items = Setting(bool, "IG_NEXT_ITEMS", False,
                         "Judge how Recommend lists mix their signals on the live stream, per segment of the "
                         "user's items: what other users took up after the user's latest items (item-to-item "
                         "transitions, fed by commits in `up`) and the blend's personal share, each mix scored "
                         "on sampled commits against the list the user had; a segment leaves the plain blend "
                         "only when a mix beats it clearly. Off = the blend alone, the default: on, a saturated "
                         "3,000 events/s step of `up` sustained 640-1,150 events/s against 1,430-1,550 off "
                         "(bench/RESULTS.md), while the drifting stream's HR@10 rose 1.30-1.38x.")
    next_items_judged_per_s = Setting(float, "IG_NEXT_ITEMS_JUDGED_PER_S", 20.0,
                                      "Committed events judged per second at most (each costs about one "
                                      "personal search, in a thread of its own): how fast the next-items "
                                      "weight learns, against the CPU it takes from Recommend.", "events/s")
    tls_cert = Setting(str, "IG_TLS_CERT", "", "Server certificate (PEM file); with IG_TLS_KEY turns TLS on.")
    tls_key = Setting(str, "IG_TLS_KEY", "", "Server private key (PEM file) for IG_TLS_CERT.")
    tls_root_cert = Setting(str, "IG_TLS_ROOT_CERT", "",
                            "CA certificate (PEM file) clients trust; set it to call a TLS server.")
    auth_token = Setting(str, "IG_AUTH_TOKEN", "",
                         "Bearer token every RPC must carry (health and reflection excepted); empty = no auth.",
                         secret=True)
    metrics_port = Setting(int, "IG_METRICS_PORT", 9108, "Prometheus exposition port (0 = off).", "port")
    # --- Privacy -----------------------------------------------------------------------------
    id_key = Setting(str, "IG_ID_KEY", "",
                     "Turns pseudonymous user ids on: at ingest every user id becomes its keyed hash "
                     "(HMAC-SHA256, ``p{version}_{32 hex}``) and serving hashes the id a client sends, so the "
                     "store, change log, metrics, logs and dead letters never hold a raw user id. At least 16 "
                     "bytes; empty = off (ids are stored as producers send them).", secret=True)
    id_key_version = Setting(int, "IG_ID_KEY_VERSION", 1,
                             "Version of IG_ID_KEY, written into every pseudonym: a new key gets a new version, "
                             "so pseudonyms of two keys never collide.", "version")
    erasure_key = Setting(str, "IG_ERASURE_KEY", "",
                          "Key of the deny-list of forgotten users, which holds only keyed hashes of their ids "
                          "(at least 16 bytes; every worker of a deployment must share it). Empty = the key in "
                          "IG_ERASURE_KEY_FILE.", secret=True)
    erasure_key_file = Setting(str, "IG_ERASURE_KEY_FILE", "data/erasure.key",
                               "Where the erasure key is kept when IG_ERASURE_KEY is empty; created with a random "
                               "key (mode 0600) on first use.")
    forget_retention_s = Setting(float, "IG_FORGET_RETENTION", 604_800.0,
                                 "How long a forgotten user stays on the deny-list (their events still in Kafka "
                                 "are ignored meanwhile). Set it to at least the events topic's ``retention.ms`` "
                                 "(Kafka's default is 7 days, this default).", "s")
    dead_letter_redact = Setting(bool, "IG_DEAD_LETTER_REDACT", False,
                                 "Dead letters keep only reason, field, position, length and a keyed hash of the "
                                 "record: no key, no payload, no message quoting it. Always on with IG_ID_KEY.")
    admin_service = Setting(bool, "IG_ADMIN_SERVICE", True,
                            "Serve the ``interestgraph.v1.Admin`` service (Forget) beside the Recommender, behind "
                            "IG_AUTH_TOKEN like every call; off = a server that can only recommend.")
    # --- Process -----------------------------------------------------------------------------
    gc_young_threshold = Setting(int, "IG_GC_YOUNG_THRESHOLD", 50_000,
                                 "Net allocations between the garbage collector's young passes, set once start-up "
                                 "has loaded and frozen its long-lived state (interest_graph/gc_pauses.py); 0 "
                                 "keeps CPython's defaults (700) and freezes nothing. Each pass holds the "
                                 "interpreter lock; pauses are ig_python_gc_pause_seconds.", "allocations")

    def __init__(self, **overrides: Any) -> None:
        known = {s.name for s in self.declared()}
        unknown = set(overrides) - known
        if unknown:
            raise SettingsError(f"unknown settings: {sorted(unknown)}")
        self._values: dict[str, Any] = dict(overrides)

    @classmethod
    def declared(cls) -> Iterator[Setting[Any]]:
        for value in vars(cls).values():
            if isinstance(value, Setting):
                yield value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in cls.declared():
            if setting.env in env:
                parser = _parse_bool if setting.type is bool else setting.parse
                values[setting.name] = parser(env[setting.env])
        values.update(overrides)
        return cls(**values)

    def as_environ(self) -> dict[str, str]:
        """These settings as environment variables, for starting a component as a child process.

        Secrets are left out: a dump of the environment (``/proc/PID/environ``, a crash report, a
        log of the child's command) must not carry them; the child inherits them from this
        process's own environment, where they were set.
        """
        return {s.env: str(getattr(self, s.name)) for s in self.declared() if not s.secret}

    def __repr__(self) -> str:
        shown = {name: ("***" if getattr(type(self), name).secret else value) for name, value in self._values.items()}
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in sorted(shown.items()))})"

    def section(self, config: builtins.type[C], **given: Any) -> C:
        """A room's config dataclass filled from these settings: each field named like a setting
        takes its value; ``given`` supplies the rest (renamed or nested fields).

        Raises:
            SettingsError: a field is neither a setting nor given (a config out of step with them).
        """
        values = dict(given)
        for name in (f.name for f in dataclasses.fields(config)):  # type: ignore[arg-type]  # C is a dataclass
            if name in values:
                continue
            declared = getattr(type(self), name, None)
            if not isinstance(declared, Setting):
                raise SettingsError(f"{config.__name__}.{name} is not a setting; pass it to section()")
            values[name] = getattr(self, name)
        return config(**values)

    def replace(self, **overrides: Any) -> Settings:
        return type(self)(**{**self._values, **overrides})

    @property
    def bootstrap_servers(self) -> list[str]:
        """``broker_url`` as host:port strings for kafka-python/aiokafka clients."""
        return [part.split("://", 1)[-1] for part in self.broker_url.split(";") if part]

    @classmethod
    def reference(cls) -> str:
        """A Markdown table of every setting: the reference docs."""
        lines = ["| setting | env | default | unit | meaning |", "|---|---|---|---|---|"]
        for s in cls.declared():
            default = "secret" if s.secret else f"`{s.default!r}`"
            lines.append(f"| `{s.name}` | `{s.env}` | {default} | {s.unit} | {s.doc} |")
        return "\n".join(lines)
