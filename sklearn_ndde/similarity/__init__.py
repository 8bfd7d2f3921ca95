"""Pair similarities: how likely two neighbouring samples share an identity."""

from ._base import PairSimilarity
from ._calibrated import CalibratedCosineSimilarity
from ._transformer import TransformerSimilarity

__all__ = ["CalibratedCosineSimilarity", "PairSimilarity", "TransformerSimilarity"]
