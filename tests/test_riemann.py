"""Ground-truth checks for the Riemann (bar) distribution, tails included."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Uniform, constraints

from priorfit.model.riemann import RiemannDistribution, borders_from_samples

Z75 = stats.norm.ppf(0.75)
F64 = torch.float64


def make_dist(k=8, seed=0, tail_mass=None, dtype=F64, tails=True):
    """Uneven borders from -3, random logits; optionally ``tail_mass`` in each outer bucket."""
    g = torch.Generator().manual_seed(seed)
    widths = 0.2 + 2 * torch.rand(k, generator=g, dtype=F64)
    borders = torch.cat([torch.zeros(1, dtype=F64), widths.cumsum(0)]) - 3
    logits = 1.5 * torch.randn(k, generator=g, dtype=F64)
    if tail_mass is not None:
        inner = torch.softmax(logits[1:-1], 0) * (1 - 2 * tail_mass)
        tail = torch.tensor([tail_mass], dtype=F64)
        logits = torch.cat([tail, inner, tail]).log()
    return RiemannDistribution(borders.to(dtype), logits.to(dtype), tails=tails)


def pdf(d, y):
    return math.exp(d.log_prob(torch.tensor(float(y), dtype=d.logits.dtype)).item())


GL_X, GL_W = np.polynomial.legendre.leggauss(64)


def quad_pdf(d, f=lambda y: 1.0):
    """∫ f(y) pdf(y) dy by scipy's adaptive quadrature, split at the borders (scalar calls)."""
    b = d.borders.tolist()
    edges = [-math.inf, *b[1:-1], math.inf] if d.tails else b
    pieces = itertools.pairwise(edges)
    return sum(integrate.quad(lambda y: f(y) * pdf(d, y), a, b, epsabs=1e-13)[0] for a, b in pieces)


def gauss_nodes(d, lo=-math.inf, hi=math.inf, points=()):
    """Gauss-Legendre nodes and weights over ``[lo, hi]``, split where the pdf (or the integrand)
    has jumps or kinks (borders, ``points``) and geometrically along the Gaussian tails, cut at
    64 σ (the mass beyond is below e^-2000); without tails, over ``[lo, hi] ∩ [b_0, b_K]``."""
    b = d.borders.double().tolist()
    if d.tails:
        sl, sr = (b[1] - b[0]) / Z75, (b[-1] - b[-2]) / Z75
        radii = [2.0**i for i in range(7)]
        lo, hi = max(lo, b[1] - 64 * sl), min(hi, b[-2] + 64 * sr)
        cuts = [b[1] - sl * r for r in radii] + b[1:-1] + [b[-2] + sr * r for r in radii]
    else:
        lo, hi, cuts = max(lo, b[0]), min(hi, b[-1]), b
    if lo >= hi:
        return np.empty(0), np.empty(0)
    edges = sorted({lo, hi, *(c for c in [*cuts, *points] if lo < c < hi)})
    y = np.concatenate([(a + b) / 2 + (b - a) / 2 * GL_X for a, b in itertools.pairwise(edges)])
    w = np.concatenate([(b - a) / 2 * GL_W for a, b in itertools.pairwise(edges)])
    return y, w


def integrate_pdf(d, f=lambda y: 1.0, lo=-math.inf, hi=math.inf, points=()):
    """∫_lo^hi f(y) pdf(y) dy with ``f`` vectorised over a numpy array."""
    y, w = gauss_nodes(d, lo, hi, points)
    return float(np.sum(w * f(y) * d.log_prob(torch.from_numpy(y)).exp().numpy()))


# ------------------------------------------------------------------------ density & cdf


@pytest.mark.parametrize("tails", [True, False])
@pytest.mark.parametrize(("seed", "tail_mass"), [(0, None), (1, 0.4), (2, 0.01)])
def test_pdf_integrates_to_one(seed, tail_mass, tails):
    d = make_dist(seed=seed, tail_mass=tail_mass, tails=tails)
    assert quad_pdf(d) == pytest.approx(1.0, abs=1e-9)
    assert integrate_pdf(d) == pytest.approx(1.0, abs=1e-12)
    mean = integrate_pdf(d, lambda y: y)
    assert mean == pytest.approx(quad_pdf(d, lambda y: y), rel=1e-9)  # the two rules agree


