"""Catalog records of the indexed items, held in memory so replies and filters never read the store.

Titles and categories change rarely and are needed on every request (titles in replies, categories
for filters), so the loader reads them together with each embedding delta and, now and then, for
the whole catalog; requests only ever look them up here. Like the index, a :class:`Catalog` is
immutable: an update builds a new one and the index swaps it in with the embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.domain import ItemMeta, NodeId


@dataclass(frozen=True, slots=True)
class Catalog:
    """Item records by id, and the ids of every category (for filters).

    Args:
        meta (Mapping[NodeId, ItemMeta]): Catalog records of items that have one.
        by_category (Mapping[str, frozenset[NodeId]]): Items carrying each category.
    """

    meta: Mapping[NodeId, ItemMeta] = field(default_factory=dict)
    by_category: Mapping[str, frozenset[NodeId]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.meta)

    def title(self, item_id: NodeId) -> str:
        record = self.meta.get(item_id)
        return record.title if record is not None else ""

    def categories(self, item_id: NodeId) -> tuple[str, ...]:
        record = self.meta.get(item_id)
        return record.categories if record is not None else ()

    def merge(self, records: Mapping[NodeId, ItemMeta] | Iterable[ItemMeta]) -> Catalog:
        """A new catalog with ``records`` added or replaced; ``self`` is left untouched."""
        incoming = list(records.values()) if isinstance(records, Mapping) else list(records)
        # The loader's periodic resync hands every record over again: rebuilding the category
        # sets for 20,000 unchanged ones took seconds of CPU a minute (py-spy, bench/freshness.py).
        incoming = [r for r in incoming if self.meta.get(r.item_id) != r]
        if not incoming:
            return self
        meta = dict(self.meta)
        touched: dict[str, set[NodeId]] = {}
        for record in incoming:
            old = meta.get(record.item_id)
            # A record that lost a category must leave that category's set, not only join new ones.
            for category in (old.categories if old is not None else ()):
                touched.setdefault(category, set(self.by_category.get(category, ()))).discard(record.item_id)
            for category in record.categories:
                touched.setdefault(category, set(self.by_category.get(category, ()))).add(record.item_id)
            meta[record.item_id] = record
        by_category = dict(self.by_category)
        by_category.update({c: frozenset(ids) for c, ids in touched.items()})
        return Catalog(meta, {c: ids for c, ids in by_category.items() if ids})

    def allowed_rows(
        self,
        rows: Mapping[NodeId, int],
        n_rows: int,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> np.ndarray | None:
        """Item rows passing a category filter as a boolean mask of ``n_rows``, or ``None`` for all.

        Args:
            rows (Mapping[NodeId, int]): Row of each indexed item (the index's item table).
            n_rows (int): Items in that table.
            include (Sequence[str]): Keep items with any of these categories (default: all items).
            exclude (Sequence[str]): Then drop items with any of these (default: none).
        """
        if not include and not exclude:
            return None
        mask = np.zeros(n_rows, dtype=bool) if include else np.ones(n_rows, dtype=bool)
        for category in include:
            mask[self._rows(category, rows)] = True
        for category in exclude:
            mask[self._rows(category, rows)] = False
        return mask

    def _rows(self, category: str, rows: Mapping[NodeId, int]) -> np.ndarray:
        found = [r for r in map(rows.get, self.by_category.get(category, ())) if r is not None]
        return np.asarray(found, dtype=np.int64)
