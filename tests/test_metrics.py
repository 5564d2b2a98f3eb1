"""ddrf.metrics: identities, hand-computed cases, toolbox quirks, cross-checks and real-crop full-resolution checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddrf import metrics as M
from ddrf.metrics.q2n import cd_mult, conj

DATA = Path(__file__).parent / "data" / "metrics" / "l7_13_crop.npz"


@pytest.fixture(scope="module")
def crop() -> dict[str, np.ndarray]:
    d = np.load(DATA)
    return {"ms": d["ms"].astype(np.float64), "pan": d["pan"].astype(np.float64)}


def _rand(shape, seed=0, lo=20.0, hi=900.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


# ---------- identities ----------

def test_perfect_fusion_identities(crop):
    ref = crop["ms"]
    r = M.reduced_resolution_metrics(ref, ref, ratio=2)
    assert r["SAM"] == pytest.approx(0.0, abs=1e-6)
    assert r["ERGAS"] == 0.0
    assert r["Q2n"] == pytest.approx(1.0, abs=1e-12)
    assert r["SCC"] == pytest.approx(1.0, abs=1e-12)
    assert r["Q"] == pytest.approx(1.0, abs=1e-12)
    assert r["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert r["PSNR"] == float("inf")
    assert r["border"] == 0 and r["data_range"] == ref.max()


def test_border_is_applied_and_recorded(crop):
    ref = crop["ms"]
    fused = ref + np.random.default_rng(1).normal(0, 3, ref.shape)
    r = M.reduced_resolution_metrics(fused, ref, ratio=2, border=16, data_range=255)
    assert r["border"] == 16 and r["data_range"] == 255
    assert r["SAM"] == pytest.approx(M.sam(fused[16:-16, 16:-16], ref[16:-16, 16:-16]))
    assert r["SAM"] != pytest.approx(M.sam(fused, ref))
    with pytest.raises(ValueError):
        M.reduced_resolution_metrics(fused, ref, ratio=2, border=64)


# ---------- SAM ----------

def test_sam_two_pixels_by_hand():
    ref = np.array([[[1.0, 0.0], [1.0, 1.0]]])  # (1, 2, 2)
    fused = np.array([[[0.0, 1.0], [1.0, 1.0]]])
    assert M.sam(fused, ref) == pytest.approx(45.0)  # (90 + 0) / 2 degrees


def test_sam_skips_zero_pixels_and_is_scale_invariant():
    ref = _rand((8, 9, 4))
    fused = ref * np.random.default_rng(2).uniform(0.2, 5, (8, 9, 1))  # per-pixel positive gain
    assert M.sam(fused, ref) == pytest.approx(0.0, abs=1e-6)
    fused2 = _rand((8, 9, 4), seed=3)
    base = M.sam(fused2, ref)
    fused2[0, 0] = 0  # a zero spectrum is left out of the mean, not counted as 0 or 90 degrees
    keep = np.ones((8, 9), bool)
    keep[0, 0] = False
    assert M.sam(fused2, ref) == pytest.approx(M.sam_map(fused2, ref)[keep].mean())
    assert M.sam(fused2, ref) != pytest.approx(base)


# ---------- ERGAS ----------

def test_ergas_known_mse():
    ref = np.full((4, 4, 2), 10.0)
    ref[..., 1] = 20.0
    fused = ref + np.array([1.0, 4.0])  # MSE 1 and 16, means 10 and 20
    expected = 100 / 4 * np.sqrt((1 / 100 + 16 / 400) / 2)
    assert M.ergas(fused, ref, 4) == pytest.approx(expected)


def test_ergas_sees_band_mean_bias():
    ref = _rand((16, 16, 3))
    assert M.ergas(ref + 5.0, ref, 4) > 0.1
    assert M.ergas(ref + 10.0, ref, 4) == pytest.approx(2 * M.ergas(ref + 5.0, ref, 4))


# ---------- Q2n ----------

def _onions_quality_loop(ref: np.ndarray, fus: np.ndarray) -> float:
    """Plain per-band / per-pixel transcription of the toolbox block index (slow reference)."""
    n_px, nb = ref.shape[0] * ref.shape[1], ref.shape[2]
    z1, z2 = np.empty_like(ref), np.empty_like(fus)
    for i in range(nb):
        s, t = ref[:, :, i].mean(), ref[:, :, i].std(ddof=1)
        t = t if t != 0 else np.finfo(float).eps
        z1[:, :, i] = (ref[:, :, i] - s) / t + 1
        z2[:, :, i] = fus[:, :, i] + 1 if s == 0 else (fus[:, :, i] - s) / t + 1
    z2 = conj(z2)
    m1, m2 = z1.mean(axis=(0, 1)), z2.mean(axis=(0, 1))
    u = n_px / (n_px - 1)
    t3 = u * (z1 ** 2).sum(2).mean() + u * (z2 ** 2).sum(2).mean() - u * ((m1 ** 2).sum() + (m2 ** 2).sum())
    bias = 2 * np.sqrt((m1 ** 2).sum() * (m2 ** 2).sum()) / ((m1 ** 2).sum() + (m2 ** 2).sum())
    if t3 == 0:
        return abs(bias)
    qu = np.zeros(nb)
    for y in range(ref.shape[0]):
        for x in range(ref.shape[1]):
            qu += cd_mult(z1[y, x], z2[y, x])
    q = (u * qu / n_px - u * cd_mult(m1, m2)) * bias * 2 / t3
    return float(np.sqrt((q ** 2).sum()))


def _q2n_loop(fused, ref, block):
    r, f = np.floor(np.clip(ref, 0, 65535) + 0.5), np.floor(np.clip(fused, 0, 65535) + 0.5)
    h, w, nb = r.shape
    ph, pw = -(-h // block) * block - h, -(-w // block) * block - w
    r = np.pad(r, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    f = np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    extra = 2 ** int(np.ceil(np.log2(nb))) - nb
    r = np.concatenate([r, np.zeros(r.shape[:2] + (extra,))], 2)
    f = np.concatenate([f, np.zeros(f.shape[:2] + (extra,))], 2)
    vals = [_onions_quality_loop(r[y:y + block, x:x + block], f[y:y + block, x:x + block])
            for y in range(0, r.shape[0], block) for x in range(0, r.shape[1], block)]
    return float(np.mean(vals))


@pytest.mark.parametrize("bands", [3, 4, 6])
def test_q2n_matches_loop_reference(bands):
    ref = _rand((20, 27, bands), seed=bands)
    fused = ref * 0.9 + _rand((20, 27, bands), seed=10 + bands, lo=0, hi=120) - 30
    fused[0, 0, 0] = -5.0  # saturates to 0 under the uint16 cast
    assert M.q2n(fused, ref, 8, 8) == pytest.approx(_q2n_loop(fused, ref, 8), rel=1e-10)


def test_q2n_constant_gain_below_one_and_uint16_cast():
    ref = np.round(_rand((64, 64, 4), seed=4))
    assert M.q2n(ref * 1.2, ref) < 0.999
    assert M.q2n(ref + 0.4, ref) == pytest.approx(1.0)  # rounding to DN hides a sub-DN offset
    assert M.q2n(ref + 0.6, ref) < 1.0
    # half rounds away from zero as MATLAB uint16(): 2.5 -> 3, numpy's round would give 2
    r = np.round(_rand((32, 32, 2), seed=5))
    assert M.q2n(r + 0.5, r + 1.0) == pytest.approx(1.0)


def test_q2n_one_band_is_uiqi_of_normalised_blocks():
    """With one band Q2n is |UIQI| per block, but of the blocks normalised by the reference's mean and std."""
    ref = np.round(_rand((64, 64, 1), seed=6))
    fused = np.round(ref * 0.8 + _rand((64, 64, 1), seed=7, hi=200))
    vals = []
    for y in (0, 32):
        for x in (0, 32):
            r, f = ref[y:y + 32, x:x + 32, 0], fused[y:y + 32, x:x + 32, 0]
            mu, sd = r.mean(), r.std(ddof=1)
            vals.append(abs(M.uiqi_blocks((f - mu) / sd + 1, (r - mu) / sd + 1, 32)))
    assert M.q2n(fused, ref) == pytest.approx(np.mean(vals), rel=1e-9)
    # correlation and contrast terms are shared with the raw UIQI; only the luminance term differs
    assert M.q2n(fused, ref) != pytest.approx(M.uiqi_blocks(fused[:, :, 0], ref[:, :, 0], 32), rel=1e-4)


