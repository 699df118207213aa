"""Acquisition functions of the Riemann distribution: ``log_ei`` against high-precision
quadrature far beyond the tails, its gradient, and its agreement with ``ei``."""

from __future__ import annotations

import math

import pytest
import torch

from priorfit.model.riemann import RiemannDistribution

F64, F32 = torch.float64, torch.float32
Z75 = 0.6744897501960817  # Φ⁻¹(0.75)


def make_dist(seed, tail_mass, dtype=F64, tails=True, k=8):
    """Uneven borders from -3, random inner logits, ``tail_mass`` in each outer bucket."""
    g = torch.Generator().manual_seed(seed)
    widths = 0.2 + 2 * torch.rand(k, generator=g, dtype=F64)
    borders = torch.cat([torch.zeros(1, dtype=F64), widths.cumsum(0)]) - 3
    inner = torch.softmax(1.5 * torch.randn(k - 2, generator=g, dtype=F64), 0)
    probs = torch.cat(
        [torch.tensor([tail_mass]), inner * (1 - 2 * tail_mass), torch.tensor([tail_mass])]
    )
    return RiemannDistribution(borders.to(dtype), probs.log().to(dtype), tails=tails)


def tail_of(d, maximize):
    """``(edge, σ, sign)`` of the tail that EI reaches into: ``best = edge + sign σ s``."""
    b = d.borders.double().tolist()
    if maximize:
        return b[-2], (b[-1] - b[-2]) / Z75, 1.0
    return b[1], (b[1] - b[0]) / Z75, -1.0


@pytest.fixture
def mp():
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        yield mpmath


def mp_log_ei(mp, d, t, maximize=True):
    """``log E[(Y - t)^+]`` (``maximize=False``: ``log E[(t - Y)^+]``) in 40 digits, by mpmath
    quadrature of each bucket's density, from the exact float64 borders, logits and ``t``."""
    b, logits = d.borders.double().tolist(), d.logits.double().tolist()
    if not maximize:  # E[(t - Y)^+] = E[(Y' - t')^+] for Y' = -Y, t' = -t
        b, logits, t = [-x for x in reversed(b)], logits[::-1], -t
    b, t, k = [mp.mpf(x) for x in b], mp.mpf(t), len(logits)
    w = [mp.exp(x) for x in logits]
    p = [x / sum(w) for x in w]
    z75 = mp.sqrt(2) * mp.erfinv(mp.mpf(1) / 2)

    def hn(x):  # unit half-normal density
        return 2 * mp.npdf(x)

    total = mp.mpf(0)
    for j in range(k):
        lo, hi = b[j], b[j + 1]
        if d.tails and j == k - 1:  # Y = lo + σ|Z|
            sig = (hi - lo) / z75
            s = (t - lo) / sig
            if s > 0:  # ∫_s^∞ (z - s) φ(z) dz with z = s + x, the Gaussian factor taken out
                scale = 1 / (1 + s)
                integral = mp.quad(
                    lambda x, s=s: x * mp.exp(-s * x - x * x / 2), [0, scale, 8 * scale, mp.inf]
                )
                c = 2 * sig * mp.npdf(s) * integral
            else:
                c = mp.quad(lambda x, lo=lo, sig=sig: (lo + sig * x - t) * hn(x), [0, 1, mp.inf])
        elif d.tails and j == 0:  # Y = hi - σ|Z|
            sig = (hi - lo) / z75
            s = (hi - t) / sig
            cuts = sorted({mp.mpf(0), s, *(c for c in (1, 8, 40) if c < s)})
            c = sig * mp.quad(lambda x, s=s: (s - x) * hn(x), cuts) if s > 0 else mp.mpf(0)
        else:
            u = max(t, lo)
            c = mp.quad(lambda y, w=hi - lo: (y - t) / w, [u, hi]) if u < hi else mp.mpf(0)
        total += p[j] * c
    return mp.log(total) if total > 0 else -mp.inf


# ------------------------------------------------------------------------ log_ei vs quadrature

FAR = [-3.0, 0.0, 0.5, 3.0, 10.0, 30.0, 38.0, 40.0, 100.0, 1e3, 1e5]  # in tail scales


@pytest.mark.parametrize("maximize", [True, False])
def test_log_ei_matches_high_precision_quadrature_far_beyond_the_tail(mp, maximize):
    d = make_dist(seed=0, tail_mass=0.1)
    edge, sigma, sign = tail_of(d, maximize)
    s = torch.tensor(FAR, dtype=F64)
    best = edge + sign * sigma * s
    got = d.log_ei(best, maximize=maximize)
    want = torch.tensor([float(mp_log_ei(mp, d, t, maximize)) for t in best.tolist()], dtype=F64)
    assert want[FAR.index(38.0)] < math.log(1e-300)  # ei underflows from here on
    assert (d.ei(best, maximize=maximize)[s >= 40] == 0).all()
    # |Δ log EI| is EI's relative error; rounding best and the tail scale by eps moves
    # log EI by about eps s², so that much is inherent to a float64 input
    err = (got - want).abs()
    assert torch.all(err <= 5e-15 * (1 + s**2)), err


