"""``interest-graph train``: a checkpoint of ``IG_MODEL_METHOD`` (SpectralCF by default) from a
snapshot of the graph store or, with ``--data-dir``, from a ``train.txt``/``test.txt`` dataset.

Both land in the one model directory format (:mod:`models.model_dir`), atomically, under the next
version. The store is opened read-only, so this runs beside a live ``interest-graph up``
(LadybugDB admits one writer but concurrent read-only processes); the refresh worker watching the
model dir picks the checkpoint up and republishes every embedding.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.settings import Settings

#: What ``train --help`` lists as read: every one of them reaches the fit.
TRAIN_SETTINGS = ("IG_MODEL_METHOD (spectral | lightgcn | sage | gat), IG_SPECTRAL_RANK and IG_SPECTRAL_VALUES "
                  "(spectral), IG_EMBEDDING_DIM and IG_NUM_LAYERS (lightgcn, sage, gat), IG_MODEL_DIR; without "
                  "--data-dir the "
                  "IG_STORE* settings of the graph store")


def train_command(settings: Settings, *, data_dir: str | None, out: str | None, epochs: int | None) -> int:
    from graph_store import StoreConfig, open_store
    from models.config import ModelConfig
    from models.methods import METHODS, TRAINED_METHODS, train_from_store
    from models.runtime import use_torch_threads

    method = settings.model_method
    if method not in METHODS:
        print(f"interest-graph train: IG_MODEL_METHOD must be one of {', '.join(METHODS)}, got {method!r}",
              file=sys.stderr)
        return 2
    if epochs is not None and method not in TRAINED_METHODS:
        print(f"interest-graph train: --epochs is for {', '.join(TRAINED_METHODS)}; {method} has no epochs",
              file=sys.stderr)
        return 2
    if method in TRAINED_METHODS:
        # Process-wide, so set once at the start; half the cores, as `train` runs beside a live `up`.
        # SpectralCF keeps torch's default, as it always had.
        use_torch_threads()
    model_dir = Path(out or settings.model_dir)
    started = time.monotonic()
    if data_dir is not None:
        from interest_graph.quality import train_on_dataset

        checkpoint = train_on_dataset(settings, data_dir=Path(data_dir), out=model_dir, epochs=epochs)
    else:
        with open_store(StoreConfig.from_settings(settings), read_only=True) as store:
            checkpoint = train_from_store(store, ModelConfig.from_settings(settings), model_dir, epochs=epochs)
    print(f"[train] {method} on {len(checkpoint.user_ids)} users x {len(checkpoint.item_ids)} items "
          f"(d={checkpoint.dim}) in {time.monotonic() - started:.1f} s -> {model_dir} v{checkpoint.version}",
          file=sys.stderr)
    return 0
