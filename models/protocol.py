"""What a method is to the refresh worker: one protocol, and what one round of it returns.

A *method* is a model, its checkpoint and its incremental refresh: :mod:`models.spectral`
(SpectralCF, the default) and :mod:`models.lightgcn`. The worker (:mod:`models.refresh`) owns all
I/O: it reads the store's snapshot or the subgraph a method asks for, hands it over, and writes
what comes back. A method is pure computation, as ``plan_batch`` is in ``streams/``:

* ``full(snapshot)``: the embeddings of every node of the graph;
* ``fold_in(version)``: for a method whose user vectors are linear in the user's row, how to
  compute them from it (serving then does so at request time, and rounds skip users);
* ``incremental(subgraph)``: the embeddings of exactly the nodes whose full-recompute outputs the
  changes at the seeds moved, computed from ``store.k_hop_subgraph(seeds, hops=read_hops,
  fanout=fanout)``, the smallest subgraph that determines them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.domain import EdgeSnapshot, EmbeddingRows, NodeRef, Subgraph, UserFoldIn


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """Embeddings to publish, derived base rows to persist, and the size of the graph read."""

    rows: list[EmbeddingRows]
    derived: list[EmbeddingRows]
    subgraph: Subgraph

    @property
    def nodes_refreshed(self) -> int:
        return sum(len(r.ids) for r in self.rows)


class RefreshMethod(Protocol):
    """The refresh rounds of one loaded model (see the module docs)."""

    @property
    def method(self) -> str:
        """``"spectral"`` or ``"lightgcn"``: what the published embeddings are."""
        ...

    @property
    def layers(self) -> int:
        """Hops a change reaches: the nodes an edge insert can move lie this close to its ends."""
        ...

    @property
    def read_hops(self) -> int:
        """Hops around the seeds of the subgraph :meth:`incremental` is computed from."""
        ...

    @property
    def fanout(self) -> int | None:
        """Neighbours per node of that subgraph; ``None`` = all (exact)."""
        ...

    def full(self, snapshot: EdgeSnapshot, users: bool = True) -> RoundOutput:
        """Embeddings of every node of ``snapshot`` (without ``users``: of its items, where the method
        has a :meth:`fold_in` and the caller folds users in itself)."""
        ...

    def fold_in(self, model_version: int) -> UserFoldIn | None:
        """How serving can compute a user's embedding from the user's row, if the method's user
        vectors are linear in it (SpectralCF); ``None`` where they are not (LightGCN)."""
        ...

    def incremental(self, sub: Subgraph) -> RoundOutput:
        """Embeddings of the nodes the changes at ``sub``'s seeds (hop 0) moved."""
        ...

    def seeds(self, changed: Sequence[NodeRef]) -> list[NodeRef]:
        """The changed nodes whose subgraph a round must read (all of them, unless the method knows
        that some embeddings cannot move)."""
        ...
