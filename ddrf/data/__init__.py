"""Numpy-level readers: Landsat-7 FuseBox pairs, PanCollection HDF5, GeoTIFF PAN/MS pairs; acquisition splits."""

from ddrf.data.geotiff import read_band_pair, read_geotiff_pair
from ddrf.data.landsat7 import FUSEBOX_TEST_ACQUISITION, fusebox_acquisition, load_fusebox, split_by_acquisition
from ddrf.data.pair import Pair
from ddrf.data.pancollection import PanCollectionArrays, PanCollectionFile, infer_divisor, read_pancollection

__all__ = [
    "FUSEBOX_TEST_ACQUISITION",
    "Pair",
    "PanCollectionArrays",
    "PanCollectionFile",
    "fusebox_acquisition",
    "infer_divisor",
    "load_fusebox",
    "read_band_pair",
    "read_geotiff_pair",
    "read_pancollection",
    "split_by_acquisition",
]
