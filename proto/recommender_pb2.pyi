from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMEND_SOURCE_UNSPECIFIED: _ClassVar[RecommendSource]
    RECOMMEND_SOURCE_PERSONAL: _ClassVar[RecommendSource]
    RECOMMEND_SOURCE_BLENDED: _ClassVar[RecommendSource]
    RECOMMEND_SOURCE_TRENDING: _ClassVar[RecommendSource]
RECOMMEND_SOURCE_UNSPECIFIED: RecommendSource
RECOMMEND_SOURCE_PERSONAL: RecommendSource
RECOMMEND_SOURCE_BLENDED: RecommendSource
RECOMMEND_SOURCE_TRENDING: RecommendSource

class ForgetRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ForgetReceipt(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ForgetReply(_message.Message):
    __slots__ = ("topic", "receipts")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    receipts: _containers.RepeatedCompositeFieldContainer[ForgetReceipt]
    def __init__(self, topic: _Optional[str] = ..., receipts: _Optional[_Iterable[_Union[ForgetReceipt, _Mapping]]] = ...) -> None: ...

class ItemFilter(_message.Message):
    __slots__ = ("include_categories", "exclude_categories")
    INCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    include_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, include_categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "exclude_seen", "filter", "diversity_lambda")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    exclude_seen: bool
    filter: ItemFilter
    diversity_lambda: float
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_seen: _Optional[bool] = ..., filter: _Optional[_Union[ItemFilter, _Mapping]] = ..., diversity_lambda: _Optional[float] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "categories")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendReply(_message.Message):
    __slots__ = ("items", "embedding_version", "embedding_age_ms", "index_kind", "source")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    embedding_version: int
    embedding_age_ms: int
    index_kind: str
    source: RecommendSource
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ..., index_kind: _Optional[str] = ..., source: _Optional[_Union[RecommendSource, str]] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "k", "filter")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    filter: ItemFilter
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[ItemFilter, _Mapping]] = ...) -> None: ...

class SimilarItemsReply(_message.Message):
    __slots__ = ("items", "embedding_version", "embedding_age_ms", "index_kind")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    embedding_version: int
    embedding_age_ms: int
    index_kind: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ..., index_kind: _Optional[str] = ...) -> None: ...

class RecommendFriendsRequest(_message.Message):
    __slots__ = ("user_id", "k")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...

class ScoredUser(_message.Message):
    __slots__ = ("user_id", "score", "embedding_similarity", "co_interaction", "shared_items")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CO_INTERACTION_FIELD_NUMBER: _ClassVar[int]
    SHARED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    score: float
    embedding_similarity: float
    co_interaction: float
    shared_items: int
    def __init__(self, user_id: _Optional[str] = ..., score: _Optional[float] = ..., embedding_similarity: _Optional[float] = ..., co_interaction: _Optional[float] = ..., shared_items: _Optional[int] = ...) -> None: ...

class RecommendFriendsReply(_message.Message):
    __slots__ = ("users", "embedding_version", "embedding_age_ms")
    USERS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[ScoredUser]
    embedding_version: int
    embedding_age_ms: int
    def __init__(self, users: _Optional[_Iterable[_Union[ScoredUser, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("user_id", "item_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ItemEvidence(_message.Message):
    __slots__ = ("item_id", "title", "contribution", "edge_weight", "similarity")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    EDGE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    contribution: float
    edge_weight: float
    similarity: float
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., contribution: _Optional[float] = ..., edge_weight: _Optional[float] = ..., similarity: _Optional[float] = ...) -> None: ...

class NeighbourEvidence(_message.Message):
    __slots__ = ("user_id", "contribution", "shared_items")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SHARED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    contribution: float
    shared_items: int
    def __init__(self, user_id: _Optional[str] = ..., contribution: _Optional[float] = ..., shared_items: _Optional[int] = ...) -> None: ...

class ExplainReply(_message.Message):
    __slots__ = ("score", "rank", "seen", "title", "items", "neighbours", "embedding_version", "rank_estimated")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANK_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    score: float
    rank: int
    seen: bool
    title: str
    items: _containers.RepeatedCompositeFieldContainer[ItemEvidence]
    neighbours: _containers.RepeatedCompositeFieldContainer[NeighbourEvidence]
    embedding_version: int
    rank_estimated: bool
    def __init__(self, score: _Optional[float] = ..., rank: _Optional[int] = ..., seen: _Optional[bool] = ..., title: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ItemEvidence, _Mapping]]] = ..., neighbours: _Optional[_Iterable[_Union[NeighbourEvidence, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., rank_estimated: _Optional[bool] = ...) -> None: ...

class WatchRecommendationsRequest(_message.Message):
    __slots__ = ("user_id", "k", "exclude_seen")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    exclude_seen: bool
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_seen: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("embedding_version", "embedding_age_ms", "users_indexed", "items_indexed", "store_seq", "refresh_cursor", "changed_node_backlog", "store_users", "store_items", "store_edges", "index_kind", "ann_version", "open_streams", "users_folded_in")
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    USERS_INDEXED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_INDEXED_FIELD_NUMBER: _ClassVar[int]
    STORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    REFRESH_CURSOR_FIELD_NUMBER: _ClassVar[int]
    CHANGED_NODE_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    STORE_USERS_FIELD_NUMBER: _ClassVar[int]
    STORE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    STORE_EDGES_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    ANN_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    USERS_FOLDED_IN_FIELD_NUMBER: _ClassVar[int]
    embedding_version: int
    embedding_age_ms: int
    users_indexed: int
    items_indexed: int
    store_seq: int
    refresh_cursor: int
    changed_node_backlog: int
    store_users: int
    store_items: int
    store_edges: int
    index_kind: str
    ann_version: int
    open_streams: int
    users_folded_in: bool
    def __init__(self, embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ..., users_indexed: _Optional[int] = ..., items_indexed: _Optional[int] = ..., store_seq: _Optional[int] = ..., refresh_cursor: _Optional[int] = ..., changed_node_backlog: _Optional[int] = ..., store_users: _Optional[int] = ..., store_items: _Optional[int] = ..., store_edges: _Optional[int] = ..., index_kind: _Optional[str] = ..., ann_version: _Optional[int] = ..., open_streams: _Optional[int] = ..., users_folded_in: _Optional[bool] = ...) -> None: ...