def test_q2n_rejects_bad_input():
    with pytest.raises(ValueError):
        M.q2n(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError):
        M.q2n(np.full((8, 8, 3), np.nan), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError):
        M.q2n(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), block=8, shift=16)


def test_cayley_dickson_quaternion_units():
    e = np.eye(4)
    assert np.allclose(cd_mult(e[1], e[1]), -e[0])  # i^2 = -1
    assert np.allclose(cd_mult(e[1], e[2]), -cd_mult(e[2], e[1]))  # anticommuting units
    x, y = _rand(8, seed=8), _rand(8, seed=9)
    assert np.sqrt((cd_mult(x, y) ** 2).sum()) == pytest.approx(np.linalg.norm(x) * np.linalg.norm(y))  # octonions


# ---------- SCC, Q ----------

def test_scc_gain_invariant_offset_sensitive():
    ref = _rand((40, 40, 3), seed=11)
    assert M.scc(ref * 3.0, ref) == pytest.approx(1.0)
    # zero padding after the 1-pixel crop makes the frame's gradients depend on the level
    assert M.scc(ref + 500.0, ref) < 0.99
    inner = M.scc(ref + 500.0, ref)
    assert M.scc(ref + 50.0, ref) > inner


def test_scc_by_hand_ramp():
    x = np.tile(np.arange(6.0), (6, 1))[:, :, None]  # horizontal ramp
    y = x.copy()
    y[2, 3, 0] += 4.0
    gx = lambda a: M.reduced._sobel_magnitude(a)  # noqa: E731
    gf, gr = gx(y), gx(x)
    assert gr[1, 1, 0] == pytest.approx(8.0)  # interior ramp: |[1 2 1] x (right - left)| = 4 * 2
    assert M.scc(y, x) == pytest.approx((gf * gr).sum() / np.linalg.norm(gf) / np.linalg.norm(gr))


