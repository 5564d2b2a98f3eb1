"""Sensor tables, MTF kernels/filters, Wald degradation and interp23 (real Landsat-7 crops from tests/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from scipy import ndimage

from ddrf.filters import (
    _B3,
    CDF23,
    _general_taps,
    decimate,
    interp23,
    lp_filter_gauss,
    lp_filter_plus_dec,
    mtf_filter,
    mtf_kernel,
    wald_degrade,
)
from ddrf.sensors import SENSORS, Sensor, get_sensor, ms_mtf_gains

DATA = Path(__file__).parent / "data" / "landsat7"


def load_landsat7(n: int) -> tuple[np.ndarray, np.ndarray]:
    """FuseBox crop n: misregistration removed (ms[1:, 1:] with pan[1:-1, 1:-1]), bands blue, green, red, nir."""
    ms = sio.loadmat(DATA / f"{n}_ms.mat")["cropped_im"][1:, 1:][:, :, [2, 1, 0, 3]].astype(np.float64)
    pan = sio.loadmat(DATA / f"{n}_pan.mat")["cropped_gray"][1:-1, 1:-1].astype(np.float64)
    return pan, ms


def _response(kernel: np.ndarray, freq: float) -> float:
    """Frequency response of a centred 2-D kernel at (freq, 0) cycles per pixel."""
    x = np.arange(kernel.shape[1]) - kernel.shape[1] // 2
    return float(np.sum(kernel.sum(axis=0) * np.cos(2 * np.pi * freq * x)))


# --- tables ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "alias, name",
    [("wv3", "WV3"), ("WorldView-3", "WV3"), ("landsat-8", "Landsat8"), ("QuickBird", "QB"),
     ("geoeye1", "GeoEye-1"), ("GF2", "GF2"), ("none", "generic"), ("Landsat_7", "Landsat7")],
)
def test_get_sensor_aliases(alias: str, name: str) -> None:
    assert get_sensor(alias).name == name


def test_unknown_sensor_lists_known_names() -> None:
    with pytest.raises(ValueError, match="WV3.*Landsat7"):
        get_sensor("spot-9")


def test_tables_match_method_sheet() -> None:
    assert SENSORS["QB"].ms_mtf == (0.34, 0.32, 0.30, 0.22) and SENSORS["QB"].pan_mtf == 0.15
    assert SENSORS["WV3"].ms_mtf[4] == 0.365 and SENSORS["WV3"].pan_mtf == 0.14
    assert SENSORS["WV2"].ms_mtf == (0.35,) * 7 + (0.27,)
    assert SENSORS["Landsat7"].ratio == 2 and SENSORS["Landsat7"].band_names == ("blue", "green", "red", "nir")
    assert SENSORS["Landsat8"].bits == 12 and SENSORS["GF2"].bits == 10
    for s in SENSORS.values():
        assert isinstance(s, Sensor) and all(0 < g < 1 for g in s.ms_mtf + (s.pan_mtf,))
        assert len(s.ms_mtf) in (1, len(s.band_names))


def test_ms_mtf_gains_broadcast_and_mismatch() -> None:
    np.testing.assert_array_equal(ms_mtf_gains("generic", 6), np.full(6, 0.3))
    np.testing.assert_array_equal(ms_mtf_gains("ikonos", 4), [0.26, 0.28, 0.29, 0.28])
    with pytest.raises(ValueError, match="8 MS MTF gains.*4 bands"):
        ms_mtf_gains("WV3", 4)


# --- MTF kernel and filter ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [2, 3, 4])
@pytest.mark.parametrize("gain", [0.11, 0.15, 0.3, 0.365])
def test_mtf_kernel_sum_and_nyquist_gain(gain: float, ratio: int) -> None:
    k = mtf_kernel(gain, ratio)
    assert k.shape == (41, 41)
    # The toolbox's kernels (fwind1, never normalised) sum to just under 1; unit_dc rescales exactly that kernel.
    assert 0.997 < k.sum() < 0.9998
    np.testing.assert_allclose(mtf_kernel(gain, ratio, unit_dc=True), k / k.sum(), rtol=1e-15)
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    # The toolbox design puts the gain (taps-1)/(2*ratio) DFT bins from DC, i.e. at 40/41 of the MS Nyquist
    # frequency, and the Kaiser window smooths it: at exactly 1/(2*ratio) the response sits 0.011-0.019 below.
    resp = _response(k, 1.0 / (2 * ratio))
    assert gain - 0.025 < resp < gain
    # Monotone low-pass: the response at the PAN Nyquist frequency is far below the MS-Nyquist gain.
    assert abs(_response(k, 0.5)) < 0.2 * gain


def test_mtf_kernel_rejects_bad_input() -> None:
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="gain"):
            mtf_kernel(bad, 4)
    with pytest.raises(ValueError, match="taps"):
        mtf_kernel(0.3, 4, taps=40)
    with pytest.raises(ValueError, match="ratio"):
        mtf_kernel(0.3, 0)


def test_mtf_filter_keeps_constants_and_shape() -> None:
    img = np.full((37, 50, 3), 7.25)
    out = mtf_filter(img, [0.3, 0.2, 0.11], 4, unit_dc=True)
    assert out.shape == img.shape
    np.testing.assert_allclose(out, 7.25, rtol=1e-12)
    np.testing.assert_allclose(mtf_filter(np.full((30, 31), -3.0), 0.15, 2, unit_dc=True), -3.0, rtol=1e-12)
    # The toolbox kernel scales a constant by its DC gain (replicated borders: everywhere).
    np.testing.assert_allclose(mtf_filter(img, 0.3, 4)[:, :, 0], 7.25 * mtf_kernel(0.3, 4).sum(), rtol=1e-12)


def test_lp_filter_plus_dec_is_the_binomial_filter_then_toolbox_decimation() -> None:
    """LPfilterPlusDec at ratio 2 = separable [1 4 6 4 1]/16 twice (binomial of order 8), then pixels 2i+1."""
    rng = np.random.default_rng(3)
    img = rng.normal(size=(40, 44))
    binomial = np.convolve(_B3, _B3)
    np.testing.assert_allclose(binomial * 256, [1, 8, 28, 56, 70, 56, 28, 8, 1])
    direct = ndimage.correlate1d(ndimage.correlate1d(img, binomial, axis=0), binomial, axis=1)
    out = lp_filter_plus_dec(img, 2)
    assert out.shape == (20, 22)
    interior = slice(3, -3)  # 4 PAN pixels from the edge (2 MS pixels) are border-dependent
    np.testing.assert_allclose(out[interior, interior], direct[1::2, 1::2][interior, interior], rtol=1e-12)
    np.testing.assert_allclose(lp_filter_plus_dec(np.full((16, 16), 5.0), 4), 5.0, rtol=1e-12)


def test_lp_filter_gauss_reach_is_taps_not_taps_minus_one() -> None:
    """LPfilterGauss puts the 0.3 gain N/(2 ratio) bins from DC (genMTF: (N-1)/(2 ratio)): a wider pass band."""
    img = np.zeros((81, 81))
    img[40, 40] = 1.0
    impulse = lp_filter_gauss(img, 2)[20:61, 20:61][::-1, ::-1]
    assert _response(impulse, 0.25) > _response(mtf_kernel(0.3, 2), 0.25)
    assert 0.998 < impulse.sum() < 1.0


def test_mtf_filter_matches_direct_correlation_with_replicated_border() -> None:
    pan, _ = load_landsat7(1)
    img = pan[:60, :70]
    ref = ndimage.correlate(img, mtf_kernel(0.15, 2), mode="nearest")
    np.testing.assert_allclose(mtf_filter(img, 0.15, 2), ref, atol=1e-9)


def test_mtf_filter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2 MTF gains for 3 bands"):
        mtf_filter(np.zeros((8, 8, 3)), [0.3, 0.3], 2)
    with pytest.raises(ValueError, match="2-D"):
        mtf_filter(np.zeros(8), 0.3, 2)


# --- Wald degradation ------------------------------------------------------------------------------------------

def _high_freq_energy(img: np.ndarray) -> float:
    """Fraction of (mean-removed) spectral energy above half the Nyquist frequency on either axis."""
    spec = np.abs(np.fft.fft2(img - img.mean())) ** 2
    f0, f1 = np.meshgrid(np.fft.fftfreq(img.shape[0]), np.fft.fftfreq(img.shape[1]), indexing="ij")
    return float(spec[np.maximum(abs(f0), abs(f1)) > 0.25].sum() / spec.sum())


def test_wald_degrade_shapes_and_low_pass_on_real_pair() -> None:
    pan, ms = load_landsat7(1)
    pan_lr, ms_lr = wald_degrade(pan, ms, 2, "Landsat7")
    assert pan_lr.shape == (pan.shape[0] // 2, pan.shape[1] // 2)
    assert ms_lr.shape == (ms.shape[0] // 2, ms.shape[1] // 2, 4)
    # MTF filtering before decimation removes most of what plain decimation would alias into high frequencies.
    assert _high_freq_energy(pan_lr) < 0.5 * _high_freq_energy(decimate(pan, 2))
    for b in range(4):
        assert _high_freq_energy(ms_lr[:, :, b]) < 0.6 * _high_freq_energy(decimate(ms[:, :, b], 2))
    # Low-pass keeps the level: band means move by well under 1 DN.
    np.testing.assert_allclose(ms_lr.mean(axis=(0, 1)), ms.mean(axis=(0, 1)), atol=1.0)


def test_wald_degrade_decimation_phase() -> None:
    # A single bright MS pixel at (5, 9): after filtering and decimation from offset ratio//2 the peak lands on
    # the low-resolution pixel whose PAN-grid position ratio*i + ratio//2 is nearest to it.
    ms = np.zeros((16, 16, 1))
    ms[5, 9, 0] = 100.0
    _, ms_lr = wald_degrade(np.zeros((64, 64)), ms, 4, "generic")
    assert np.unravel_index(np.argmax(ms_lr[:, :, 0]), ms_lr.shape[:2]) == (1, 2)


def test_wald_degrade_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="not a multiple of ratio"):
        wald_degrade(np.zeros((30, 30)), np.zeros((15, 15, 4)), 2, "Landsat7")
    with pytest.raises(ValueError, match="not ratio 2"):
        wald_degrade(np.zeros((30, 32)), np.zeros((16, 16, 4)), 2, "Landsat7")
    with pytest.raises(ValueError, match="band-last"):
        wald_degrade(np.zeros((32, 32)), np.zeros((16, 16)), 2, "Landsat7")
    with pytest.raises(ValueError, match="unknown sensor"):
        wald_degrade(np.zeros((32, 32)), np.zeros((16, 16, 4)), 2, "nope")


# --- interp23 --------------------------------------------------------------------------------------------------

def _toolbox_interp(ms: np.ndarray, ratio: int) -> np.ndarray:
    """Literal toolbox algorithm: zero insertion then circular separable filtering (slow, for checking)."""
    x = ms
    if ratio & (ratio - 1) == 0:
        for stage in range(int(np.log2(ratio))):
            up = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]))
            o = 1 if stage == 0 else 0
            up[o::2, o::2] = x
            x = ndimage.correlate1d(ndimage.correlate1d(up, CDF23, 0, mode="wrap"), CDF23, 1, mode="wrap")
        return x
    up = np.zeros((ratio * x.shape[0], ratio * x.shape[1], x.shape[2]))
    up[ratio // 2 :: ratio, ratio // 2 :: ratio] = x
    taps = _general_taps(ratio)
    return ndimage.correlate1d(ndimage.correlate1d(up, taps, 0, mode="wrap"), taps, 1, mode="wrap")


@pytest.mark.parametrize("ratio", [2, 3, 4, 8])
def test_interp23_matches_toolbox_algorithm(ratio: int) -> None:
    _, ms = load_landsat7(7)
    small = ms[:20, :23]
    out = interp23(small, ratio)
    assert out.shape == (20 * ratio, 23 * ratio, 4)
    # Powers of two are the toolbox algorithm to rounding; other ratios differ only by our unit-DC rescaling of
    # each polyphase component (about 1e-4 of the data maximum at ratio 3).
    tol = 1e-9 if ratio & (ratio - 1) == 0 else 2e-4 * np.abs(small).max()
    np.testing.assert_allclose(out, _toolbox_interp(small, ratio), atol=tol)


@pytest.mark.parametrize("border", ["circular", "symmetric"])
@pytest.mark.parametrize("ratio", [2, 3, 4, 6])
def test_interp23_constant_and_round_trip(ratio: int, border: str) -> None:
    # The published 23 taps sum to 1 - 2e-10 (per stage); the general design is rescaled to unit DC gain per phase.
    np.testing.assert_allclose(interp23(np.full((9, 11, 2), 42.0), ratio, border), 42.0, rtol=1e-8)
    _, ms = load_landsat7(13)
    back = decimate(interp23(ms, ratio, border), ratio)
    if ratio & (ratio - 1) == 0:
        np.testing.assert_array_equal(back, ms)  # interpolating filter: MS samples pass unchanged
    else:
        # The 45-tap Hamming design is not exactly interpolating: stated tolerance 0.5 % of the data range.
        assert np.abs(back - ms).max() < 0.005 * np.ptp(ms)


def test_interp23_beats_pixel_replication_on_real_data() -> None:
    pan, ms = load_landsat7(1)
    _, ms_lr = wald_degrade(pan, ms, 2, "Landsat7")
    rmse = lambda x: np.sqrt(np.mean((x - ms) ** 2))  # noqa: E731
    assert rmse(interp23(ms_lr, 2)) < 0.9 * rmse(np.repeat(np.repeat(ms_lr, 2, 0), 2, 1))


def test_interp23_2d_and_errors() -> None:
    assert interp23(np.ones((5, 7)), 4).shape == (20, 28)
    with pytest.raises(ValueError, match="border"):
        interp23(np.ones((5, 5, 1)), 2, border="zero")
    with pytest.raises(ValueError, match="ratio"):
        interp23(np.ones((5, 5, 1)), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        interp23(np.ones(5), 2)


def test_interp23_symmetric_border_avoids_wraparound() -> None:
    # Left half dark, right half bright: circular wrap leaks the right edge into the left border.
    ms = np.zeros((16, 16, 1))
    ms[:, 8:] = 100.0
    assert interp23(ms, 2, "symmetric")[:, :3].max() < 1e-9
    assert interp23(ms, 2, "circular")[:, 0].max() > 1.0


def test_every_sensor_records_its_band_edges_and_their_source() -> None:
    for s in SENSORS.values():
        if s.name == "generic":
            assert not s.bands and s.pan is None
            continue
        assert s.source and s.pan is not None and s.pan.width_nm > 0, s.name
        assert set(s.band_names) <= {b.name for b in s.bands}, s.name
        for b in s.bands:
            assert 400 <= b.low_nm < b.centre_nm < b.high_nm <= 2400, (s.name, b)
        fused = [s.band(n).centre_nm for n in s.band_names]
        assert fused == sorted(fused), s.name  # fused bands are in wavelength order
    for name in ("Landsat7", "Landsat8", "Landsat9"):
        assert {"swir1", "swir2"} <= {b.name for b in SENSORS[name].bands}
        assert SENSORS[name].numbered() == ({1: "blue", 2: "green", 3: "red", 4: "nir"} if name == "Landsat7"
                                            else {2: "blue", 3: "green", 4: "red", 5: "nir"})
    assert SENSORS["Landsat8"].band("coastal").number == 1
    assert len(SENSORS["WV3"].bands) == len(SENSORS["WV2"].bands) == 8
    assert SENSORS["Pleiades"].numbered() == {0: "blue", 1: "green", 2: "red", 3: "nir"}
    for alias, name in (("WorldView-3", "WV3"), ("WV02", "WV2"), ("PHR1A", "Pleiades"), ("GaoFen-1", "GF1")):
        assert get_sensor(alias).name == name