@pytest.mark.parametrize("tails", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_cdf_equals_integral_of_pdf(seed, tails):
    d = make_dist(seed=seed, tail_mass=0.3, tails=tails)
    b = d.borders
    for y in [-20.0, -6.0, b[0].item() - 0.1, b[1].item(), 0.37, b[-2].item() + 0.2, 25.0]:
        got = d.cdf(torch.tensor(y, dtype=F64)).item()
        assert got == pytest.approx(integrate_pdf(d, hi=y), abs=1e-9, rel=1e-7), y


def test_cdf_limits_monotone_and_continuous():
    for dtype in (torch.float32, F64):
        d = make_dist(seed=4, tail_mass=0.2, dtype=dtype)
        far = torch.tensor([-1e6, 1e6], dtype=dtype)
        assert d.cdf(far).tolist() == [0.0, 1.0]
        grid = torch.linspace(-30, 40, 20001, dtype=dtype)
        c = d.cdf(grid)
        assert torch.all(c.diff() >= 0) and c[0] < 1e-6 and c[-1] > 1 - 1e-6
        eps = 1e-4 if dtype == torch.float32 else 1e-9
        for b in d.borders:
            lo, hi = d.cdf(b - eps), d.cdf(b + eps)
            assert abs(hi - lo) < (1e-3 if dtype == torch.float32 else 1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_icdf_cdf_roundtrip_including_tails(dtype):
    d = make_dist(seed=5, tail_mass=0.05, dtype=dtype)
    q = torch.tensor([1e-6, 1e-3, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 1 - 1e-6], dtype=dtype)
    y = d.icdf(q)
    assert torch.isfinite(y).all()
    if dtype == F64:
        torch.testing.assert_close(d.cdf(y), q, rtol=1e-10, atol=1e-14)
        # upper tail probabilities are exact too
        torch.testing.assert_close(d.pi(y), 1 - q, rtol=1e-8, atol=1e-14)
    else:
        torch.testing.assert_close(d.cdf(y), q, rtol=2e-5, atol=1e-7)
    # icdf(cdf(y)) == y up to the conditioning of the inverse: rounding cdf (relative eps) moves
    # y by eps * cdf / pdf; where the cdf rounds to 1 the inverse is +inf (pi covers that tail)
    ys = torch.linspace(-15, 25, 401, dtype=dtype)
    c, eps = d.cdf(ys), torch.finfo(dtype).eps
    keep = c < 1 - 4 * eps
    assert keep.sum() > 300
    ys, c = ys[keep], c[keep]
    err = (d.icdf(c) - ys).abs()
    assert torch.all(err <= 1e2 * eps * (1 + ys.abs()) + 8 * eps * c / d.log_prob(ys).exp())
    assert d.icdf(torch.tensor([0.0, 1.0], dtype=dtype)).tolist() == [-math.inf, math.inf]


# ------------------------------------------------------------------------ statistics


@pytest.mark.parametrize("tails", [True, False])
@pytest.mark.parametrize(("seed", "tail_mass"), [(6, None), (7, 0.4)])
def test_moments_and_entropy_vs_quadrature(seed, tail_mass, tails):
    d = make_dist(seed=seed, tail_mass=tail_mass, tails=tails)
    mean = integrate_pdf(d, lambda y: y)
    var = integrate_pdf(d, lambda y: (y - mean) ** 2)
    y, w = gauss_nodes(d)
    lp = d.log_prob(torch.from_numpy(y)).numpy()
    ent = -np.sum(w * np.exp(lp) * lp)
    assert d.mean.item() == pytest.approx(mean, rel=1e-9, abs=1e-10)
    assert d.variance.item() == pytest.approx(var, rel=1e-9)
    assert d.stddev.item() == pytest.approx(math.sqrt(var), rel=1e-9)
    assert d.entropy().item() == pytest.approx(ent, rel=1e-7, abs=1e-9)
    assert d.ucb(4.0).item() == pytest.approx(mean + 2 * math.sqrt(var), rel=1e-9)


@pytest.mark.parametrize("tails", [True, False])
@pytest.mark.parametrize("tail_mass", [None, 0.4])
def test_ei_pi_vs_quadrature(tail_mass, tails):
    d = make_dist(seed=8, tail_mass=tail_mass, tails=tails)
    b = d.borders.tolist()
    for t in [-30.0, -5.0, b[0], b[1], 0.3 * b[2] + 0.7 * b[3], b[-2] + 0.1, b[-1] + 2.0, 40.0]:
        tt = torch.tensor(t, dtype=F64)
        ei_max = integrate_pdf(d, lambda y, t=t: np.maximum(y - t, 0.0), points=(t,))
        ei_min = integrate_pdf(d, lambda y, t=t: np.maximum(t - y, 0.0), points=(t,))
        assert d.ei(tt).item() == pytest.approx(ei_max, rel=1e-8, abs=1e-12), t
        assert d.ei(tt, maximize=False).item() == pytest.approx(ei_min, rel=1e-8, abs=1e-12), t
        assert d.pi(tt).item() == pytest.approx(integrate_pdf(d, lo=t), rel=1e-8, abs=1e-13), t
        pi_min = d.pi(tt, maximize=False).item()
        assert pi_min == pytest.approx(integrate_pdf(d, hi=t), rel=1e-8, abs=1e-13), t


@pytest.mark.parametrize("tails", [True, False])
def test_monte_carlo_mean_variance(tails):
    torch.manual_seed(0)
    d = make_dist(seed=9, tail_mass=0.25, tails=tails)
    x = d.sample((200_000,))
    assert x.shape == (200_000,) and x.dtype == F64
    b = d.borders
    inside = ((x >= b[0]) & (x <= b[-1])).double().mean().item()
    # with tails, half of each outer bucket's mass lies beyond its outer border
    assert inside == (pytest.approx(0.75, abs=0.005) if tails else 1.0)
    n, m, v = x.numel(), x.mean().item(), x.var().item()
    assert abs(m - d.mean.item()) < 4 * math.sqrt(v / n)
    m4 = ((x - m) ** 4).mean().item()
    assert abs(v - d.variance.item()) < 4 * math.sqrt((m4 - v**2) / n)


def test_ks_against_cdf_with_heavy_tails():
    torch.manual_seed(1)
    d = make_dist(seed=10, tail_mass=0.4)
    x = d.sample((100_000,)).numpy()

    def cdf(v, dist=d):
        return dist.cdf(torch.as_tensor(v, dtype=F64)).numpy()

    assert stats.kstest(x, cdf).pvalue > 1e-3
    # the test has power against a tail bug: same inner buckets, tails 30% too wide
    b = d.borders.clone()
    b[0], b[-1] = b[1] - 1.3 * (b[1] - b[0]), b[-2] + 1.3 * (b[-1] - b[-2])
    wrong = RiemannDistribution(b, d.logits)
    assert stats.kstest(x, lambda v: cdf(v, wrong)).pvalue < 1e-6


# ------------------------------------------------------------------------ exact cases


@pytest.mark.parametrize("side", ["left", "right"])
def test_all_mass_in_a_tail_is_an_exact_half_normal(side):
    borders = torch.tensor([-2.0, -0.5, 0.0, 1.0, 4.0], dtype=F64)
    logits = torch.zeros(4, dtype=F64)
    logits[0 if side == "left" else -1] = 1e4
    d = RiemannDistribution(borders, logits)
    if side == "left":
        edge, sigma, sign, median = -0.5, 1.5 / Z75, -1.0, -2.0
    else:
        edge, sigma, sign, median = 1.0, 3.0 / Z75, 1.0, 4.0
    hn = stats.halfnorm(scale=sigma)  # Y = edge + sign * |N(0, sigma^2)|
    r = np.array([1e-3, 0.3, 1.0, 3.0, 10.0, 40.0])
    y = torch.tensor(edge + sign * r)
    np.testing.assert_allclose(d.log_prob(y).numpy(), hn.logpdf(r), rtol=1e-12)
    cdf = hn.sf(r) if side == "left" else hn.cdf(r)
    np.testing.assert_allclose(d.cdf(y).numpy(), cdf, rtol=1e-10, atol=1e-300)
    q = np.array([1e-6, 0.01, 0.25, 0.5, 0.9, 1 - 1e-6])
    icdf = edge - hn.isf(q) if side == "left" else edge + hn.ppf(q)
    np.testing.assert_allclose(d.icdf(torch.tensor(q)).numpy(), icdf, rtol=1e-9)
    assert d.icdf(torch.tensor(0.5, dtype=F64)).item() == pytest.approx(median, rel=1e-12)
    assert d.mean.item() == pytest.approx(edge + sign * hn.mean(), rel=1e-12)
    assert d.variance.item() == pytest.approx(hn.var(), rel=1e-12)
    assert d.entropy().item() == pytest.approx(hn.entropy(), rel=1e-12)
    assert d.mode.item() == edge


def test_two_buckets_is_a_two_sided_half_normal_mixture():
    borders = torch.tensor([-1.0, 0.5, 3.0], dtype=F64)
    d = RiemannDistribution(borders, torch.tensor([0.3, -0.2], dtype=F64))
    p = torch.softmax(d.logits, 0).tolist()
    left, right = stats.halfnorm(scale=1.5 / Z75), stats.halfnorm(scale=2.5 / Z75)
    ys = np.array([-8.0, -1.0, 0.0, 0.4999, 0.5001, 2.0, 3.0, 12.0])
    pdf = np.where(ys < 0.5, p[0] * left.pdf(0.5 - ys), p[1] * right.pdf(ys - 0.5))
    cdf = np.where(ys < 0.5, p[0] * left.sf(0.5 - ys), p[0] + p[1] * right.cdf(ys - 0.5))
    np.testing.assert_allclose(d.log_prob(torch.tensor(ys)).exp().numpy(), pdf, rtol=1e-12)
    np.testing.assert_allclose(d.cdf(torch.tensor(ys)).numpy(), cdf, rtol=1e-12)
    mean = 0.5 - p[0] * left.mean() + p[1] * right.mean()
    assert d.mean.item() == pytest.approx(mean, rel=1e-12)
    second = p[0] * (left.var() + (0.5 - left.mean()) ** 2)
    second += p[1] * (right.var() + (0.5 + right.mean()) ** 2)
    assert d.variance.item() == pytest.approx(second - mean**2, rel=1e-10)


def test_mode():
    borders = torch.tensor([0.0, 1.0, 1.5, 4.0, 5.0])
    logits = torch.tensor([[0.0, 0, 0, 0], [0, 0, 9, 0], [3, 0, 0, 0], [0, 0, 0, 3]])
    d = RiemannDistribution(borders, logits)
    # tail peak heights are p * 2φ(0) Z75 / (b_1 - b_0) ≈ 0.54 p; narrow inner bucket: 2 p
    assert d.mode.tolist() == [1.25, 2.75, 1.0, 4.0]
    grid = torch.linspace(-5, 10, 30001)[:, None]
    dens = d.log_prob(grid).exp()
    peak = torch.maximum(d.log_prob(d.mode).exp(), d.log_prob(d.mode - 1e-6).exp())
    assert torch.all(dens.max(0).values <= peak * (1 + 1e-5))


# ------------------------------------------------------------------------ bounded (tails=False)


def test_bounded_support_limits_and_validation():
    d = make_dist(seed=14, tail_mass=0.3, tails=False)
    b, logp = d.borders, torch.log_softmax(d.logits, 0)
    lo, hi = b[0].item(), b[-1].item()
    assert RiemannDistribution(b, d.logits).support is constraints.real
    assert isinstance(d.support, constraints.interval)
    assert (d.support.lower_bound.item(), d.support.upper_bound.item()) == (lo, hi)
    ends = torch.tensor([lo, hi], dtype=F64)
    # the outer buckets are uniform up to and including b_0 and b_K
    torch.testing.assert_close(d.log_prob(ends), logp[[0, -1]] - b.diff()[[0, -1]].log())
    outside = torch.tensor([lo - 1e-9, hi + 1e-9, -1e6, 1e6], dtype=F64)
    for y in outside:
        with pytest.raises(ValueError, match=r"support \(Interval\(lower_bound="):
            d.log_prob(y)
    free = RiemannDistribution(b, d.logits, validate_args=False, tails=False)
    assert free.log_prob(outside).tolist() == [-math.inf] * 4
    # everything else is defined on the whole line: no mass outside [b_0, b_K]
    assert d.cdf(outside).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert d.cdf(ends).tolist() == pytest.approx([0.0, 1.0], abs=1e-15)
    assert d.icdf(torch.tensor([0.0, 1.0], dtype=F64)).tolist() == [lo, hi]
    assert d.pi(outside).tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0], abs=1e-15)
    assert d.ei(outside[[1, 3]]).tolist() == [0.0, 0.0]
    assert d.ei(outside[[0, 2]], maximize=False).tolist() == [0.0, 0.0]
    assert d.ei(outside[2]).item() == pytest.approx(d.mean.item() + 1e6, rel=1e-15)
    with pytest.raises(ValueError, match="NaN"):
        d.cdf(torch.tensor(math.nan))


