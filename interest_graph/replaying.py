"""``interest-graph replay``: pick a source, publish its catalog, then its events in time order."""

from __future__ import annotations

import sys
from pathlib import Path

from core.settings import Settings
from streams.datasets import MOVIELENS_DIR, ClusteredInterests, movielens_events, movielens_items
from streams.replay import publish_items, replay

#: Size of the synthetic stream used where movielens-small is not on the machine.
SYNTHETIC_USERS, SYNTHETIC_ITEMS, SYNTHETIC_EVENTS = 600, 3000, 60_000


def resolve_source(source: str, data_dir: Path) -> str:
    """``auto`` means movielens when its folder exists (as on the developers' machines), else synthetic."""
    if source != "auto":
        return source
    return "movielens" if (data_dir / MOVIELENS_DIR / "ratings.csv").is_file() else "synthetic"


def replay_dataset(settings: Settings, *, source: str, data_dir: Path, rate: float | None,
                   limit: int | None, progress: bool) -> int:
    """Publish the catalog to the items topic and the events to the events topic; returns events sent."""
    chosen = resolve_source(source, data_dir)
    bootstrap = settings.bootstrap_servers
    if chosen == "movielens":
        items = movielens_items(data_dir)
        events = movielens_events(data_dir, limit=limit)
        total: int | None = len(events)
        stream = iter(events)
    else:
        generator = ClusteredInterests(SYNTHETIC_USERS, SYNTHETIC_ITEMS)
        items = generator.catalog()
        total = limit or SYNTHETIC_EVENTS
        stream = generator.events(total)
    published = publish_items(items, bootstrap, settings.items_topic)
    print(f"[replay] {chosen}: {published} catalog records -> {settings.items_topic}", file=sys.stderr)
    return replay(stream, bootstrap, settings.events_topic, rate=rate, progress=progress, total=total)
