"""``interest-graph train``: base embeddings (SpectralCF by default) from a snapshot of the graph store.

The store is opened read-only, so this runs beside a live ``interest-graph up`` (LadybugDB admits
one writer but concurrent read-only processes). The checkpoint lands atomically in the model dir,
where the refresh worker picks it up and republishes every embedding.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.settings import Settings


def train_command(settings: Settings, *, data_dir: str | None, out: str | None, epochs: int | None) -> int:
    from graph_store import open_store
    from models.methods import train_from_store

    if data_dir is not None:
        from interest_graph.quality import train_on_dataset

        return train_on_dataset(settings, data_dir=Path(data_dir), out=Path(out or settings.model_dir))
    if settings.model_method == "lightgcn":
        from models.runtime import use_torch_threads

        # Process-wide, so set once at the start; half the cores, as `train` runs beside a live `up`.
        # SpectralCF keeps torch's default, as it always had.
        use_torch_threads()
    started = time.monotonic()
    with open_store(settings, read_only=True) as store:
        checkpoint = train_from_store(store, settings, out, epochs=epochs)
    method = checkpoint.meta.get("method", "lightgcn")
    print(f"[train] {method} on {len(checkpoint.user_ids)} users x {len(checkpoint.item_ids)} items, "
          f"{time.monotonic() - started:.1f} s -> {out or settings.model_dir}", file=sys.stderr)
    return 0
