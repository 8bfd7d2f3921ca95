"""NDDe + TPDi density-peak clustering of embeddings, scikit-learn style."""

from ._density import ndde_density
from ._knn import knn_graph
from ._merge import merge_by_flow
from ._ndde import NDDeTPDiClustering
from ._peaks import density_peaks, link_saturated_peaks
from ._tpdi import tpdi
from ._transition import row_softmax, transition_matrix

__version__ = "0.1.0"

__all__ = [
    "NDDeTPDiClustering",
    "density_peaks",
    "knn_graph",
    "link_saturated_peaks",
    "merge_by_flow",
    "ndde_density",
    "row_softmax",
    "tpdi",
    "transition_matrix",
]
