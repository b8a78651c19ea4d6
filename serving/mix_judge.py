"""How a Recommend list mixes its signals, chosen per segment by how the stream's own next events land.

A list ranks its candidates by

.. math::
    r(j) = \\alpha' \\hat p(j) + (1 - \\alpha') \\hat s(j) + \\beta \\, \\hat t(j), \\qquad \\alpha' = m \\, \\alpha(n)

with :math:`\\hat p`, :math:`\\hat s` the min-max scaled personal and trending scores, :math:`\\alpha(n)`
the blend's personal weight for a user with :math:`n` items (:mod:`serving.blending`), :math:`\\hat t`
the scaled next-items score (:mod:`serving.transitions`). A :class:`Mix` is one :math:`(m, \\beta)`;
:math:`(1, 0)` is the blend alone, today's list. What a stream rewards differs: users who move on to
new interests are followed by their latest items (:math:`\\beta > 0`), users who rate a backlog in
one sitting are not, and there heavy users' next items are the popular ones more than their own
history says (:math:`m < 1`; MovieLens, bench/RESULTS.md). So the mix is not a constant:
:class:`MixJudge` keeps, per segment of the user's item count, a decayed hit count of every mix of
:data:`MIXES`, scored on a sample of the committed events against the lists their users would have
got just before them (:mod:`serving.next_judging` takes the sample off the ingest path). A segment
that has judged ``min_events`` events serves its mix with the most hits if that beats the blend alone
by a clear margin (McNemar's paired test); one with fewer goes by all segments' hits together; the
blend alone while fewer than ``min_events`` were judged in all. A shadow evaluation on the live
stream: the online form of the replay benchmark that chose the blend's own prior.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Next-items weights judged, :math:`\beta`.
LADDER = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0)
#: Shares of the blend's personal weight judged, :math:`m` (1: the blend's own; 0: trending, no personal).
SHARES = (1.0, 0.5, 0.0)
#: Standard deviations by which a mix's hits must beat the blend's alone for it to be served.
MARGIN_SD = 2.0
#: Segments by the user's distinct items: at most 5, 6-50, more (the replay benchmark's segments).
SEGMENT_BOUNDS = (5, 50)


@dataclass(frozen=True, slots=True)
class Mix:
    """One way of mixing a list: :math:`m` (``share``) and :math:`\\beta` (``beta``) of the module docs."""

    share: float = 1.0
    beta: float = 0.0

    @property
    def is_blend(self) -> bool:
        """The blend alone: no next items, the blend's own personal weight."""
        return self.share == 1.0 and self.beta == 0.0

    def personal_weight(self, blend_weight: float) -> float:
        """:math:`\\alpha'` for a user whose blend gives personal weight ``blend_weight``."""
        return self.share * blend_weight


#: The blend alone: what a segment serves until the judge says otherwise.
BLEND = Mix()
#: Every mix judged, the blend alone first.
MIXES = tuple(Mix(share, beta) for share in SHARES for beta in LADDER)


class MixJudge:
    """Decayed hits of each mix per segment, and the mix each segment serves (module docs).

    Args:
        k (int): List length a judged event must be in to count as a hit (default: ``10``).
        half_life_events (float): Judged events of a segment for a hit to count half (default: ``2000.0``).
        min_events (int): Judged events a segment needs before it serves more than the blend (default: ``50``).
        mixes (Sequence[Mix]): The mixes judged, the blend alone first (default: :data:`MIXES`).
    """

    def __init__(self, k: int = 10, half_life_events: float = 2000.0, min_events: int = 50,
                 mixes: Sequence[Mix] = MIXES) -> None:
        if k < 1 or half_life_events <= 0 or min_events < 0 or not mixes or not mixes[0].is_blend:
            raise ValueError("k >= 1, half_life_events > 0, min_events >= 0 and mixes starting with the blend")
        self.k, self.min_events, self.mixes = k, min_events, tuple(mixes)
        self._keep = 2.0 ** (-1.0 / half_life_events)
        self._lock = threading.Lock()
        segments = len(SEGMENT_BOUNDS) + 1
        self._hits = np.zeros((segments, len(self.mixes)), dtype=np.float64)
        #: Decayed events where a mix and the blend alone disagreed (one hit, the other not).
        self._split = np.zeros((segments, len(self.mixes)), dtype=np.float64)
        self._judged = np.zeros(segments, dtype=np.int64)

    @staticmethod
    def segment(interactions: int) -> int:
        """0, 1 or 2: the user's segment by distinct items."""
        return int(np.searchsorted(SEGMENT_BOUNDS, interactions, side="left"))

    def mix(self, interactions: int) -> Mix:
        """The mix served to a user with ``interactions`` distinct items."""
        seg = self.segment(interactions)
        enough = max(self.min_events, 1)
        with self._lock:
            if self._judged[seg] >= enough:
                hits, split = self._hits[seg].copy(), self._split[seg].copy()
            elif self._judged.sum() >= enough:  # a segment short of events goes by all of them
                hits, split = self._hits.sum(axis=0), self._split.sum(axis=0)
            else:
                return self.mixes[0]
        # A mix replaces the blend alone only by a clear margin: McNemar's paired test, its hits
        # past the blend's (= events only it hit less events only the blend hit) at least MARGIN_SD
        # standard deviations of that difference, sqrt(events where they disagreed). On a stream
        # where no mix helps, chance would otherwise keep choosing one, and lose a little.
        clear = (hits > hits[0]) & (hits - hits[0] >= MARGIN_SD * np.sqrt(split))
        clear[0] = True
        best = np.flatnonzero(clear & (hits == hits[clear].max()))
        return self.mixes[int(best[0])]  # ties: the earlier mix (closer to the blend)

    def judge(self, interactions: int, rank_of_mix: Sequence[int | None]) -> None:
        """One judged event: the event item's rank (0-based, ``None`` = not listed) under each mix."""
        if len(rank_of_mix) != len(self.mixes):
            raise ValueError(f"{len(rank_of_mix)} ranks for {len(self.mixes)} mixes")
        seg = self.segment(interactions)
        hit = np.fromiter((r is not None and r < self.k for r in rank_of_mix), dtype=np.float64,
                          count=len(self.mixes))
        with self._lock:
            self._hits[seg] = self._hits[seg] * self._keep + hit
            self._split[seg] = self._split[seg] * self._keep + (hit != hit[0])
            self._judged[seg] += 1

    def served(self) -> dict[str, Mix]:
        """The mix each segment serves now, by the segment's label (``<= 5``, ``<= 50``, ``> 50``)."""
        return {f"<= {most}": self.mix(most) for most in SEGMENT_BOUNDS} | {
            f"> {SEGMENT_BOUNDS[-1]}": self.mix(SEGMENT_BOUNDS[-1] + 1)}