def test_q_index_and_uiqi_map():
    ref = _rand((40, 40, 2), seed=12)
    assert M.q_index(ref, ref, 8) == 1.0
    m = M.uiqi_map(ref[:, :, 0], ref[:, :, 0] * 0.5, 8)
    assert m.shape == (33, 33)
    assert np.allclose(m, (2 * 0.5 / (1 + 0.25)) ** 2)  # pure gain g: luminance and contrast both 2g / (1 + g^2)
    const = np.full((10, 10), 7.0)
    assert M.uiqi_map(const, const, 4).min() == 1.0  # img_qi's flat-window rules


# ---------- cross-checks ----------

def test_cross_check_scikit_image():
    import skimage.metrics as skm  # test extra: required, a missing cross-check must fail
    ref = _rand((48, 52, 3), seed=13, hi=1000)
    fused = ref + np.random.default_rng(14).normal(0, 25, ref.shape)
    assert M.ssim(fused, ref, 1000) == pytest.approx(skm.structural_similarity(
        ref, fused, data_range=1000, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=2), rel=1e-9)
    assert M.psnr(fused, ref, 1000) == pytest.approx(skm.peak_signal_noise_ratio(ref, fused, data_range=1000))
    # UIQI = SSIM with K1 = K2 = 0 and a flat window (odd sizes only in scikit-image)
    uiqi = np.mean([skm.structural_similarity(ref[..., b], fused[..., b], data_range=1000, win_size=15,
                                              K1=1e-300, K2=1e-300, use_sample_covariance=False)
                    for b in range(3)])
    assert M.q_index(fused, ref, 15) == pytest.approx(uiqi, rel=1e-9)


def test_cross_check_sewar():
    import sewar.full_ref as sw  # test extra: required
    ref = _rand((32, 32, 4), seed=15)
    fused = ref + np.random.default_rng(16).normal(0, 30, ref.shape)
    assert M.sam(fused, ref) == pytest.approx(np.degrees(sw.sam(ref, fused)))  # sewar 0.4.10: radians
    assert M.ergas(fused, ref, 4) == pytest.approx(sw.ergas(ref, fused, r=0.25))  # sewar takes 1 / ratio


# ---------- full resolution ----------

def test_imresize_matches_box_average_on_constant_and_keeps_mean():
    p = np.full((16, 16), 3.0)
    assert np.allclose(M.imresize_down(p, 4), 3.0)
    ramp = np.add.outer(np.arange(32.0), np.arange(32.0))
    lr = M.imresize_down(ramp, 4)
    assert lr.shape == (8, 8)
    assert lr[3, 3] == pytest.approx(ramp[12:16, 12:16].mean())  # symmetric kernel on a linear ramp


def test_uiqi_blocks_and_classic_qnr_identities(crop):
    ms = crop["ms"][:64, :64]
    pan = crop["pan"][:128, :128]
    fused = np.repeat(np.repeat(ms, 2, 0), 2, 1)
    assert M.uiqi_blocks(pan, pan, 32) == pytest.approx(1.0)
    assert M.d_lambda_qnr(fused, ms) == pytest.approx(0.0, abs=0.05)
    noisy = fused + np.random.default_rng(17).normal(0, 40, fused.shape)
    assert M.d_lambda_qnr(noisy, ms) > M.d_lambda_qnr(fused, ms) + 0.05
    assert 0 <= M.qnr(noisy, pan, ms, 2) < M.qnr(fused, pan, ms, 2) <= 1
    with pytest.raises(ValueError):
        M.d_s_qnr(fused[:100, :100], pan[:100, :100], ms[:50, :50], 2)


def test_full_resolution_exp_vs_noise_on_real_crop(crop):
    from ddrf.filters import interp23

    ms, pan = crop["ms"], crop["pan"]
    exp = np.asarray(interp23(ms, 2), dtype=np.float64)
    good = M.full_resolution_metrics(exp, pan, ms, 2, "Landsat7")
    noisy = exp + np.random.default_rng(18).normal(0, 25, exp.shape)
    bad = M.full_resolution_metrics(noisy, pan, ms, 2, "Landsat7")
    assert good["D_lambda"] < 0.08  # measured 0.044
    assert good["HQNR"] > 0.8
    assert bad["D_lambda"] > good["D_lambda"] + 0.05
    assert bad["HQNR"] < good["HQNR"] - 0.05
    assert bad["QNR"] < good["QNR"]
    assert good["border"] == 0 and good["sensor"] == "Landsat7"
