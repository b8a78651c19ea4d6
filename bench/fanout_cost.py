"""Quality cost of the refresh fan-out cap (LightGCN mode) on a ``train.txt``/``test.txt`` dataset.

Usage::

    python bench/fanout_cost.py --data-dir ../shared/datasets/gowalla --epochs 5 --users 300 --caps 10,50

LightGCN (``--layers`` K, d=64, BPR) is trained on ``train.txt``; item vectors are its full-graph
propagation (what a full refresh round publishes). For a random sample of test users, each user's
vector is recomputed the way an incremental round recomputes a seed: LightGCN propagation over its
``2K``-hop subgraph with full-graph degrees, where every expanded node keeps at most ``cap``
neighbours (the store's rule: heaviest first, ties by id; all weights are 1 here) and the
subgraph's edges are the ones the expansion traversed. Without a cap this equals the full
propagation exactly. Recall@20 / NDCG@20 of the sampled users are compared across caps.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from core.domain import EdgeSnapshot, NodeId, Subgraph
from models.evaluation import evaluate
from models.interactions import load_split
from models.lightgcn.propagation import propagate_full, propagate_subgraph
from models.lightgcn.train import train_lightgcn


def capped_picks(adjacency: sp.csr_matrix, ids: list[str], cap: int) -> sp.csr_matrix:
    """Row ``a`` keeps the ``cap`` neighbours the store would pick (all weights equal: ties by id)."""
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    rank_of = np.empty(len(ids), dtype=np.int64)
    rank_of[order] = np.arange(len(ids))
    rows, cols = [], []
    for a in range(adjacency.shape[0]):
        nbrs = adjacency.indices[adjacency.indptr[a]:adjacency.indptr[a + 1]]
        if len(nbrs) > cap:
            nbrs = nbrs[np.argsort(rank_of[nbrs], kind="stable")[:cap]]
        rows.append(np.full(len(nbrs), a))
        cols.append(nbrs)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=adjacency.shape)


def capped_subgraph(user: int, user_picks: sp.csr_matrix, item_picks: sp.csr_matrix, hops: int,
                    user_degree: np.ndarray, item_degree: np.ndarray) -> tuple[Subgraph, np.ndarray, np.ndarray]:
    """The store's BFS from one user seed with capped expansion; returns it with global indices."""
    num_users, num_items = user_picks.shape
    user_hop = np.full(num_users, -1)
    item_hop = np.full(num_items, -1)
    user_hop[user] = 0
    frontier_users, frontier_items = np.array([user]), np.array([], dtype=np.int64)
    edges_u: list[np.ndarray] = []
    edges_i: list[np.ndarray] = []
    for hop in range(hops):
        picked = user_picks[frontier_users].tocoo()
        edges_u.append(frontier_users[picked.row])
        edges_i.append(picked.col)
        picked_back = item_picks[frontier_items].tocoo()
        edges_i.append(frontier_items[picked_back.row])
        edges_u.append(picked_back.col)
        new_items = np.unique(picked.col[item_hop[picked.col] < 0])
        new_users = np.unique(picked_back.col[user_hop[picked_back.col] < 0])
        item_hop[new_items] = hop + 1
        user_hop[new_users] = hop + 1
        frontier_users, frontier_items = new_users, new_items
    users, items = np.flatnonzero(user_hop >= 0), np.flatnonzero(item_hop >= 0)
    local_u = np.full(num_users, -1)
    local_u[users] = np.arange(len(users))
    local_i = np.full(num_items, -1)
    local_i[items] = np.arange(len(items))
    eu, ei = np.concatenate(edges_u), np.concatenate(edges_i)
    sub = Subgraph(user_ids=[NodeId(str(u)) for u in users], item_ids=[NodeId(str(i)) for i in items],
                   edge_user=local_u[eu], edge_item=local_i[ei], edge_weight=np.ones(len(eu), np.float32),
                   user_degree=user_degree[users], item_degree=item_degree[items],
                   user_hops=user_hop[users], item_hops=item_hop[items])
    return sub, users, items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=5, help="LightGCN BPR epochs")
    parser.add_argument("--layers", type=int, default=2, help="LightGCN K (the live default)")
    parser.add_argument("--users", type=int, default=300, help="sampled test users")
    parser.add_argument("--caps", default="10,50", help="comma list of fan-out caps (0 = none is always run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    split = load_split(args.data_dir)
    train = split.train.tocsr()
    coo = train.tocoo()
    snapshot = EdgeSnapshot(user_ids=list(split.user_ids), item_ids=list(split.item_ids),
                            user_index=coo.row.astype(np.int64), item_index=coo.col.astype(np.int64),
                            weight=np.ones(coo.nnz, np.float32))
    started = time.perf_counter()
    checkpoint = train_lightgcn(snapshot, dim=64, layers=args.layers, epochs=args.epochs, device="cpu")
    print(f"LightGCN K={args.layers} d=64, {args.epochs} epochs in {time.perf_counter() - started:.0f} s", flush=True)
    user_full, item_full = (x.numpy() for x in propagate_full(snapshot, checkpoint.user_base, checkpoint.item_base,
                                                               args.layers, "cpu"))
    user_degree = np.asarray(train.getnnz(axis=1), dtype=np.int64)
    item_degree = np.asarray(train.getnnz(axis=0), dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(np.flatnonzero(split.test.getnnz(axis=1) > 0), args.users, replace=False))
    sample_train, sample_test = train[sample], split.test.tocsr()[sample]
    print("\n| fan-out cap | recall@20 | NDCG@20 | mean subgraph edges | max abs diff vs uncapped | s/user |")
    print("|---|---|---|---|---|---|")
    for cap in [0, *(int(c) for c in args.caps.split(",") if c)]:
        user_picks = capped_picks(train, [str(i) for i in range(train.shape[1])], cap) if cap else train
        item_picks = capped_picks(train.T.tocsr(), [str(u) for u in range(train.shape[0])], cap) if cap \
            else train.T.tocsr()
        vectors, sizes = np.zeros((len(sample), 64), np.float32), []
        tick = time.perf_counter()
        for n, user in enumerate(sample):
            sub, users, items = capped_subgraph(int(user), user_picks, item_picks, 2 * args.layers,
                                                user_degree, item_degree)
            out_u, _ = propagate_subgraph(sub, checkpoint.user_base[users], checkpoint.item_base[items],
                                          args.layers, "cpu")
            vectors[n] = out_u.numpy()[np.flatnonzero(users == user)[0]]
            sizes.append(sub.num_edges)
        seconds = (time.perf_counter() - tick) / len(sample)
        metrics = evaluate(vectors, item_full, sample_train, sample_test, k=20, device="cpu")
        diff = float(np.abs(vectors - user_full[sample]).max())
        print(f"| {cap or 'none'} | {metrics['recall']:.4f} | {metrics['ndcg']:.4f} | {np.mean(sizes):.0f} | "
              f"{diff:.2e} | {seconds:.2f} |", flush=True)
    full = evaluate(user_full[sample], item_full, sample_train, sample_test, k=20, device="cpu")
    print(f"| (full propagation) | {full['recall']:.4f} | {full['ndcg']:.4f} | {train.nnz} | 0 | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
