"""Readable terminal output for ``recommend``, ``similar``, ``friends``, ``explain``, ``watch`` and ``status``.

``status`` asks two independent sources, so one being down never hides the other: the broker for
lag (committed offsets of the consumer group vs partition ends, measured outside Faust) and the
dead-letter count, and the gRPC server for refresh backlog and embedding age.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO, TypeVar

from core.settings import Settings

if TYPE_CHECKING:
    from interest_graph.status_metrics import MetricsReading
    from proto import recommender_pb2 as pb
    from serving.client import RecommenderClient

Reply = TypeVar("Reply")


def _ask(settings: Settings, what: str, call: Callable[[RecommenderClient], Reply]) -> Reply | None:
    """``call(client)`` on the configured server; on an error, ``what: CODE: message`` to stderr and ``None``."""
    # Imported here, not at the top: commands that never call the server start without loading gRPC.
    from serving.client import RecommenderClient, RecommenderError
    from serving.config import ClientConfig

    with RecommenderClient.from_config(ClientConfig.from_settings(settings)) as client:
        try:
            return call(client)
        except RecommenderError as exc:
            print(f"{what}: {exc}", file=sys.stderr)
            return None


def _show(settings: Settings, what: str, call: Callable[[RecommenderClient], Reply],
          render: Callable[[Reply], str]) -> int:
    """Print ``render`` of the reply to ``call`` and return 0, or 1 after :func:`_ask` printed the error."""
    reply = _ask(settings, what, call)
    if reply is None:
        return 1
    print(render(reply))
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _items_table(items: Sequence[pb.ScoredItem]) -> str:
    return _table(["#", "item", "score", "title"],
                  [(n, it.item_id, f"{it.score:.4f}", it.title) for n, it in enumerate(items, 1)])


def print_recommendations(
    settings: Settings, user_id: str, *, k: int, exclude_seen: bool, include: Sequence[str] = (),
    exclude: Sequence[str] = (), diversity: float | None = None,
) -> int:
    from proto import recommender_pb2  # here: render runs only once the server answered

    def render(reply: pb.RecommendReply) -> str:
        source = recommender_pb2.RecommendSource.Name(reply.source).removeprefix("RECOMMEND_SOURCE_").lower()
        return (f"\nuser {user_id}: top {k}, {source} (embedding version {reply.embedding_version}, "
                f"age {reply.embedding_age_ms} ms, {reply.index_kind} index)\n{_items_table(reply.items)}")

    return _show(settings, f"recommend {user_id!r}", lambda client: client.recommend(
        user_id, k=k, exclude_seen=exclude_seen, include_categories=include, exclude_categories=exclude,
        diversity_lambda=diversity), render)


def print_similar(settings: Settings, item_id: str, *, k: int) -> int:
    def render(reply: pb.SimilarItemsReply) -> str:
        return (f"\nitems similar to {item_id} (embedding version {reply.embedding_version})\n"
                f"{_items_table(reply.items)}")

    return _show(settings, f"similar {item_id!r}", lambda client: client.similar_items(item_id, k=k), render)


def print_friends(settings: Settings, user_id: str, *, k: int) -> int:
    def render(reply: pb.RecommendFriendsReply) -> str:
        return "\n".join([
            f"\nusers with interests like {user_id} (embedding version {reply.embedding_version})",
            _table(["#", "user", "score", "embedding cosine", "co-interaction", "shared items"],
                   [(n, f.user_id, f"{f.score:.4f}", f"{f.embedding_similarity:.4f}", f"{f.co_interaction:.4f}",
                     f.shared_items) for n, f in enumerate(reply.users, 1)]),
        ])

    return _show(settings, f"friends {user_id!r}", lambda client: client.friends(user_id, k=k), render)


def print_explanation(settings: Settings, user_id: str, item_id: str, *, limit: int) -> int:
    def render(why: pb.ExplainReply) -> str:
        title = f" ({why.title})" if why.title else ""
        rank = f"about {why.rank}" if why.rank_estimated else str(why.rank)
        return "\n".join([
            f"\nitem {item_id}{title} for user {user_id}: score {why.score:.4f}, rank {rank}"
            f"{', already seen' if why.seen else ''} (embedding version {why.embedding_version})",
            "\nthe user's items that contribute most",
            _table(["#", "item", "contribution", "similarity", "edge weight", "title"],
                   [(n, e.item_id, f"{e.contribution:+.4f}", f"{e.similarity:.4f}", f"{e.edge_weight:g}", e.title)
                    for n, e in enumerate(why.items, 1)]),
            "\nneighbours who interacted with it and share the user's items",
            _table(["#", "user", "contribution", "shared items"],
                   [(n, v.user_id, f"{v.contribution:.4f}", v.shared_items) for n, v in enumerate(why.neighbours, 1)]),
        ])

    return _show(settings, f"explain {user_id!r} {item_id!r}",
                 lambda client: client.explain(user_id, item_id, limit=limit), render)


def print_watch(settings: Settings, user_id: str, *, k: int, exclude_seen: bool) -> int:
    def follow(client: RecommenderClient) -> int:
        with client.watch(user_id, k=k, exclude_seen=exclude_seen) as stream:  # leaving it cancels the stream
            for reply in stream:
                print(time.strftime("\n%H:%M:%S ") + f"user {user_id}: top {k} (embedding version "
                      f"{reply.embedding_version}, age {reply.embedding_age_ms} ms)", flush=True)
                print(_items_table(reply.items), flush=True)
        return 0

    # The stream ends with an error (the server stopped: 1) or quietly after a cancel (0).
    followed = _ask(settings, f"watch {user_id!r}", follow)
    return 1 if followed is None else followed


@dataclass
class StatusView:
    """What ``status`` shows; ``None`` where that source could not be asked (with the reason)."""

    lag: list[tuple[int, int | None, int, int]] | None
    lag_error: str
    dead_letters: int | None
    serving: pb.StatusReply | None
    serving_error: str
    #: The stack's ``/metrics`` exposition (throughput, latency, freshness, stall), or ``None``.
    metrics: MetricsReading | None = None
    metrics_error: str = ""

    @property
    def total_lag(self) -> int | None:
        return None if self.lag is None else sum(row[3] for row in self.lag)


def collect_status(settings: Settings) -> StatusView:
    from serving.client import RecommenderClient, RecommenderError
    from serving.config import ClientConfig
    from streams.lag import LagProbe, LagUnavailableError

    probe = LagProbe(settings.bootstrap_servers, timeout_s=3.0)
    lag: list[tuple[int, int | None, int, int]] | None = None
    dead: int | None = None
    lag_error = serving_error = ""
    try:
        lag = [(p.partition, p.committed, p.end, p.lag)
               for p in probe.topic_lag(settings.events_topic, settings.consumer_group)]
        dead = probe.topic_size(settings.dead_letter_topic)
    except LagUnavailableError as exc:
        lag_error = str(exc)
    serving = None
    with RecommenderClient.from_config(ClientConfig.from_settings(settings), timeout_s=3.0) as client:
        try:
            serving = client.status()
        except RecommenderError as exc:
            serving_error = str(exc)
    metrics, metrics_error = _scrape_metrics(settings)
    return StatusView(lag, lag_error, dead, serving, serving_error, metrics, metrics_error)


def _scrape_metrics(settings: Settings) -> tuple[MetricsReading | None, str]:
    from interest_graph.status_metrics import MetricsUnavailableError, metrics_url, scrape

    if not settings.metrics_port:
        return None, "metrics are off (IG_METRICS_PORT=0)"
    try:
        return scrape(metrics_url(settings), time.monotonic()), ""
    except MetricsUnavailableError as exc:
        return None, str(exc)


def render_status(view: StatusView, settings: Settings, before: MetricsReading | None = None) -> str:
    """The status screen; ``before`` is the previous scrape under ``--watch`` (rates instead of totals)."""
    from interest_graph.status_metrics import render_metrics

    out = [f"consumer lag  (topic {settings.events_topic}, group {settings.consumer_group})"]
    if view.lag is None:
        out.append(f"  unavailable: {view.lag_error}")
    else:
        out.append(_table(["partition", "committed", "end", "lag"],
                          [(p, "-" if c is None else c, e, lag) for p, c, e, lag in view.lag]))
        out.append(f"total lag: {view.total_lag}   dead letters ({settings.dead_letter_topic}): {view.dead_letters}")
    s = view.serving
    if s is None:
        out.append(f"serving: unavailable: {view.serving_error}")
    else:
        out.append(_table(["embedding version", "embedding age", "changed-node backlog", "users/items indexed",
                           "store users/items/edges"],
                          [(s.embedding_version, f"{s.embedding_age_ms / 1000:.1f} s", s.changed_node_backlog,
                            f"{'live' if s.users_folded_in else s.users_indexed}/{s.items_indexed}",
                            f"{s.store_users}/{s.store_items}/{s.store_edges}")]))
    if view.metrics is None:
        out.append(f"metrics: unavailable: {view.metrics_error}")
    else:
        # The changed-node backlog shows once: from the gRPC status (counted on request) when the server
        # answers, else from the scrape (cached and capped by the collector), never both side by side.
        out.extend(render_metrics(view.metrics, before, dead_letter_topic_records=view.dead_letters,
                                  with_backlog=s is None))
    return "\n".join(out)


class StatusScreen:
    """Writes the frames of ``status --watch`` to ``out``.

    On a terminal each frame clears the screen and redraws in place; written to a pipe or a file,
    clear-screen escapes would be garbage in the log, so frames follow one another, each under a
    timestamped header.

    Args:
        out (TextIO): where frames go (``sys.stdout`` for the command).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.redraw = out.isatty()
        self.frames = 0

    def show(self, text: str) -> None:
        header = time.strftime("%H:%M:%S  interest-graph status\n\n")
        if self.redraw:
            header = "\x1b[2J\x1b[H" + header
        elif self.frames:
            header = "\n" + header  # a blank line between frames
        self.out.write(header + text + "\n")
        self.out.flush()
        self.frames += 1


def print_status(settings: Settings, *, watch: bool, interval_s: float) -> int:
    before: MetricsReading | None = None
    screen = StatusScreen(sys.stdout)
    while True:
        view = collect_status(settings)
        text = render_status(view, settings, before)
        before = view.metrics or before
        if not watch:
            print(text, flush=True)
            stalled = view.metrics is not None and view.metrics.value("ig_ingest_stalled", 0.0) > 0
            return 0 if view.lag is not None and view.serving is not None and not stalled else 1
        screen.show(text)
        time.sleep(interval_s)