@pytest.mark.parametrize("bucket", [0, 3])
def test_bounded_outer_bucket_is_an_exact_uniform(bucket):
    borders = torch.tensor([-2.0, -0.5, 0.0, 1.0, 4.0], dtype=F64)
    logits = torch.zeros(4, dtype=F64)
    logits[bucket] = 1e4
    d = RiemannDistribution(borders, logits, tails=False)
    lo, hi = borders[bucket], borders[bucket + 1]
    u, close = Uniform(lo, hi), torch.testing.assert_close
    y = torch.linspace(lo.item(), hi.item(), 7, dtype=F64)[:-1]  # Uniform's support is [lo, hi)
    close(d.log_prob(y), u.log_prob(y), rtol=1e-14, atol=0)
    close(d.cdf(y), u.cdf(y), rtol=1e-14, atol=1e-16)
    q = torch.tensor([1e-9, 0.3, 0.5, 1 - 1e-9], dtype=F64)
    close(d.icdf(q), lo + (hi - lo) * q, rtol=1e-14, atol=1e-15)
    # the support's ends, even with empty buckets before or after the mass
    assert d.icdf(torch.tensor([0.0, 1.0], dtype=F64)).tolist() == [-2.0, 4.0]
    close(d.mean, u.mean)
    close(d.variance, u.variance)
    close(d.entropy(), u.entropy())
    close(d.mode, u.mean)
    t = torch.linspace(lo.item() - 1, hi.item() + 1, 9, dtype=F64)
    c = t.clamp(lo, hi)  # EI = ∫_c^hi (y - t) dy / w
    close(d.ei(t), (hi - c) * (hi + c - 2 * t) / (2 * (hi - lo)), rtol=1e-14, atol=0)
    x = d.sample((10_000,))
    assert lo <= x.min() and x.max() < hi


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_bounded_icdf_cdf_roundtrip(dtype):
    d = make_dist(seed=16, tail_mass=0.05, dtype=dtype, tails=False)
    b = d.borders
    q = torch.tensor([1e-6, 0.01, 0.05, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6], dtype=dtype)
    y = d.icdf(q)
    assert torch.all((y > b[0]) & (y < b[-1]))
    tol = {"rtol": 2e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 0}
    torch.testing.assert_close(d.cdf(y), q, **tol)
    # linear inside the outer buckets (they hold 0.05 each)
    w0, wk = b[1] - b[0], b[-1] - b[-2]
    torch.testing.assert_close(y[:2], b[0] + w0 * q[:2] / 0.05, **tol)
    torch.testing.assert_close(y[-2:], b[-1] - wk * (1 - q[-2:]) / 0.05, rtol=1e-4, atol=1e-6)


