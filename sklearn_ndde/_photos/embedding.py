"""Faces found, aligned and embedded with dlib."""

import numbers

import numpy as np

from .files import _MISSING_EXTRA


class FaceEmbedder:
    """dlib's face detector, 5-point alignment and 128-d descriptor.

    Parameters
    ----------
    upsample : int, default=1
        Times the picture is doubled before detection; 1 finds faces down
        to about 40 pixels, 0 is four times faster and finds them from
        about 80.
    min_face_size : int, default=20
        Detections whose box is narrower than this many pixels (in the
        picture as it is) are dropped.
    max_side : int or None, default=2000
        Pictures whose longer side is larger are shrunk to it before
        detection (boxes are given in the original picture); bounds the time
        of one picture. None keeps every picture as it is.

    Examples
    --------
    >>> from sklearn_ndde.faces import FaceEmbedder
    >>> FaceEmbedder(upsample=0).settings()
    {'upsample': 0, 'min_face_size': 20, 'max_side': 2000}
    """

    #: The ranges of the parameters: each doubling quadruples a picture's
    #: pixels, so ``upsample`` 3 already makes a 2,000-pixel photo a
    #: 16,000-pixel one (768 MB).
    LIMITS = {
        "upsample": (0, 3),
        "min_face_size": (0, 10_000),
        "max_side": (32, 20_000),
    }

    def __init__(self, upsample=1, min_face_size=20, max_side=2000):
        for name, value in [
            ("upsample", upsample),
            ("min_face_size", min_face_size),
            ("max_side", max_side),
        ]:
            if name == "max_side" and value is None:
                continue
            low, high = self.LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
            if not low <= value <= high:
                raise ValueError(
                    f"{name} must be between {low} and {high}, got {value}."
                )
        self.upsample = upsample
        self.min_face_size = min_face_size
        self.max_side = max_side
        self._models = None

    def settings(self):
        """The parameters that change what is detected (the cache's key)."""
        return {
            "upsample": int(self.upsample),
            "min_face_size": int(self.min_face_size),
            "max_side": None if self.max_side is None else int(self.max_side),
        }

    def _load(self):
        if self._models is None:
            try:
                import dlib
                import face_recognition_models as models
            except ImportError:
                raise ImportError(_MISSING_EXTRA) from None
            self._models = (
                dlib,
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(models.pose_predictor_five_point_model_location()),
                dlib.face_recognition_model_v1(
                    models.face_recognition_model_location()
                ),
            )
        return self._models

    def embed(self, image):
        """Faces of one RGB picture.

        Returns
        -------
        boxes : ndarray of shape (n_faces, 4), dtype int32
            ``left, top, right, bottom`` in pixels of ``image``, clipped to
            it, from left to right.
        descriptors : ndarray of shape (n_faces, 128), dtype float32
            dlib's descriptors (same person below a Euclidean distance of
            about 0.6).
        """
        dlib, detector, predictor, encoder = self._load()
        image = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = image.shape[:2]
        scale = 1.0
        small = image
        if self.max_side is not None and max(height, width) > self.max_side:
            from PIL import Image

            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        found = detector(small, int(self.upsample))
        boxes, descriptors = [], []
        for rect in sorted(found, key=lambda r: (r.left(), r.top())):
            box = np.array(
                [rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=float
            )
            box = np.round(box / scale).astype(np.int64)
            box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
            if box[2] - box[0] < self.min_face_size:
                continue
            full = dlib.rectangle(*(int(v) for v in box))
            shape = predictor(image, full)
            descriptors.append(
                np.asarray(encoder.compute_face_descriptor(image, shape))
            )
            boxes.append(box)
        if not boxes:
            return np.empty((0, 4), np.int32), np.empty((0, 128), np.float32)
        return np.array(boxes, dtype=np.int32), np.array(descriptors, dtype=np.float32)
