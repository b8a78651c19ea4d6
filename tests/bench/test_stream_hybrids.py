"""bench/stream_hybrids.py: the recency fold-in against its formula, rank fusion on known lists, and the
``--hybrids`` rows of bench/streaming_eval.py on a small stream."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.domain import EdgeDelta, EmbeddingRows, NodeId, NodeKind, UserFoldIn
from serving.index import EmbeddingIndex

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # stream_hybrids imports stream_systems as the bench scripts do
_spec = importlib.util.spec_from_file_location("stream_hybrids", BENCH / "stream_hybrids.py")
assert _spec is not None and _spec.loader is not None
hybrids = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = hybrids
_spec.loader.exec_module(hybrids)
from stream_systems import LiveGraph, System  # noqa: E402 -- importable once bench is on the path

ITEMS = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0], "d": [0.5, 0.5, 0.0]}


def item_index() -> EmbeddingIndex:
    index = EmbeddingIndex()
    ids = [NodeId(i) for i in ITEMS]
    index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, 3), np.float32)),
                EmbeddingRows(NodeKind.ITEM, ids, np.asarray(list(ITEMS.values()), np.float32)),
                version=1, written_ms=0, replace=True)
    return index


def graph_of(edges: list[tuple[str, str, float]]) -> LiveGraph:
    graph = LiveGraph()
    graph.add([EdgeDelta(NodeId(u), NodeId(i), weight=w, count=1, last_ts_ms=t)
               for t, (u, i, w) in enumerate(edges)])
    return graph


def test_the_recency_fold_in_weights_each_item_by_its_place_in_the_users_history() -> None:
    # u: a (weight 2), then b, then c; c is not fitted, so it adds nothing and takes no place.
    graph = graph_of([("u", "a", 2.0), ("u", "b", 1.0), ("u", "c", 1.0)])
    fold = UserFoldIn((NodeId("a"), NodeId("b"), NodeId("d")), np.asarray([0.5, 3.0, 1.0], np.float32), "weight", 1)
    index = item_index()
    plain = hybrids.RecentFoldIn(index, graph, fold, 0)
    assert plain.vector("u", index.snapshot()) == pytest.approx(np.asarray([2.0 * 0.5, 3.0, 0.0]))
    recent = hybrids.RecentFoldIn(index, graph, fold, 2.0)
    # b is the latest folded item (place 0), a the one before (place 1): 2^(-1/2).
    assert recent.vector("u", index.snapshot()) == pytest.approx(np.asarray([2.0 * 0.5 * 2 ** -0.5, 3.0, 0.0]))
    assert recent.vector("nobody", index.snapshot()) is None
    # The best unseen item for a query along b is d (a and b are seen).
    assert recent.top("u", {"a", "b"}, 2)[0] == "d"


class Listed(System):
    def __init__(self, order: list[str] | None) -> None:
        super().__init__("listed", EmbeddingIndex())
        self.order = order

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        return None if self.order is None else [i for i in self.order if i not in seen][:k]


def test_rank_fusion_favours_items_high_on_several_lists_and_weighs_lists_by_the_users_items() -> None:
    fused = hybrids.RankFusion("f", [Listed(["a", "b", "c"]), Listed(["c", "d", "b"])], [1.0, 1.0], k0=1.0)
    # b: 1/3 + 1/4, c: 1/4 + 1/2, a: 1/2, d: 1/3.
    assert fused.top("u", set(), 4) == ["c", "b", "a", "d"]
    assert fused.ranks("u", ["b", "x"], {"c"}, 2) == [0, None]  # seen c dropped: b 1/3 + 1/3 beats a 1/2
    only_new = hybrids.RankFusion("g", [Listed(["a"]), Listed(["d"])], [1.0, lambda n: 10.0 if n < 2 else 0.0])
    assert only_new.top("u", set(), 1) == ["d"] and only_new.top("u", {"x", "y"}, 1) == ["a"]
    nobody = hybrids.RankFusion("h", [Listed(None)], [1.0])
    assert nobody.ranks("u", ["a"], set(), 10) == [None] and nobody.score.no_user == 1
    with pytest.raises(ValueError):
        hybrids.RankFusion("bad", [Listed(None)], [])


def test_the_hybrid_rows_are_scored_beside_the_served_system() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "streaming_eval.py"), "--streams", "drift", "--cuts", "0.8",
                          "--drift-events", "3000", "--drift-users", "100", "--drift-items", "200",
                          "--drift-every", "500", "--batch", "300", "--blend-priors", "5", "--half-life", "6",
                          "--trending-half-lives", "", "--hybrids", "--recency-half-lives", "3"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| system")}
    for name in ("recency fold-in (half-life 3 items)", "fusion: served + co-occurrence + walk",
                 "fusion: recency 3 + trending", "fusion: recency 3 + trending (new users)",
                 "fusion: recency 3 + co-occurrence/2 + trending (new users)"):
        cells = [c.strip() for c in rows[name].strip().strip("|").split("|")]
        assert 0.0 <= float(cells[1]) <= 1.0 and 0.0 <= float(cells[2]) <= float(cells[1])
        assert cells[-1].endswith("of 600")