def test_bounded_ks_against_cdf():
    torch.manual_seed(4)
    d = make_dist(seed=15, tail_mass=0.4, tails=False)
    x = d.sample((100_000,))
    assert d.borders[0] <= x.min() and x.max() <= d.borders[-1]

    def cdf(v, dist=d):
        return dist.cdf(torch.as_tensor(v, dtype=F64)).numpy()

    assert stats.kstest(x.numpy(), cdf).pvalue > 1e-3
    # the test has power against the tailed distribution on the same buckets
    tailed = RiemannDistribution(d.borders, d.logits)
    assert stats.kstest(x.numpy(), lambda v: cdf(v, tailed)).pvalue < 1e-6


def test_bounded_mode():
    borders = torch.tensor([0.0, 1.0, 1.5, 4.0, 5.0])
    logits = torch.tensor([[0.0, 0, 0, 0], [0, 0, 9, 0], [3, 0, 0, 0], [0, 0, 0, 3]])
    d = RiemannDistribution(borders, logits, tails=False)
    assert d.mode.tolist() == [1.25, 2.75, 0.5, 4.5]  # with tails: [1.25, 2.75, 1.0, 4.0]
    grid = torch.linspace(0, 5, 20001)[:, None]
    dens = d.log_prob(grid).exp()
    assert torch.all(dens.max(0).values <= d.log_prob(d.mode).exp() * (1 + 1e-6))


