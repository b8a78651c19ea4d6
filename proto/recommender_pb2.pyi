from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "exclude_seen")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    exclude_seen: bool
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_seen: _Optional[bool] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score", "title")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ...) -> None: ...

class RecommendReply(_message.Message):
    __slots__ = ("items", "embedding_version", "embedding_age_ms")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    embedding_version: int
    embedding_age_ms: int
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "k")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...

class SimilarItemsReply(_message.Message):
    __slots__ = ("items", "embedding_version", "embedding_age_ms")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    embedding_version: int
    embedding_age_ms: int
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("embedding_version", "embedding_age_ms", "users_indexed", "items_indexed", "store_seq", "refresh_cursor", "changed_node_backlog", "store_users", "store_items", "store_edges")
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
    def __init__(self, embedding_version: _Optional[int] = ..., embedding_age_ms: _Optional[int] = ..., users_indexed: _Optional[int] = ..., items_indexed: _Optional[int] = ..., store_seq: _Optional[int] = ..., refresh_cursor: _Optional[int] = ..., changed_node_backlog: _Optional[int] = ..., store_users: _Optional[int] = ..., store_items: _Optional[int] = ..., store_edges: _Optional[int] = ...) -> None: ...
