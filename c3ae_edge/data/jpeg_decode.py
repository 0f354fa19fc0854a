"""JPEG bytes -> RGB uint8 through OpenCV's decoder (libjpeg-turbo, EXIF orientation applied): the same pixels as
Pillow's decode here (identical arrays on FG-NET photos and camera-sized frames, tests/test_blazeface.py) at a
fraction of the cost (bench/scripts/photo_to_age.py --decoders). Anything else (PNG, CMYK/Adobe JPEGs, undecodable
bytes) returns None and the caller decodes with Pillow."""

from __future__ import annotations

import numpy as np


def decode_jpeg_rgb(data: bytes) -> np.ndarray | None:
    if (
        data[:3] != b"\xff\xd8\xff" or b"Adobe" in data[:4096]
    ):  # not JPEG, or possibly CMYK/YCCK (Pillow converts those)
        return None
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or min(bgr.shape[:2]) < 8:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
