"""Pair similarities: how likely two neighbouring samples share an identity."""

from ._base import PairSimilarity
from ._calibrated import CalibratedCosineSimilarity

__all__ = ["CalibratedCosineSimilarity", "PairSimilarity"]