def test_bounded_batched_borders_expand_and_reflect():
    base = torch.linspace(0, 1, 6, dtype=F64) ** 2
    borders = torch.stack([base, 10 * base - 2])  # [0, 1] and [-2, 8]
    logits = torch.randn(3, 2, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    d = RiemannDistribution(borders, logits, tails=False)
    assert d.support.lower_bound.tolist() == [0.0, -2.0]
    assert d.support.upper_bound.tolist() == [1.0, 8.0]
    y = torch.tensor([0.5, 5.0], dtype=F64)  # inside both
    with pytest.raises(ValueError, match="Interval"):
        d.log_prob(torch.tensor([5.0, 5.0], dtype=F64))  # outside [0, 1]
    free = RiemannDistribution(borders, logits, validate_args=False, tails=False)
    lp = free.log_prob(torch.tensor([5.0, 5.0], dtype=F64))
    assert (lp[:, 0] == -math.inf).all() and torch.isfinite(lp[:, 1]).all()
    q = torch.tensor([[0.0], [0.3], [1.0]], dtype=F64)
    for i in range(2):  # each column is its own distribution
        one = RiemannDistribution(borders[i], logits[:, i], tails=False)
        for name in ("log_prob", "cdf", "ei", "log_ei", "pi"):
            got = getattr(d, name)(y)[:, i]
            torch.testing.assert_close(got, getattr(one, name)(y[i]), msg=name)
        torch.testing.assert_close(d.icdf(q)[..., i], one.icdf(q[:, 0]))
        for name in ("mean", "variance", "mode"):
            torch.testing.assert_close(getattr(d, name)[:, i], getattr(one, name), msg=name)
        torch.testing.assert_close(d.entropy()[:, i], one.entropy())
    e = d.expand((4, 3, 2))
    assert e.tails is False and e.batch_shape == (4, 3, 2)
    assert torch.equal(e.support.upper_bound, torch.tensor([1.0, 8.0], dtype=F64).expand(4, 3, 2))
    torch.testing.assert_close(e.mean, d.mean.expand(4, 3, 2))
    with pytest.raises(ValueError, match="Interval"):
        e.log_prob(torch.tensor([5.0, 5.0], dtype=F64))
    r = d._reflect()
    assert r.tails is False and r.support.lower_bound.tolist() == [-1.0, -8.0]
    torch.testing.assert_close(r.cdf(-y), 1 - d.cdf(y))
    torch.autograd.gradcheck(
        lambda lg, bd: RiemannDistribution(bd, lg, tails=False).log_prob(y),
        (logits.clone().requires_grad_(), borders.clone().requires_grad_()),
    )


# ------------------------------------------------------------------------ shapes & batching


def test_affine_batched_borders():
    d0 = make_dist(seed=11, tail_mass=0.2)
    logits = d0.logits + torch.randn(3, 8, dtype=F64)
    model = RiemannDistribution(d0.borders, logits)
    loc = torch.tensor([0.0, -4.0, 1e3], dtype=F64)
    scale = torch.tensor([1.0, 0.1, 25.0], dtype=F64)
    user = RiemannDistribution(loc[:, None] + scale[:, None] * d0.borders, logits)
    y = torch.tensor([[-9.0], [0.3], [2.0], [30.0]], dtype=F64).expand(4, 3)
    yu = loc + scale * y
    close = torch.testing.assert_close
    close(user.log_prob(yu), model.log_prob(y) - scale.log())
    close(user.cdf(yu), model.cdf(y))
    q = torch.tensor([[1e-4], [0.5], [0.999]], dtype=F64)
    close(user.icdf(q), loc + scale * model.icdf(q))
    close(user.mean, loc + scale * model.mean)
    close(user.variance, scale**2 * model.variance)
    close(user.mode, loc + scale * model.mode)
    close(user.entropy(), model.entropy() + scale.log())
    close(user.ei(yu), scale * model.ei(y))
    close(user.ei(yu, maximize=False), scale * model.ei(y, maximize=False))
    close(user.log_ei(yu), model.log_ei(y) + scale.log())
    close(user.pi(yu), model.pi(y))


def test_shapes_and_batched_vs_shared_borders():
    b, m, k, s = 2, 3, 6, 5
    borders = torch.linspace(-1, 1, k + 1) ** 3
    logits = torch.randn(b, m, k)
    d = RiemannDistribution(borders, logits)
    db = RiemannDistribution(borders.expand(m, k + 1), logits)  # batched path
    assert d.batch_shape == db.batch_shape == (b, m) and d.event_shape == ()
    for value in [torch.randn(b, m), torch.randn(s, b, m), torch.tensor(0.1), torch.randn(m)]:
        shape = torch.broadcast_shapes(value.shape, (b, m))
        for name in ("log_prob", "cdf", "ei", "log_ei", "pi"):
            out = getattr(d, name)(value)
            assert out.shape == shape, name
            torch.testing.assert_close(out, getattr(db, name)(value))
    q = torch.rand(s, 1, 1)
    assert d.icdf(q).shape == (s, b, m)
    torch.testing.assert_close(d.icdf(q), db.icdf(q))
    for name in ("mean", "variance", "stddev", "mode"):
        assert getattr(d, name).shape == (b, m), name
        torch.testing.assert_close(getattr(d, name), getattr(db, name))
    assert d.entropy().shape == d.ucb(2.0).shape == (b, m)
    assert d.probs.shape == (b, m, k) and db.sample((s,)).shape == (s, b, m)
    assert d.sample().shape == (b, m)
    e = d.expand((4, b, m))
    assert e.batch_shape == (4, b, m) and e.log_prob(torch.zeros(b, m)).shape == (4, b, m)
    # logits shared, borders batched
    one = RiemannDistribution(torch.stack([borders, 2 * borders]), torch.randn(k))
    assert one.batch_shape == (2,) and one.mean.shape == one.entropy().shape == (2,)


# ------------------------------------------------------------------------ stability


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_extreme_logits(dtype):
    borders = torch.tensor([-1.0, 0.0, 0.5, 2.0, 3.0], dtype=dtype)
    logits = torch.tensor([-1e4, -1e4, 1e4, -1e4], dtype=dtype, requires_grad=True)
    d = RiemannDistribution(borders, logits)
    y = torch.tensor([-1e6, -1.0, 0.0, 0.7, 1.5, 2.0, 1e6], dtype=dtype)
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all()
    assert lp[3].item() == pytest.approx(-math.log(1.5), abs=1e-6)
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with torch.no_grad():
        assert d.cdf(y).tolist() == pytest.approx([0, 0, 0, 0.2 / 1.5, 1.0 / 1.5, 1, 1], abs=1e-6)
        q = torch.tensor([0.0, 1e-6, 0.5, 1 - 1e-6, 1.0], dtype=dtype)
        x = d.icdf(q)
        assert x[1:-1].tolist() == pytest.approx([0.5, 1.25, 2.0], abs=1e-5)
        assert d.mean.item() == pytest.approx(1.25, abs=1e-6)
        assert d.variance.item() == pytest.approx(1.5**2 / 12, rel=1e-5)
        assert d.entropy().item() == pytest.approx(math.log(1.5), abs=1e-5)
        assert d.mode.item() == 1.25
        smp = d.sample((1000,))
        assert ((smp >= 0.5) & (smp < 2.0)).all()
        assert d.ei(torch.tensor(1.25, dtype=dtype)).item() == pytest.approx(1.5 / 8, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_far_values_follow_gaussian_tail(dtype):
    d = make_dist(seed=12, tail_mass=0.1, dtype=dtype)
    logits = d.logits.clone().requires_grad_()
    d = RiemannDistribution(d.borders, logits)
    b = d.borders.double()
    sl, sr = (b[1] - b[0]).item() / Z75, (b[-1] - b[-2]).item() / Z75
    logp = torch.log_softmax(logits.detach().double(), 0)
    y = torch.tensor([b[1].item() - 1e6, b[-2].item() + 1e6], dtype=dtype)
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all() and (lp < -1e9).all()
    want = [
        logp[0] + math.log(2 / sl) + stats.norm.logpdf((b[1] - y[0].double()).item() / sl),
        logp[-1] + math.log(2 / sr) + stats.norm.logpdf((y[1].double() - b[-2]).item() / sr),
    ]
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert lp.tolist() == pytest.approx([w.item() for w in want], rel=rtol)
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with torch.no_grad():
        assert d.ei(y[1]).item() == 0.0 and d.pi(y[1]).item() == 0.0
        assert d.ei(y[0]).item() == pytest.approx(d.mean.item() - y[0].item(), rel=1e-6)
        assert d.pi(y[0]).item() == 1.0 and d.pi(y[0], maximize=False).item() == 0.0


def test_values_on_borders_and_gradients():
    d = make_dist(seed=13)
    borders = d.borders.clone().requires_grad_()
    logits = d.logits.clone().requires_grad_()
    lp = RiemannDistribution(borders, logits).log_prob(d.borders)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(borders.grad).all()
    y = torch.tensor([-7.0, -2.5, 0.1, 3.3, 14.0], dtype=F64)
    torch.autograd.gradcheck(lambda lg: RiemannDistribution(d.borders, lg).log_prob(y), logits)
    torch.autograd.gradcheck(lambda bd: RiemannDistribution(bd, d.logits).log_prob(y), borders)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_icdf_gradients_are_finite_at_every_level(dtype):
    """Quantiles deep in either tail, on a bucket's edge and at 0 and 1 (where the value is
    infinite) leave finite gradients in the logits: the dropped branches of the piecewise
    quantile function never see a level of 0 (BoTorch's Monte-Carlo acquisitions found NaN
    there)."""
    d = make_dist(seed=5, dtype=dtype)
    logits = d.logits.clone().requires_grad_()
    edges = RiemannDistribution(d.borders, d.logits).cdf(d.borders[1:-1])
    levels = torch.cat([torch.tensor([0.0, 1e-30, 1e-7, 0.3, 1 - 1e-7, 1.0], dtype=dtype),
                        edges.detach()])
    q = RiemannDistribution(d.borders, logits).icdf(levels)
    assert torch.isinf(q[0]) and torch.isinf(q[5]) and torch.isfinite(q[1:5]).all()
    torch.where(torch.isfinite(q), q, 0.0).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_log_prob_is_fast():
    logits = torch.randn(512, 100, 1000, requires_grad=True)
    borders = torch.linspace(-3, 3, 1001)
    y = torch.randn(512, 100)
    d = RiemannDistribution(borders, logits, validate_args=False)
    d.log_prob(y)  # warm-up
    start = time.perf_counter()
    loss = -d.log_prob(y).mean()
    forward = time.perf_counter() - start
    loss.backward()
    assert forward < 2.0  # tens of ms on a laptop; generous for shared CI
    assert torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------------ borders


def test_borders_from_samples_equal_mass():
    torch.manual_seed(2)
    y = torch.randn(200_000).exp()  # skewed
    k = 50
    borders = borders_from_samples(y, k)
    assert borders.shape == (k + 1,) and borders.dtype == torch.float32
    assert torch.all(borders.diff() > 0)
    counts = torch.bincount(torch.bucketize(y, borders[1:-1], right=True), minlength=k)
    np.testing.assert_allclose(counts.numpy() / y.numel(), 1 / k, atol=2e-4)
    # the tails are calibrated: as the half-normal tails of equal bucket probabilities, the
    # samples put half of each tail bucket's mass beyond its outer border
    beyond = torch.stack([(y < borders[0]).double().mean(), (y > borders[-1]).double().mean()])
    np.testing.assert_allclose(beyond.numpy(), 0.5 / k, atol=2e-4)
    tails = RiemannDistribution(borders.double(), torch.zeros(k, dtype=F64))
    expected = torch.stack([tails.cdf(borders[0].double()), 1 - tails.cdf(borders[-1].double())])
    np.testing.assert_allclose(expected.numpy(), 0.5 / k, rtol=1e-6)


def test_borders_from_samples_ignore_single_outliers():
    torch.manual_seed(3)
    y = torch.cat([torch.randn(100_000), torch.tensor([-900.0, 130.0])])
    borders = borders_from_samples(y, 1000)
    assert -4 < borders[0] < -3 and 3 < borders[-1] < 4


@pytest.mark.parametrize(
    "y",
    [
        torch.randint(0, 2, (10_000,)).float(),
        torch.randint(0, 5, (3, 1000)).float(),
        torch.cat([torch.zeros(5000), torch.randn(5000)]),  # point mass
        torch.full((100,), 7.0),
        torch.tensor([3.0]),
    ],
)
def test_borders_from_samples_ties(y):
    borders = borders_from_samples(y, 100)
    assert borders.shape == (101,) and torch.all(borders.diff() > 0)
    low, high = torch.quantile(y.flatten(), torch.tensor([0.5 / 100, 1 - 0.5 / 100]))
    # point masses and tails stay covered (to float32 rounding: the borders are rounded from
    # float64 quantiles, torch.quantile interpolates in float32)
    slack = 1e-6 * max(1.0, float(y.abs().max()))
    assert borders[0] <= low + slack and borders[-1] >= high - slack
    RiemannDistribution(borders, torch.zeros(100))  # usable


def test_borders_from_samples_errors():
    with pytest.raises(ValueError, match="NaN"):
        borders_from_samples(torch.tensor([0.0, float("nan"), 1.0]), 4)
    with pytest.raises(ValueError, match="num_buckets"):
        borders_from_samples(torch.randn(10), 1)
    with pytest.raises(ValueError, match="empty"):
        borders_from_samples(torch.empty(0), 4)


# ------------------------------------------------------------------------ bad input


def test_bad_input():
    with pytest.raises(ValueError, match="borders"):
        RiemannDistribution(torch.linspace(0, 1, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="borders"):
        RiemannDistribution(torch.tensor([0.0, 1.0, 1.0, 2.0]), torch.zeros(3))
    with pytest.raises(ValueError, match="logits"):
        RiemannDistribution(torch.tensor([0.0, 1.0]), torch.zeros(1))
    with pytest.raises(ValueError, match="broadcast"):
        RiemannDistribution(torch.linspace(0, 1, 6).expand(4, 6), torch.zeros(3, 5))
    d = RiemannDistribution(torch.linspace(0, 1, 6), torch.zeros(3, 5))
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(4))
    with pytest.raises(ValueError):
        d.icdf(torch.tensor(1.5))


def test_checks_do_not_depend_on_torchs_global_default():
    """torch.compile switches torch.distributions' default validation off process-wide."""
    default = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with pytest.raises(ValueError, match="increasing"):
            RiemannDistribution(torch.tensor([0.0, 1.0, 1.0, 2.0]), torch.zeros(3))
        d = RiemannDistribution(torch.linspace(0, 1, 6), torch.zeros(5))
        with pytest.raises(ValueError):
            d.log_prob(torch.tensor(float("nan")))
    finally:
        torch.distributions.Distribution.set_default_validate_args(default)
