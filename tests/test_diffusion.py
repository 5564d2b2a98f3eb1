"""The torch diffusion wrapper against the numpy schedule it wraps, and the sampler's timestep mapping."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the train extra; the runtime-only install skips this module

from ddrf import schedule as sch
from ddrf.train.diffusion import Diffusion

torch.set_num_threads(1)
T = 1000


class ToyNet(torch.nn.Module):
    """A deterministic stand-in for DDRF whose numpy twin is `toy_numpy`; it records the timesteps it is fed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []
        self.encoded = 0

    def encode(self, lms: torch.Tensor, pan: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.encoded += 1
        return 2 * lms, pan.mean(dim=1, keepdim=True)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor) -> torch.Tensor:
        self.seen.append(t.numpy().copy())
        return 0.9 * x_t + 0.1 * c0 + 1e-4 * t.reshape(-1, 1, 1, 1).to(x_t.dtype) + c1

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        return self.denoise(x_t, t, *self.encode(lms, pan))


def toy_numpy(x_t: np.ndarray, t: int, lms: np.ndarray, pan: np.ndarray) -> np.ndarray:
    return 0.9 * x_t + 0.1 * 2 * lms + 1e-4 * float(t) + pan.mean(axis=1, keepdims=True)


class Oracle(torch.nn.Module):
    """Predicts the true clean variable x0 in the parametrisation `target`, using the timestep it is given."""

    def __init__(self, x0: torch.Tensor, target: str) -> None:
        super().__init__()
        self.x0, self.target = x0, target
        ab = sch.CosineSchedule(T).alpha_bar
        self.sa, self.s1 = np.sqrt(ab), np.sqrt(1 - ab)

    def encode(self, lms: torch.Tensor, pan: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return ()

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        i = int(t[0].item())
        assert float(i) == float(t[0].item())
        sa, s1 = float(self.sa[i]), float(self.s1[i])
        eps = (x_t - sa * self.x0) / s1
        return sch.training_target(self.x0, eps, sa, s1, self.target)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random(shape))


@pytest.mark.parametrize("target", sch.TARGETS)
def test_training_pair_matches_numpy(target: str) -> None:
    diff = Diffusion(sch.CosineSchedule(T), target=target)
    x0, noise = rand(5, 3, 8, 8, seed=1).float(), torch.randn(5, 3, 8, 8)
    t = torch.tensor([0, 1, 499, 998, 999])
    x_t, tgt = diff.training_pair(x0, t, noise)
    ab = sch.CosineSchedule(T).alpha_bar[t.numpy()].reshape(-1, 1, 1, 1)
    xn, nn_ = x0.double().numpy(), noise.double().numpy()
    ref_x = sch.noise_input(xn, nn_, np.sqrt(ab), np.sqrt(1 - ab))
    ref_t = sch.training_target(xn, nn_, np.sqrt(ab), np.sqrt(1 - ab), target)
    assert x_t.dtype == torch.float32
    np.testing.assert_allclose(x_t.double().numpy(), ref_x, atol=1e-6)
    np.testing.assert_allclose(tgt.double().numpy(), ref_t, atol=1e-6)


@pytest.mark.parametrize("target", sch.TARGETS)
def test_targets_are_consistent(target: str) -> None:
    diff = Diffusion(sch.CosineSchedule(T), target=target)
    x0, noise = rand(4, 2, 4, 4, seed=2), torch.randn(4, 2, 4, 4, dtype=torch.float64)
    t = torch.tensor([3, 250, 700, 990])
    x_t, tgt = diff.training_pair(x0, t, noise)
    sa, s1 = diff.coefficients(t, x0)
    got_x0, got_eps = sch.split_prediction(x_t, tgt, sa, s1, target)
    torch.testing.assert_close(got_x0, x0, atol=1e-9, rtol=0)
    torch.testing.assert_close(got_eps, noise, atol=1e-9, rtol=0)
    v = sch.training_target(x0, noise, sa, s1, "v")
    torch.testing.assert_close(v, sa * noise - s1 * x0)  # v = sqrt(ab) eps - sqrt(1-ab) x0
    torch.testing.assert_close(sa**2 + s1**2, torch.ones_like(sa))


def test_sampling_timesteps_mapping() -> None:
    t = sch.sampling_timesteps(T, 25)
    assert t.tolist() == list(range(999, -1, -40))
    assert t[0] == T - 1 and len(set(t.tolist())) == 25 and np.all(np.diff(t) < 0)
    assert sch.sampling_timesteps(T, 1).tolist() == [T - 1]
    full = sch.sampling_timesteps(T, T)
    assert full.tolist() == list(range(T - 1, -1, -1))
    with pytest.raises(ValueError):
        sch.sampling_timesteps(T, 0)


