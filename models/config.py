"""The model room's own configuration: what a fit, the refresh worker and cold start read.

Every setting is declared once, in :mod:`core.settings`; the ``from_settings`` classmethods below
pick this room's fields at the top (``interest_graph``), and only these values travel down. This
is the one module of ``models`` that imports the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """What :func:`~models.methods.fit` and :func:`~models.methods.train_from_store` read.

    Attributes:
        model_dir (str): Where a fit is saved by default (``IG_MODEL_DIR``).
        model_method (str): ``spectral`` or ``lightgcn`` (``IG_MODEL_METHOD``).
        spectral_rank (int): Largest SpectralCF rank (``IG_SPECTRAL_RANK``), dims.
        spectral_values (str): SpectralCF matrix values, ``weight`` or ``binary`` (``IG_SPECTRAL_VALUES``).
        embedding_dim (int): LightGCN embedding width (``IG_EMBEDDING_DIM``), dims.
        num_layers (int): LightGCN propagation layers K (``IG_NUM_LAYERS``).
    """

    model_dir: str
    model_method: str
    spectral_rank: int
    spectral_values: str
    embedding_dim: int
    num_layers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelConfig:
        return settings.section(cls)


@dataclass(frozen=True, slots=True)
class RefreshConfig:
    """What the :class:`~models.refresh.RefreshWorker` and :func:`~models.methods.refresh_method` read.

    Attributes:
        model (ModelConfig): The worker's own fits (bootstrap), and the hashed-base LightGCN width
            and depth while there is no checkpoint.
        refresh_interval_s (float): How often the worker polls (``IG_REFRESH_INTERVAL``), s.
        refresh_fanout (int): Most neighbours per node a LightGCN refresh reads; 0 = no cap (``IG_REFRESH_FANOUT``).
        refresh_max_seeds (int): Most changed nodes in one round (``IG_REFRESH_MAX_SEEDS``).
        persist_interval_s (float): With write-behind (``up``), seconds between store writes of the
            refreshed embeddings; 0 = write each round (``IG_PERSIST_INTERVAL``).
        bootstrap_min_edges (int): Edges from which the worker fits its own checkpoint; 0 = never
            (``IG_BOOTSTRAP_MIN_EDGES``).
        bootstrap_epochs (int): LightGCN epochs of those fits (``IG_BOOTSTRAP_EPOCHS``).
    """

    model: ModelConfig
    refresh_interval_s: float
    refresh_fanout: int
    refresh_max_seeds: int
    persist_interval_s: float
    bootstrap_min_edges: int
    bootstrap_epochs: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RefreshConfig:
        return settings.section(cls, model=ModelConfig.from_settings(settings))


@dataclass(frozen=True, slots=True)
class ColdStartConfig:
    """What :meth:`~models.cold_start.catalog.ColdItems.from_config` reads.

    Attributes:
        cold_start_interval_s (float): Pause between cold-start passes; 0 = no cold start
            (``IG_COLD_START_INTERVAL``), s.
        cold_start_fit_items (int): Warm items the text projection is fitted on (``IG_COLD_START_FIT_ITEMS``).
        cold_start_batch (int): Most cold items embedded per pass (``IG_COLD_START_BATCH``).
    """

    cold_start_interval_s: float
    cold_start_fit_items: int
    cold_start_batch: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ColdStartConfig:
        return settings.section(cls)
