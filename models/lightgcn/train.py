"""Train LightGCN base embeddings with BPR on an edge snapshot (``interest-graph train`` with
``IG_MODEL_METHOD=lightgcn``, through :func:`models.methods.fit`).

Each step propagates the whole graph once (one sparse-dense product per layer, both directions in
one CSR matrix) and scores a batch of ``(user, positive, negative)`` triples; the negatives are
drawn uniformly from all items, resampled where they hit a known positive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from core.domain import EdgeSnapshot
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.lightgcn.model import BipartiteAdjacency, LightGCN, bipartite_degrees, distinct_edges, normalized_adjacency
from models.runtime import resolve_device

log = logging.getLogger(__name__)

#: Resampling rounds for negatives that hit a positive; after that a rare collision is harmless.
NEGATIVE_RETRIES = 3


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_lightgcn` (defaults fit movielens-small in seconds on 2 cores).

    Args:
        dim (int): Embedding width. (default: ``64``)
        layers (int): Propagation layers ``K``. (default: ``2``)
        epochs (int): Passes over all edges. (default: ``40``)
        lr (float): Adam learning rate. (default: ``0.01``)
        reg (float): L2 weight on the batch's layer-0 embeddings, as in LightGCN. (default: ``1e-4``)
        batch_size (int): Triples per step; large batches keep the per-step full propagation
            cheap relative to the work. (default: ``8192``)
        seed (int): Seed of initialisation and sampling. (default: ``0``)
    """

    dim: int = 64
    layers: int = 2
    epochs: int = 40
    lr: float = 0.01
    reg: float = 1e-4
    batch_size: int = 8192
    seed: int = 0


class NegativeSampler:
    """Uniform item negatives, with vectorised rejection of ``(user, item)`` pairs that are edges."""

    def __init__(self, user: Tensor, item: Tensor, num_items: int, generator: torch.Generator) -> None:
        self.num_items = num_items
        self.positive = torch.sort(user * num_items + item).values
        self.generator = generator

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        key = user * self.num_items + item
        at = torch.searchsorted(self.positive, key).clamp(max=self.positive.numel() - 1)
        return self.positive[at] == key

    def sample(self, user: Tensor) -> Tensor:
        neg = torch.randint(self.num_items, user.shape, generator=self.generator)
        for _ in range(NEGATIVE_RETRIES):
            hit = self.is_positive(user, neg)
            if not bool(hit.any()):
                break
            neg[hit] = torch.randint(self.num_items, (int(hit.sum()),), generator=self.generator)
        return neg


def train_lightgcn(snapshot: EdgeSnapshot, *, dim: int = 64, layers: int = 2, epochs: int = 40,
                   lr: float = 0.01, reg: float = 1e-4, batch_size: int = 8192, seed: int = 0,
                   device: torch.device | str | None = None) -> LightGCNCheckpoint:
    """Fit LightGCN with BPR on every distinct edge of ``snapshot``; see :class:`TrainConfig`.

    On CPU it uses the threads the process gave torch (:func:`models.runtime.use_torch_threads`).

    Args:
        snapshot (EdgeSnapshot): The graph (edge weights are ignored: the adjacency is binary).
        device (torch.device or str, optional): Where to train. (default: CUDA if present, else CPU)

    Returns:
        LightGCNCheckpoint: base embeddings keyed by producer id; ``meta`` holds the per-epoch mean loss.
    """
    config = TrainConfig(dim, layers, epochs, lr, reg, batch_size, seed)
    dev = resolve_device(device)
    num_users, num_items = len(snapshot.user_ids), len(snapshot.item_ids)
    if num_users == 0 or num_items == 0:
        raise ValueError("cannot train on a snapshot without edges")
    user, item = distinct_edges(snapshot.user_index, snapshot.item_index, num_items)
    graph = normalized_adjacency(user, item, *bipartite_degrees(user, item, num_users, num_items), dev)

    torch.manual_seed(seed)
    model = LightGCN(num_users, num_items, dim, layers).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    user_t, item_t = torch.from_numpy(user), torch.from_numpy(item)
    sampler = NegativeSampler(user_t, item_t, num_items, generator)

    started = time.perf_counter()
    losses = [_epoch(model, graph, optimizer, sampler, user_t, item_t, config, dev) for _ in range(epochs)]
    seconds = time.perf_counter() - started
    log.info("trained LightGCN on %d edges: %d epochs in %.1f s, loss %.4f -> %.4f",
             len(user), epochs, seconds, losses[0] if losses else float("nan"),
             losses[-1] if losses else float("nan"))

    with torch.no_grad():
        user_base = model.user_embedding.weight.detach().cpu().numpy().copy()
        item_base = model.item_embedding.weight.detach().cpu().numpy().copy()
    meta = {"dim": dim, "layers": layers, "epochs": epochs, "lr": lr, "reg": reg, "batch_size": batch_size,
            "seed": seed, "device": str(dev), "edges": len(user), "snapshot_seq": snapshot.seq,
            "train_seconds": round(seconds, 3), "loss": [round(x, 6) for x in losses],
            "created_ms": int(time.time() * 1000)}
    return LightGCNCheckpoint(list(snapshot.user_ids), list(snapshot.item_ids), user_base, item_base, layers, meta)


def _epoch(model: LightGCN, graph: BipartiteAdjacency, optimizer: torch.optim.Optimizer,
           sampler: NegativeSampler, user: Tensor, item: Tensor, config: TrainConfig,
           device: torch.device) -> float:
    """One pass over the edges in shuffled batches; returns the mean BPR loss."""
    order = torch.randperm(user.numel(), generator=sampler.generator)
    total, steps = 0.0, 0
    for start in range(0, order.numel(), config.batch_size):
        batch = order[start:start + config.batch_size]
        u, pos = user[batch], item[batch]
        neg = sampler.sample(u)
        total += _step(model, graph, optimizer, u.to(device), pos.to(device), neg.to(device), config.reg)
        steps += 1
    return total / max(steps, 1)


def _step(model: LightGCN, graph: BipartiteAdjacency, optimizer: torch.optim.Optimizer, u: Tensor,
          pos: Tensor, neg: Tensor, reg: float) -> float:
    """One Adam step on BPR plus L2 on the layer-0 rows of the batch."""
    optimizer.zero_grad(set_to_none=True)
    user_out, item_out = model(graph)
    bpr = LightGCN.bpr_loss(user_out[u], item_out[pos], item_out[neg])
    l2 = (model.user_embedding.weight[u].pow(2).sum() + model.item_embedding.weight[pos].pow(2).sum()
          + model.item_embedding.weight[neg].pow(2).sum()) / (2 * u.numel())
    loss = bpr + reg * l2
    loss.backward()
    optimizer.step()
    return float(bpr.detach())
