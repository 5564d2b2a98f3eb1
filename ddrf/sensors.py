"""The one sensor vocabulary: names and aliases, PAN/MS ratio, bit depth, MTF gains and spectral bands.

Discovery (`ddrf.scenes.discover`), the baselines, training and evaluation all name sensors through `get_sensor`,
so a name that discovery produces is one that every other part accepts.

MTF gains at Nyquist are the pansharpening toolbox's tables (Vivone et al., `genMTF.m` for MS, `MTF_PAN.m` for
PAN); a sensor the toolbox has no table for gets its "otherwise" defaults (MS 0.3, PAN 0.15), which are not measured
values. Band edges are the nominal edges of each sensor's documentation, named per sensor in `source`; centre and
width follow from the edges (they are not response-weighted effective wavelengths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

__all__ = ["Band", "Sensor", "SENSORS", "get_sensor", "find_sensor", "ms_mtf_gains", "KNOWN_BAND_NAMES",
           "listed_bands"]


@dataclass(frozen=True)
class Band:
    """One spectral band: nominal edges in nm and its number in the products (Landsat B2 -> 2, Pleiades B0 -> 0)."""

    name: str
    low_nm: float
    high_nm: float
    number: int | None = None

    @property
    def centre_nm(self) -> float:
        return (self.low_nm + self.high_nm) / 2.0

    @property
    def width_nm(self) -> float:
        return self.high_nm - self.low_nm


@dataclass(frozen=True)
class Sensor:
    """One sensor: ratio PAN/MS, radiometric bits, MTF gains at Nyquist, the fused MS bands and every band's edges.

    ``band_names`` are the MS bands fused by default, in order (``ms_mtf`` holds one gain each, or a single gain
    for any number of bands); empty for the generic sensor. ``bands`` lists every reflective MS band of the
    instrument (also those not fused, e.g. Landsat coastal and SWIR), ``pan`` the PAN band; ``source`` names the
    document the edges come from.
    """

    name: str
    ratio: int
    bits: int
    ms_mtf: tuple[float, ...]
    pan_mtf: float
    band_names: tuple[str, ...]
    bands: tuple[Band, ...] = ()
    pan: Band | None = None
    source: str = ""

    def band(self, name: str) -> Band:
        for b in self.bands:
            if b.name == name:
                return b
        raise ValueError(f"sensor {self.name} has no band {name!r}; it has {', '.join(b.name for b in self.bands)}")

    def numbered(self, names: tuple[str, ...] | None = None) -> dict[int, str]:
        """Product band number -> name for ``names`` (default: the fused bands), in that order."""
        numbers: dict[int, str] = {}
        for name in names or self.band_names:
            number = self.band(name).number
            if number is None:
                raise ValueError(f"sensor {self.name}: band {name} has no product band number")
            numbers[number] = name
        return numbers

    def band_sets(self) -> tuple[tuple[str, ...], ...]:
        """The band sets a product of this sensor holds, in band-number order: the fused bands, then every MS band."""
        return tuple(dict.fromkeys(names for names in (self.band_names, tuple(b.name for b in self.bands)) if names))

    def for_bands(self, names: Sequence[str] | None) -> "Sensor":
        """This sensor for an MS holding the fused bands ``names`` in that order (another order, or some of them such
        as WorldView's red, green, blue): each band keeps its own MTF gain. Unnamed bands, names the sensor does not
        fuse, or a single gain for every band: as it is (gains by position)."""
        if names is None or len(self.ms_mtf) == 1 or not set(names) <= set(self.band_names):
            return self
        gains = dict(zip(self.band_names, self.ms_mtf))
        return replace(self, ms_mtf=tuple(gains[n] for n in names), band_names=tuple(names))

    def every_band_numbered(self) -> dict[int, str]:
        """Product band number -> name of every MS band of the instrument, fused by default or not (coastal, SWIR)."""
        return self.numbered(tuple(b.name for b in self.bands))


BGRN = ("blue", "green", "red", "nir")
WV8 = ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2")


def _edges(names: tuple[str, ...], edges: tuple[tuple[float, float], ...],
           first: int | None = None) -> tuple[Band, ...]:
    """Bands from names and (low, high) nm edges, numbered from ``first`` when the products number them."""
    numbers = [None if first is None else first + i for i in range(len(names))]
    return tuple(Band(n, lo, hi, k) for n, (lo, hi), k in zip(names, edges, numbers))


# Landsat: band numbers as in the products; B6 (thermal) and B9 (cirrus) are left out: they are never fused.
_L7 = (Band("blue", 441, 514, 1), Band("green", 519, 601, 2), Band("red", 631, 692, 3), Band("nir", 772, 898, 4),
       Band("swir1", 1547, 1749, 5), Band("swir2", 2064, 2345, 7))
_OLI = (Band("coastal", 435, 451, 1), Band("blue", 452, 512, 2), Band("green", 533, 590, 3), Band("red", 636, 673, 4),
        Band("nir", 851, 879, 5), Band("swir1", 1566, 1651, 6), Band("swir2", 2107, 2294, 7))
_WV = _edges(WV8, ((400, 450), (450, 510), (510, 580), (585, 625), (630, 690), (705, 745), (770, 895), (860, 1040)))
_GF = _edges(BGRN, ((450, 520), (520, 590), (630, 690), (770, 890)))

SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in (
        Sensor("QB", 4, 11, (0.34, 0.32, 0.30, 0.22), 0.15, BGRN,
               _edges(BGRN, ((450, 520), (520, 600), (630, 690), (760, 900))), Band("pan", 450, 900),
               "DigitalGlobe, QuickBird imagery products / QuickBird data sheet (nominal bands)"),
        Sensor("IKONOS", 4, 11, (0.26, 0.28, 0.29, 0.28), 0.17, BGRN,
               _edges(BGRN, ((445, 516), (506, 595), (632, 698), (757, 853))), Band("pan", 526, 929),
               "GeoEye (M. Taylor), IKONOS Planetary Reflectance and Mean Solar Exoatmospheric Irradiance, 2009"),
        Sensor("GeoEye-1", 4, 11, (0.23, 0.23, 0.23, 0.23), 0.16, BGRN,
               _edges(BGRN, ((450, 510), (510, 580), (655, 690), (780, 920))), Band("pan", 450, 800),
               "GeoEye, GeoEye-1 data sheet (nominal bands)"),
        Sensor("WV2", 4, 11, (0.35,) * 7 + (0.27,), 0.11, WV8, _WV, Band("pan", 450, 800),
               "DigitalGlobe, WorldView-2 data sheet (nominal bands)"),
        Sensor("WV3", 4, 11, (0.325, 0.355, 0.36, 0.35, 0.365, 0.36, 0.335, 0.315), 0.14, WV8, _WV,
               Band("pan", 450, 800), "DigitalGlobe, WorldView-3 data sheet (nominal VNIR bands)"),
        Sensor("GF1", 4, 10, (0.3,), 0.15, BGRN, _GF, Band("pan", 450, 900),
               "CRESDA, GF-1 PMS camera specifications; MTF: toolbox defaults"),
        Sensor("GF2", 4, 10, (0.3,), 0.15, BGRN, _GF, Band("pan", 450, 900),
               "CRESDA, GF-2 PMS camera specifications; MTF: toolbox defaults"),
        Sensor("Pleiades", 4, 12, (0.3,), 0.15, BGRN,
               _edges(BGRN, ((430, 550), (490, 610), (600, 720), (750, 950)), first=0), Band("pan", 480, 830),
               "Airbus Defence and Space, Pleiades Imagery User Guide (band IDs B0..B3); MTF: toolbox defaults"),
        Sensor("SPOT6/7", 4, 12, (0.3,), 0.15, BGRN,
               _edges(BGRN, ((455, 525), (530, 590), (625, 695), (760, 890)), first=0), Band("pan", 455, 745),
               "Astrium Services, SPOT 6 and SPOT 7 product page (nominal bands); band IDs B0..B3 as DINAMIS's SPOT-6/7"
               " imagery page; MTF: toolbox defaults"),
        # Unknown sensor: toolbox default gains; 11 bits is the PanCollection default, not a measured fact.
        Sensor("generic", 4, 11, (0.3,), 0.15, ()),
        # FuseBox pairs are 8-bit (a fact of that data set, not of ETM+); fused bands B1..B4.
        Sensor("Landsat7", 2, 8, (0.3,), 0.15, BGRN, _L7, Band("pan", 515, 896, 8),
               "USGS, Landsat 7 (L7) Data Users Handbook, LSDS-1927; MTF: toolbox defaults"),
        Sensor("Landsat8", 2, 12, (0.3,), 0.15, BGRN, _OLI, Band("pan", 503, 676, 8),
               "USGS, Landsat 8 (L8) Data Users Handbook, LSDS-1574; MTF: toolbox defaults"),
        Sensor("Landsat9", 2, 14, (0.3,), 0.15, BGRN, _OLI, Band("pan", 503, 676, 8),
               "USGS, Landsat 9 Data Users Handbook, LSDS-2082 (OLI-2: the OLI band edges); MTF: toolbox defaults"),
    )
}

# Aliases, compared without case, '-', '_' and spaces. Maxar satIds (WV02, QB02, GE01, IK01) are aliases too.
_ALIASES: dict[str, str] = {
    "qb": "QB", "quickbird": "QB", "quickbird2": "QB", "qb02": "QB",
    "ikonos": "IKONOS", "ik01": "IKONOS", "ik02": "IKONOS",
    "geoeye1": "GeoEye-1", "geoeye": "GeoEye-1", "ge1": "GeoEye-1", "ge01": "GeoEye-1",
    "wv2": "WV2", "worldview2": "WV2", "wv02": "WV2",
    "wv3": "WV3", "worldview3": "WV3", "wv03": "WV3",
    "gf1": "GF1", "gaofen1": "GF1",
    "gf2": "GF2", "gaofen2": "GF2",
    "pleiades": "Pleiades", "phr": "Pleiades", "phr1a": "Pleiades", "phr1b": "Pleiades",
    "pleiades1a": "Pleiades", "pleiades1b": "Pleiades",
    "spot6/7": "SPOT6/7", "spot6": "SPOT6/7", "spot7": "SPOT6/7", "spot67": "SPOT6/7",
    "generic": "generic", "none": "generic",
    "landsat7": "Landsat7", "l7": "Landsat7", "etm": "Landsat7", "etm+": "Landsat7", "le7": "Landsat7",
    "landsat8": "Landsat8", "l8": "Landsat8", "oli": "Landsat8", "lc8": "Landsat8",
    "landsat9": "Landsat9", "l9": "Landsat9", "lc9": "Landsat9",
}

KNOWN_BAND_NAMES: frozenset[str] = frozenset(b.name for s in SENSORS.values() for b in s.bands) | {"pan"}


def listed_bands(names: Sequence[str], most: int = 12) -> str:
    """Band names for a one-line message: all of them, or for a hyperspectral cube the first and last few and the
    count, so that the line stays readable."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {', '.join(names[-2:])} ({len(names)} bands)"


def find_sensor(name: str) -> Sensor | None:
    """Sensor by name or alias ('wv3', 'WorldView-3', 'WV03', 'landsat-8'), None when unknown."""
    key = re.sub(r"[\s_\-]", "", str(name)).lower()
    return SENSORS[_ALIASES[key]] if key in _ALIASES else None


def get_sensor(name: str | Sensor) -> Sensor:
    """Sensor by name or alias; an unknown name is an error that lists the known ones."""
    if isinstance(name, Sensor):
        return name
    found = find_sensor(name)
    if found is None:
        raise ValueError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)}")
    return found


def ms_mtf_gains(sensor: str | Sensor, n_bands: int) -> np.ndarray:
    """Per-band MTF gains at Nyquist for ``n_bands`` MS bands (a single table value is broadcast)."""
    s = get_sensor(sensor)
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    gains = np.asarray(s.ms_mtf, dtype=np.float64)
    if gains.size == 1:
        return np.full(n_bands, gains[0])
    if gains.size != n_bands:
        raise ValueError(f"sensor {s.name} has {gains.size} MS MTF gains, image has {n_bands} bands")
    return gains.copy()