def test_log_ei_inside_the_distribution_matches_quadrature(mp):
    d = make_dist(seed=1, tail_mass=0.3)
    b = d.borders.tolist()
    points = [-1e3, b[0] - 2.0, b[1] - 1e-3, b[1], 0.6 * b[3] + 0.4 * b[4], b[-2], b[-1]]
    best = torch.tensor(points, dtype=F64)
    for maximize in (True, False):
        got = d.log_ei(best, maximize=maximize)
        want = [float(mp_log_ei(mp, d, t, maximize)) for t in points]
        assert got.tolist() == pytest.approx(want, rel=1e-13, abs=1e-13), maximize


@pytest.mark.parametrize("tails", [True, False])
@pytest.mark.parametrize("maximize", [True, False])
def test_log_ei_exp_equals_ei_where_ei_is_moderate(tails, maximize):
    d = make_dist(seed=3, tail_mass=0.05, tails=tails)
    b = d.borders
    best = torch.cat([torch.linspace(b[0].item() - 5, b[-1].item() + 5, 401, dtype=F64), b])
    ei = d.ei(best, maximize=maximize)
    got = d.log_ei(best, maximize=maximize)
    moderate = ei > 1e-10  # further out ei() itself loses digits (to cancellation)
    assert moderate.sum() > 250
    torch.testing.assert_close(got[moderate].exp(), ei[moderate], rtol=1e-12, atol=0)
    # EI is exactly 0 only beyond a bounded support, and log_ei is then exactly -inf
    assert torch.equal(ei == 0, got == -math.inf)
    assert bool((ei == 0).any()) == (not tails)


