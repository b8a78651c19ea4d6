"""Event sources for replay, demos and benchmarks: MovieLens ratings and a synthetic generator.

Both yield :class:`KeyedEvent` (the Kafka key and value of one event, in event-time order) and
the catalog as :class:`ItemMeta`.

* :func:`movielens_ratings` reads ``ratings.csv`` of MovieLens "ml-latest-small" in time order;
  :func:`movielens_events` turns those into rating events
  (``event_id = "ml-{userId}-{movieId}-{ts}"``, so a replay of the same file is the same events);
  :func:`movielens_items` reads ``movies.csv`` (title, genres) and folds ``tags.csv`` into ``text``.
* :class:`ClusteredInterests` generates users with clustered interests, for machines without the
  dataset and for tests that need a known structure: users and items belong to one of ``C``
  clusters, and most of a user's interactions hit items of the user's cluster.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.domain import EventType, ItemMeta, NodeId
from streams.validation import encode_event, event_key


@dataclass(frozen=True, slots=True)
class KeyedEvent:
    """One event as it goes on the wire: Kafka key (the user id), JSON value and its time."""

    key: bytes
    value: bytes
    ts_ms: int


#: Folder of MovieLens "ml-latest-small" inside the datasets folder.
MOVIELENS_DIR = "movielens-small"


@dataclass(frozen=True, slots=True)
class Rating:
    """One MovieLens rating: when (epoch ms), who, which movie, how many stars."""

    ts_ms: int
    user_id: str
    item_id: str
    rating: float

    def event(self) -> KeyedEvent:
        """The rating event as it goes on the wire (its id is stable: same file, same events)."""
        value = encode_event(self.user_id, self.item_id, EventType.RATING, self.ts_ms,
                             event_id=f"ml-{self.user_id}-{self.item_id}-{self.ts_ms}", rating=self.rating)
        return KeyedEvent(event_key(self.user_id), value, self.ts_ms)


def movielens_ratings(data_dir: Path | str, limit: int | None = None) -> list[Rating]:
    """Ratings of MovieLens in timestamp order (ties by user, then movie).

    Args:
        data_dir (Path | str): the datasets folder holding ``movielens-small/``.
        limit (int, optional): keep only the first ``limit`` ratings in time order (default: ``None``).
    """
    path = Path(data_dir) / MOVIELENS_DIR / "ratings.csv"
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append((int(row["timestamp"]) * 1000, int(row["userId"]), int(row["movieId"]),
                         float(row["rating"])))
    rows.sort()  # numeric ids: user 9 before user 10
    if limit is not None:
        rows = rows[:limit]
    return [Rating(ts_ms, str(user), str(movie), rating) for ts_ms, user, movie, rating in rows]


def movielens_events(data_dir: Path | str, limit: int | None = None) -> list[KeyedEvent]:
    """The rating events of :func:`movielens_ratings` (same arguments), in the same order."""
    return [rating.event() for rating in movielens_ratings(data_dir, limit)]


def movielens_items(data_dir: Path | str) -> list[ItemMeta]:
    """Movies as catalog items: title, genres as categories, user tags (distinct, sorted) as text."""
    root = Path(data_dir) / MOVIELENS_DIR
    tags: dict[str, set[str]] = defaultdict(set)
    tags_path = root / "tags.csv"
    if tags_path.exists():
        with tags_path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                tags[row["movieId"]].add(row["tag"].strip())
    items = []
    with (root / "movies.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            genres = () if row["genres"] == "(no genres listed)" else tuple(row["genres"].split("|"))
            text = ", ".join(sorted(t for t in tags.get(row["movieId"], ()) if t))
            items.append(ItemMeta(NodeId(row["movieId"]), row["title"], genres, text))
    return items


#: Share of each event type in synthetic traffic, most common first.
SYNTHETIC_TYPE_MIX: dict[EventType, float] = {
    EventType.VIEW: 0.45,
    EventType.CLICK: 0.30,
    EventType.ADD_TO_CART: 0.08,
    EventType.LIKE: 0.08,
    EventType.PURCHASE: 0.05,
    EventType.RATING: 0.04,
}


class ClusteredInterests:
    """Synthetic users with clustered interests (a planted-partition bipartite graph).

    User ``u{n}`` and item ``i{m}`` belong to clusters ``n % clusters`` and ``m % clusters``. Each
    event picks a user uniformly; with probability ``in_cluster`` the item comes from the user's
    cluster, else from all items; within the pick, item popularity follows a Zipf-like law so some
    items are hubs. Types follow :data:`SYNTHETIC_TYPE_MIX`; timestamps grow by random gaps.

    With ``drift_every`` > 0 interests drift: every user moves on to the next cluster after each
    ``drift_every`` events of the stream, the moves staggered over users (user ``n`` first moves
    after ``(n * 7919) % drift_every`` events), so at any time some users have just moved.

    Args:
        users (int): number of users.
        items (int): number of items (at least ``clusters``).
        clusters (int): number of interest clusters (default: ``8``).
        in_cluster (float): probability that an event stays in the user's cluster (default: ``0.85``).
        seed (int): random seed; the same arguments give the same events (default: ``0``).
        start_ms (int): time of the first event, epoch ms (default: ``1_700_000_000_000``).
        drift_every (int): events of the stream between a user's moves to the next cluster; 0 = no
            drift (default: ``0``).
        mean_gap_ms (int): mean time between two events, ms (default: ``500``).
        user_skew (float): users are drawn with probability ~ rank^-user_skew (a few heavy users,
            a long tail that shows up late); 0 = uniformly (default: ``0.0``).
    """

    def __init__(self, users: int, items: int, clusters: int = 8, in_cluster: float = 0.85, seed: int = 0,
                 start_ms: int = 1_700_000_000_000, drift_every: int = 0, mean_gap_ms: int = 500,
                 user_skew: float = 0.0) -> None:
        if users < 1 or items < clusters or clusters < 1 or not 0.0 <= in_cluster <= 1.0:
            raise ValueError(f"need users >= 1, items >= clusters >= 1 and 0 <= in_cluster <= 1, got "
                             f"users={users} items={items} clusters={clusters} in_cluster={in_cluster}")
        if drift_every < 0 or mean_gap_ms < 1 or user_skew < 0:
            raise ValueError(f"need drift_every >= 0, mean_gap_ms >= 1 and user_skew >= 0, got {drift_every}, "
                             f"{mean_gap_ms}, {user_skew}")
        self.users, self.items, self.clusters = users, items, clusters
        self.in_cluster = in_cluster
        self.seed = seed
        self.start_ms = start_ms
        self.drift_every, self.mean_gap_ms, self.user_skew = drift_every, mean_gap_ms, user_skew

    def user_cluster(self, user_id: str, at_event: int = 0) -> int:
        """The cluster of ``user_id``'s interests at event number ``at_event`` of the stream."""
        return int(self._clusters(np.asarray([int(user_id[1:])]), np.asarray([at_event]))[0])

    def _clusters(self, user: np.ndarray, at_event: np.ndarray) -> np.ndarray:
        if not self.drift_every:
            return user % self.clusters
        moves = (at_event + (user * 7919) % self.drift_every) // self.drift_every
        return (user + moves) % self.clusters

    def item_cluster(self, item_id: str) -> int:
        return int(item_id[1:]) % self.clusters

    def events(self, count: int) -> Iterator[KeyedEvent]:
        """``count`` events in time order (generated lazily in chunks)."""
        rng = np.random.default_rng(self.seed)
        types = list(SYNTHETIC_TYPE_MIX)
        type_p = np.array([SYNTHETIC_TYPE_MIX[t] for t in types])
        ts = self.start_ms
        user_p = None
        if self.user_skew:
            weights = np.arange(1, self.users + 1, dtype=np.float64) ** -self.user_skew
            user_p = weights[np.random.default_rng(self.seed + 1).permutation(self.users)] / weights.sum()
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            user = rng.integers(0, self.users, n) if user_p is None else rng.choice(self.users, size=n, p=user_p)
            item = self._pick_items(rng, self._clusters(user, np.arange(start, start + n)), n)
            kind = rng.choice(len(types), size=n, p=type_p / type_p.sum())
            gaps = rng.integers(1, 2 * self.mean_gap_ms, n)
            stars = rng.integers(1, 11, n) / 2.0
            for j in range(n):
                ts += int(gaps[j])
                yield self._event(start + j, int(user[j]), int(item[j]), types[kind[j]], ts, float(stars[j]))

    def _pick_items(self, rng: np.random.Generator, cluster: np.ndarray, n: int) -> np.ndarray:
        # Zipf-like rank within the candidate set: rank r has weight ~ 1 / (r + 1).
        per_cluster = self.items // self.clusters
        rank_in_cluster = np.minimum(rng.zipf(1.3, n) - 1, per_cluster - 1)
        in_cluster = cluster + self.clusters * rank_in_cluster
        anywhere = np.minimum(rng.zipf(1.3, n) - 1, self.items - 1)
        stay = rng.random(n) < self.in_cluster
        return np.where(stay, in_cluster, anywhere)

    def _event(self, index: int, user: int, item: int, kind: EventType, ts: int, stars: float) -> KeyedEvent:
        user_id = f"u{user}"
        rating = stars if kind is EventType.RATING else None
        value = encode_event(user_id, f"i{item}", kind, ts, event_id=f"syn-{self.seed}-{index}",
                             rating=rating)
        return KeyedEvent(event_key(user_id), value, ts)

    def catalog(self) -> list[ItemMeta]:
        """Every item with a title naming its cluster (so recommendations can be eyeballed)."""
        return [ItemMeta(NodeId(f"i{m}"), f"item {m} (cluster {m % self.clusters})",
                         (f"cluster-{m % self.clusters}",)) for m in range(self.items)]