def test_a_sampling_shift_moves_the_steps_by_log_snr_and_round_trips() -> None:
    """The shift the ratio-2 default's K = 2 samples on (2 ln 0.25: second step at t = 844, not 499); the first
    stays at pure noise; the card's dict keeps it (and an unshifted schedule's dict is unchanged)."""
    shifted = sch.CosineSchedule(T, sampling_shift=2 * np.log(0.25))
    assert shifted.sampler_timesteps(2).tolist() == [999, 844]
    assert shifted.sampler_timesteps(1).tolist() == [999]
    ab = shifted.alpha_bar
    log_snr = np.log(ab / (1 - ab))
    assert abs(log_snr[844] - (log_snr[499] + 2 * np.log(0.25))) < 0.02  # the nearest training timestep
    assert sch.CosineSchedule(T).sampler_timesteps(4).tolist() == sch.sampling_timesteps(T, 4).tolist()
    assert sch.CosineSchedule.from_dict(shifted.to_dict()) == shifted
    assert "sampling_shift" not in sch.CosineSchedule(T).to_dict()
    net = ToyNet()
    Diffusion(shifted).sample(net, rand(1, 3, 8, 8), rand(1, 1, 8, 8, seed=3), 2)
    assert [s[0] for s in net.seen] == [999.0, 844.0]
    with pytest.raises(ValueError, match="sampling_shift"):
        sch.CosineSchedule(T, sampling_shift=float("nan"))


@pytest.mark.parametrize("steps", [1, 4, 25])
def test_sampler_feeds_true_timesteps_once_encoded(steps: int) -> None:
    net = ToyNet()
    lms, pan = rand(2, 3, 8, 8), rand(2, 1, 8, 8, seed=3)
    Diffusion(sch.CosineSchedule(T)).sample(net, lms, pan, steps, generator=torch.Generator().manual_seed(0))
    assert len(net.seen) == steps and net.encoded == 1
    fed = [s[0] for s in net.seen]
    assert fed == sch.sampling_timesteps(T, steps).astype(np.float32).tolist()
    assert all(s.dtype == np.float32 and s.shape == (2,) for s in net.seen)


@pytest.mark.parametrize("target,eta", [("x0", 0.0), ("eps", 0.0), ("v", 0.0), ("x0", 1.0)])
def test_sampler_matches_numpy_ddim(target: str, eta: float) -> None:
    steps = 6
    lms, pan = rand(2, 3, 8, 8), rand(2, 1, 8, 8, seed=3)
    noise = torch.randn(steps + 1, 2, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = Diffusion(sch.CosineSchedule(T), target=target).sample(ToyNet(), lms, pan, steps, eta=eta, noise=noise)
    plan = sch.make_plan(sch.CosineSchedule(T), steps, eta)
    x, ln, pn, nz = noise[0].numpy(), lms.numpy(), pan.numpy(), noise.numpy()
    for i in range(steps):
        out = toy_numpy(x, int(plan.timesteps[i]), ln, pn)
        x = sch.ddim_step(plan, i, x, out, target, nz[i + 1] if eta > 0 else None)
    np.testing.assert_allclose(got.numpy(), x + ln, atol=1e-6)


@pytest.mark.parametrize("target", sch.TARGETS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_oracle_sampler_returns_true_hrms(target: str, steps: int) -> None:
    gt, lms, pan = rand(2, 4, 8, 8), rand(2, 4, 8, 8, seed=7), rand(2, 1, 8, 8, seed=8)
    diff = Diffusion(sch.CosineSchedule(T), target=target, residual=True)
    oracle = Oracle(diff.clean_variable(gt, lms), target)
    out = diff.sample(oracle, lms, pan, steps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, gt, atol=1e-6, rtol=0)


def test_oracle_with_wrong_timestep_fails() -> None:
    """Feeding the respaced index (the public code's bug) would break an eps-predictor: the test can tell."""
    gt, lms = rand(1, 2, 4, 4), rand(1, 2, 4, 4, seed=4)
    diff = Diffusion(sch.CosineSchedule(T), target="eps")
    oracle = Oracle(diff.clean_variable(gt, lms), "eps")
    real = oracle.denoise
    oracle.denoise = lambda x, t: real(x, torch.zeros_like(t))  # type: ignore[method-assign]
    out = diff.sample(oracle, lms, lms[:, :1], 4, generator=torch.Generator().manual_seed(1))
    assert (out - gt).abs().max() > 1e-2


@pytest.mark.parametrize("residual", [True, False])
def test_loss_zero_for_perfect_model_and_positive_otherwise(residual: bool) -> None:
    gt, lms, pan = rand(3, 2, 8, 8).float(), rand(3, 2, 8, 8, seed=9).float(), rand(3, 1, 8, 8, seed=1).float()
    diff = Diffusion(sch.CosineSchedule(T), target="x0", residual=residual)
    x0 = gt - lms if residual else gt
    perfect = lambda x_t, t, l, p: x0  # noqa: E731
    batch = {"gt": gt, "lms": lms, "pan": pan}
    assert diff.loss(perfect, batch, torch.Generator().manual_seed(0)).item() == 0.0  # type: ignore[arg-type]
    zero = lambda x_t, t, l, p: torch.zeros_like(x_t)  # noqa: E731
    assert diff.loss(zero, batch).item() == pytest.approx(x0.abs().mean().item(), rel=1e-6)  # type: ignore[arg-type]


def test_bad_target_and_noise_shape() -> None:
    with pytest.raises(ValueError, match="target"):
        Diffusion(target="score")
    with pytest.raises(ValueError, match="sampler noise"):
        Diffusion().sample(ToyNet(), rand(1, 2, 4, 4), rand(1, 1, 4, 4), 2, noise=torch.zeros(1, 2, 8, 8))
