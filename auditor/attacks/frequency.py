"""Orthonormal 2-D DCT on image batches, and the colour transform the frequency attacks work in."""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn, idctn

# ITU-R BT.601 RGB -> YUV (FTrojan's choice); rows give Y, U, V
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]],
                       dtype=np.float64)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV)


def rgb_to_yuv(x: np.ndarray) -> np.ndarray:
    return x @ _RGB_TO_YUV.T


def yuv_to_rgb(x: np.ndarray) -> np.ndarray:
    return x @ _YUV_TO_RGB.T


def dct2(x: np.ndarray) -> np.ndarray:
    """DCT-II over the two spatial axes of an NHWC batch (orthonormal, so energy is kept)."""
    return dctn(x, type=2, axes=(1, 2), norm="ortho")


def idct2(x: np.ndarray) -> np.ndarray:
    return idctn(x, type=2, axes=(1, 2), norm="ortho")
