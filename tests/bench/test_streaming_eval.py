"""bench/streaming_eval.py on a small drifting stream end to end, and its graph baselines on a tiny graph."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from core.domain import EdgeDelta, NodeId
from graph_store.ladybug import LadybugStore
from streams.config import EventContract
from streams.datasets import KeyedEvent
from streams.validation import encode_event

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("bench_stream_systems", BENCH / "stream_systems.py")
assert _spec is not None and _spec.loader is not None
systems = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = systems  # dataclasses look their module up while the class is made
_spec.loader.exec_module(systems)
_eval_spec = importlib.util.spec_from_file_location("bench_streaming_eval", BENCH / "streaming_eval.py")
assert _eval_spec is not None and _eval_spec.loader is not None
streaming_eval = importlib.util.module_from_spec(_eval_spec)
sys.modules[_eval_spec.name] = streaming_eval
_eval_spec.loader.exec_module(streaming_eval)


def tiny_graph():
    """u0: a then b; u1: a then c (twice the weight); u2: d; nothing joins d to the rest."""
    graph = systems.LiveGraph()
    graph.add([EdgeDelta(NodeId(u), NodeId(i), weight=w, count=1, last_ts_ms=t) for u, i, w, t in
               [("u0", "a", 1.0, 1), ("u0", "b", 1.0, 2), ("u1", "a", 1.0, 3), ("u1", "c", 2.0, 4),
                ("u2", "d", 1.0, 5)]])
    return graph


def test_graph_baselines_recommend_what_shares_users_with_the_recent_items() -> None:
    graph = tiny_graph()
    assert graph.recent["u0"] == ["a", "b"] and graph.recent["u1"] == ["a", "c"]
    walk = systems.RandomWalk(graph, steps=2000, walkers=50, stop_items=10**6)
    cooc = systems.CoOccurrence(graph)
    for system in (walk, cooc):
        # u0 has a and b: c shares a's users, d shares nobody; seen items are never listed.
        assert system.ranks("u0", ["c", "d", "a"], {"a", "b"}, 10) == [0, None, None]
        assert system.ranks("nobody", ["a"], set(), 10) == [None] and system.score.no_user == 1
    # From u1's items (a, c) both a's other item (b) and nothing else are reachable.
    assert walk.ranks("u1", ["b", "d"], {"a", "c"}, 10) == [0, None]


def test_a_drifting_stream_is_scored_per_system_and_segment() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "streaming_eval.py"), "--streams", "drift", "--cuts", "0.8",
                          "--drift-events", "3000", "--drift-users", "100", "--drift-items", "200",
                          "--drift-every", "500", "--batch", "300", "--blend-priors", "0,5", "--half-life", "6",
                          "--edge-half-life", "12", "--next-weights", "4"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| system")}
    for name in ("live (incremental refresh)", "stale (frozen at the cut)", "popularity (live counts)",
                 "trending (half-life 6 h)", "random walk (Pixie, 5,000 steps)",
                 "item co-occurrence kNN (last 20 items)", "served (n0 = 0, next items)",
                 "served (n0 = 5, next items)", "served (n0 = 0)",
                 "served (n0 = 0, next items at weight 4 (not judged))"):
        cells = [c.strip() for c in rows[name].strip().strip("|").split("|")]
        assert 0.0 <= float(cells[1]) <= 1.0 and 0.0 <= float(cells[2]) <= float(cells[1])
        assert cells[-1].endswith("of 600")  # every streamed event scored
    assert "served (n0 = 5, next items): lists by source {'blended'" in out
    assert "mix (personal share, next-items weight) by segment at the end {'<= 5': (" in out


def test_the_feeder_decays_the_stores_weights_as_the_ingest_agent_does(tmp_path: Path) -> None:
    hour = 3_600_000
    t0 = 1_700_000_000_000
    store = LadybugStore(str(tmp_path / "graph.lbdb"))
    store.ensure_schema()
    feeder = streaming_eval.Feeder(store, EventContract(edge_half_life_h=2.0))

    def event(user: str, item: str, at: int) -> tuple[str, str, KeyedEvent]:
        return user, item, KeyedEvent(user.encode(), encode_event(user, item, "click", at), at)

    assert [e.weight for e in feeder([event("u", "a", t0)])] == [1.0]
    # Two half-lives later weighs 4 times as much in the store; the baselines get plain weights.
    assert [e.weight for e in feeder([event("u", "b", t0 + 4 * hour)])] == [1.0]
    stored = {e.item_id: e.weight for e in store.edges_of_user(NodeId("u"))}
    assert stored == {"a": 1.0, "b": 4.0}
    store.close()