def test_left_tail_partial_expectation_is_accurate_near_its_edge(mp):
    """All mass in the left tail: EI at ``b_1 - σ s`` is ``σ E[(s - |Z|)^+] ≈ σ φ(0) s²`` for
    small ``s``; computing it as a difference of O(1) terms would lose all digits."""
    borders = torch.tensor([-2.0, -0.5, 0.0, 1.0, 4.0], dtype=F64)
    d = RiemannDistribution(borders, torch.tensor([1e4, 0.0, 0.0, 0.0], dtype=F64))
    sigma = 1.5 / Z75
    best = -0.5 - sigma * torch.tensor([1e-6, 1e-3, 0.1, 1.0, 5.0], dtype=F64)
    want = torch.tensor([math.exp(mp_log_ei(mp, d, t)) for t in best.tolist()], dtype=F64)
    torch.testing.assert_close(d.ei(best), want, rtol=1e-12, atol=0)
    torch.testing.assert_close(d.log_ei(best).exp(), want, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("tails", [True, False])
def test_log_ei_gradient_is_minus_pi_over_ei(tails):
    d = make_dist(seed=4, tail_mass=0.2, tails=tails)
    b = d.borders
    best = torch.linspace(b[0].item() - 4, b[-1].item() + 3, 301, dtype=F64)
    if not tails:  # inside the support, where EI > 0 either way
        best = best[(best > b[0]) & (best < b[-1])]
    for maximize, sign in ((True, -1.0), (False, 1.0)):
        t = best.clone().requires_grad_()
        (grad,) = torch.autograd.grad(d.log_ei(t, maximize=maximize).sum(), t)
        want = sign * d.pi(best, maximize=maximize) / d.ei(best, maximize=maximize)
        torch.testing.assert_close(grad, want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("maximize", [True, False])
def test_log_ei_gradient_far_beyond_the_tail(mp, maximize):
    d = make_dist(seed=5, tail_mass=0.1)
    edge, sigma, sign = tail_of(d, maximize)
    s = torch.tensor(FAR[1:], dtype=F64)
    best = (edge + sign * sigma * s).requires_grad_()
    (grad,) = torch.autograd.grad(d.log_ei(best, maximize=maximize).sum(), best)
    assert torch.isfinite(grad).all()
    # exact: d/dt log EI = ∓ P(improvement) / EI, with P = p 2Φ(-s) in the tail; s as in
    # mp_log_ei (an ulp of σ moves P / EI by a relative eps s²)
    p = torch.softmax(d.logits, 0)[-1 if maximize else 0].item()
    b = d.borders.tolist()
    width = mp.mpf(b[-1]) - b[-2] if maximize else mp.mpf(b[1]) - b[0]
    mp_sigma = width / (mp.sqrt(2) * mp.erfinv(mp.mpf(1) / 2))
    for t, g in zip(best.tolist(), grad.tolist(), strict=True):
        prob = p * 2 * mp.ncdf(-sign * (mp.mpf(t) - edge) / mp_sigma)
        want = -sign * prob / mp.exp(mp_log_ei(mp, d, t, maximize))
        assert g == pytest.approx(float(want), rel=1e-9), t
    # and central finite differences of log_ei itself (not at s = 0: the pdf jumps there)
    h = 1e-5 * sigma
    with torch.no_grad():
        up, down = best[1:] + h, best[1:] - h
        fd = (d.log_ei(up, maximize=maximize) - d.log_ei(down, maximize=maximize)) / (up - down)
    torch.testing.assert_close(grad[1:], fd, rtol=1e-6, atol=0)


@pytest.mark.parametrize("tails", [True, False])
def test_log_ei_gradient_wrt_logits_and_borders(tails):
    """Everywhere EI > 0 either way: inner buckets; with tails, far beyond both ends."""
    d = make_dist(seed=6, tail_mass=0.1, tails=tails)
    b = d.borders
    best = 0.4 * b[:-1] + 0.6 * b[1:]
    if tails:
        (left, sl, _), (right, sr, _) = tail_of(d, False), tail_of(d, True)
        s = torch.tensor([0.5, 50.0, 1e3], dtype=F64)
        best = torch.cat([left - sl * s, best, right + sr * s])
    logits, borders = d.logits.clone().requires_grad_(), b.clone().requires_grad_()
    for maximize in (True, False):
        torch.autograd.gradcheck(
            lambda lg, bd, m=maximize: RiemannDistribution(bd, lg, tails=tails).log_ei(best, m),
            (logits, borders),
        )


@pytest.mark.parametrize("maximize", [True, False])
def test_log_ei_float32_far_beyond_the_tail(maximize):
    d = make_dist(seed=7, tail_mass=0.2, dtype=F32)
    logits = d.logits.clone().requires_grad_()
    d = RiemannDistribution(d.borders, logits)
    edge, sigma, sign = tail_of(d, maximize)
    s = torch.tensor([50.0, 1e4], dtype=F64)
    best = (edge + sign * sigma * s).float().requires_grad_()
    value = d.log_ei(best, maximize=maximize)
    value.sum().backward()
    assert value.dtype == F32 and torch.isfinite(value).all()
    assert torch.isfinite(best.grad).all() and torch.isfinite(logits.grad).all()
    assert (d.ei(best, maximize=maximize) == 0).all()  # what log_ei is for
    # float32 carries the float64 result at the same inputs to its own precision: rounding
    # the tail distance s by eps moves log EI by about eps s²
    d64 = RiemannDistribution(d.borders.double(), logits.detach().double())
    b64 = best.detach().double().requires_grad_()
    v64 = d64.log_ei(b64, maximize=maximize)
    (g64,) = torch.autograd.grad(v64.sum(), b64)
    err = (value.double() - v64.detach()).abs()
    assert torch.all(err <= 4 * torch.finfo(F32).eps * (1 + s**2)), err
    torch.testing.assert_close(best.grad.double(), g64, rtol=1e-4, atol=0)


# ------------------------------------------------------------------------ bounded support


def test_log_ei_bounded_is_minus_inf_beyond_the_interval():
    d = make_dist(seed=8, tail_mass=0.3, tails=False)
    b, logits = d.borders, d.logits.clone().requires_grad_()
    d = RiemannDistribution(b, logits, tails=False)
    lo, hi, w = b[0].item(), b[-1].item(), (b[-1] - b[-2]).item()
    p = torch.softmax(d.logits.detach(), 0)
    for maximize, out in ((True, [hi, hi + 1, 1e6]), (False, [lo, lo - 1, -1e6])):
        t = torch.tensor(out, dtype=F64, requires_grad=True)
        value = d.log_ei(t, maximize=maximize)
        assert value.tolist() == [-math.inf] * 3
        assert d.ei(t, maximize=maximize).tolist() == [0.0] * 3
        grads = torch.autograd.grad(value.sum(), (t, logits))
        assert grads[0].tolist() == [0.0] * 3 and grads[1].tolist() == [0.0] * 8
    # just below b_K only the last bucket contributes: p (b_K - t)^2 / (2 w)
    gap = torch.tensor([1e-3, 1e-9, 1e-15], dtype=F64)
    t = (hi - gap).requires_grad_()
    value = d.log_ei(t)
    gap = hi - t.detach()  # the representable gaps
    want = p[-1].log() + 2 * gap.log() - math.log(2 * w)
    torch.testing.assert_close(value.detach(), want, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(value.sum(), t)
    torch.testing.assert_close(grad, -2 / gap, rtol=1e-9, atol=0)
