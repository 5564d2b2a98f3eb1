"""The DDRF network: Haar DWT, efficient cross-attention, style/wavelet modulation, UNet; `encode`/`denoise`."""
from .config import DDRFConfig
from .unet import DDRF
from .wavelet import haar_dwt

__all__ = ["DDRF", "DDRFConfig", "haar_dwt"]
