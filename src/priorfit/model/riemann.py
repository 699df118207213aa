"""The Riemann ("bar") distribution: the output head of a regression PFN.

The real line is cut into ``K`` buckets by borders ``b_0 < b_1 < ... < b_K`` and the network
outputs ``K`` logits; bucket probabilities are ``p = softmax(logits)``.

* Inner buckets ``k = 1 .. K-2`` spread ``p_k`` uniformly over ``[b_k, b_{k+1})``.
* Bucket ``0`` puts ``p_0`` on ``(-inf, b_1)`` as a half-normal decreasing away from ``b_1`` with
  scale ``σ_L = (b_1 - b_0) / Φ⁻¹(0.75)``, so half of its mass lies in ``[b_0, b_1]`` (the
  half-normal's median sits at ``b_0``). Bucket ``K-1`` mirrors this on ``[b_{K-1}, inf)`` with
  ``σ_R = (b_K - b_{K-1}) / Φ⁻¹(0.75)``. The distribution therefore has full support.
* With ``tails=False`` (bounded mode, for targets on a known interval such as accuracies in
  ``[0, 1]``) there are no tails: buckets ``0`` and ``K-1`` are uniform on ``[b_0, b_1]`` and
  ``[b_{K-1}, b_K]`` like the inner ones, and the support is exactly ``[b_0, b_K]``.

Every statistic is in closed form (uniform and half-normal moments and partial expectations).
``log_ei`` works in log space throughout, so it stays finite, with finite gradients, far beyond
the right tail, where ``ei`` underflows to 0. A value exactly on an inner border belongs to the
bucket on its right.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints
from torch.distributions.utils import lazy_property

__all__ = ["RiemannDistribution", "borders_from_samples"]

_Z75 = 0.6744897501960817  # Φ⁻¹(0.75): the median of a unit half-normal
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # mean of a unit half-normal
_PDF0 = 1.0 / math.sqrt(2.0 * math.pi)  # φ(0)
_HALFNORM_VAR = 1.0 - 2.0 / math.pi  # variance of a unit half-normal
_LOG_HALFNORM_PDF0 = math.log(2.0) - 0.5 * math.log(2.0 * math.pi)  # log pdf of it at 0
_HALFNORM_ENTROPY = 0.5 * math.log(math.pi / 2.0) + 0.5  # entropy of it


def _normal_partial(s: Tensor) -> Tensor:
    """``E[(Z - s)^+] = φ(s) - s Φ(-s)`` for a standard normal ``Z``; elementwise."""
    return _PDF0 * torch.exp(-0.5 * s * s) - s * 0.5 * torch.special.erfc(s / _SQRT2)


_CF_FROM, _CF_TERMS = 4.0, 40


def _log_normal_partial(s: Tensor) -> Tensor:
    """``log E[(Z - s)^+] = log(φ(s) - s Φ(-s))`` for ``s >= 0``; elementwise.

    Accurate, and finite with finite gradients, wherever ``s²`` is finite (``ψ(s) = φ(s) -
    s Φ(-s)`` itself underflows from ``s ≈ 38`` in float64, ``s ≈ 13`` in float32, and its
    relative rounding error grows like ``eps s²`` through cancellation).
    Below ``s = 4`` it is evaluated directly. Above, Laplace's continued fraction for the Mills
    ratio, ``Φ(-s) / φ(s) = 1 / (s + r)`` with ``r = 1 / (s + 2 / (s + 3 / (s + ...)))``, gives
    ``ψ(s) = φ(s) (1 - s / (s + r)) = φ(s) r / (s + r)`` without cancellation; ``r`` is evaluated
    bottom-up with 40 terms, converged to float64 rounding for ``s >= 4``.
    """
    direct = _normal_partial(s.clamp(max=_CF_FROM)).log()
    x = s.clamp(min=_CF_FROM)  # each branch only sees arguments it is exact for
    r = torch.zeros_like(x)
    for n in range(_CF_TERMS, 1, -1):
        r = n / (x + r)
    r = 1 / (x + r)
    cf = math.log(_PDF0) - 0.5 * x * x + r.log() - (x + r).log()
    return torch.where(s < _CF_FROM, direct, cf)


def _halfnormal_below(s: Tensor) -> Tensor:
    """``E[(s - |Z|)^+] = s erf(s / √2) - 2 (φ(0) - φ(s))`` for ``s >= 0``; elementwise.

    Both terms are ``O(s²)`` for small ``s``, so there is no cancellation to speak of.
    """
    return s * torch.erf(s / _SQRT2) + 2 * _PDF0 * torch.expm1(-0.5 * s * s)


def _safe_log(x: Tensor) -> Tensor:
    """``log x`` for ``x >= 0``: ``-inf`` at 0, with a zero (not NaN) gradient there."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, 1).log(), -math.inf)


def _logsumexp(x: Tensor) -> Tensor:
    """``logsumexp`` over the last dim; ``-inf`` with a zero gradient where all entries are."""
    dead = (x == -math.inf).all(-1)
    out = torch.logsumexp(torch.where(dead[..., None], 0, x), -1)
    return torch.where(dead, -math.inf, out)


def _count(seq: Tensor, y: Tensor, right: bool) -> Tensor:
    """Entries of the sorted last dim of ``seq`` ``[*, n]`` below ``y`` (``<= y`` if ``right``).

    ``seq``'s batch dims broadcast against ``y`` (any shape); returns int64 of ``y``'s shape.
    """
    y = y.contiguous()  # a broadcast view would be copied anyway (with a warning)
    if seq.dim() == 1:
        return torch.bucketize(y, seq, right=right)
    seq = seq.expand(y.shape + seq.shape[-1:]).contiguous()
    return torch.searchsorted(seq, y.unsqueeze(-1), right=right).squeeze(-1)


def _take(t: Tensor, idx: Tensor) -> Tensor:
    """``t[..., idx]`` for ``t`` ``[*, n]`` whose batch dims broadcast against ``idx``."""
    if t.dim() == 1:
        return t[idx]
    return t.expand(idx.shape + t.shape[-1:]).gather(-1, idx.unsqueeze(-1)).squeeze(-1)


def _stack_tails(left: Tensor, inner: Tensor, right: Tensor) -> Tensor:
    """Stack tail quantities ``[*]`` around the inner part of a per-bucket tensor ``[*, K]``."""
    shape = torch.broadcast_shapes(left.shape, right.shape, inner.shape[:-1])
    inner = inner.expand(shape + inner.shape[-1:])
    left, right = left.expand(shape)[..., None], right.expand(shape)[..., None]
    return torch.cat([left, inner[..., 1:-1], right], -1)


class RiemannDistribution(Distribution):
    """Bucketed density with half-normal tails, or bounded (see the module docstring).

    Args:
        borders: ``[K+1]`` or ``[..., K+1]`` strictly increasing bucket borders. Batched borders
            broadcast against the logits' batch dims; use them to return predictions in user
            units (``loc + scale * borders``), which includes the Jacobian in densities.
        logits: ``[..., K]`` unnormalised bucket log-probabilities, ``K >= 2``.
        validate_args: check borders, logits and values (``None`` means ``True``, whatever
            torch's process-wide default is); internal callers pass ``False`` for speed.
        tails: ``True`` for half-normal outer buckets (support: the real line); ``False`` for
            uniform outer buckets and support ``[b_0, b_K]`` (all mass on the interval).

    ``batch_shape`` is the broadcast of the leading dims of both, ``event_shape`` is ``()``.
    Values passed to :meth:`log_prob`, :meth:`cdf`, :meth:`icdf`, :meth:`ei`, :meth:`log_ei`
    and :meth:`pi` broadcast against ``batch_shape`` (extra leading sample dims are fine) and
    are cast to the distribution's dtype (the promotion of borders' and logits' dtypes). With
    validation on, NaN values raise ValueError, and so do values outside a bounded support
    passed to :meth:`log_prob`; the other methods are defined on the whole real line.
    """

    arg_constraints: ClassVar[dict] = {"logits": constraints.real_vector}
    has_rsample = False

    def __init__(
        self,
        borders: Tensor,
        logits: Tensor,
        validate_args: bool | None = None,
        *,
        tails: bool = True,
    ):
        logits, borders = torch.as_tensor(logits), torch.as_tensor(borders)
        if logits.dim() < 1 or logits.shape[-1] < 2:
            raise ValueError(f"logits must be [..., K] with K >= 2; got {tuple(logits.shape)}")
        k = logits.shape[-1]
        if borders.dim() < 1 or borders.shape[-1] != k + 1:
            raise ValueError(
                f"borders must be [K+1] or [..., K+1] with K+1 = {k + 1} to match logits "
                f"{tuple(logits.shape)}; got borders {tuple(borders.shape)}"
            )
        try:
            batch_shape = torch.broadcast_shapes(logits.shape[:-1], borders.shape[:-1])
        except RuntimeError as e:
            raise ValueError(
                f"batch dims of borders {tuple(borders.shape)} and logits {tuple(logits.shape)} "
                "do not broadcast"
            ) from e
        dtype = torch.promote_types(logits.dtype, borders.dtype)
        dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
        self.logits = logits.to(dtype)
        self.borders = borders.to(device=logits.device, dtype=dtype)
        self.num_buckets = k
        self.tails = bool(tails)
        # None means True (not torch's global default); torch's constraint checks cannot
        # reshape an empty batch
        validate_args = validate_args is not False and logits.numel() > 0
        super().__init__(batch_shape, validate_args=validate_args)
        if self._validate_args and not bool((self.borders.diff(dim=-1) > 0).all()):
            raise ValueError("borders must be strictly increasing along the last dim")

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        """``constraints.real``, or with ``tails=False`` ``constraints.interval(b_0, b_K)``
        (bounds of the borders' batch shape)."""
        if self.tails:
            return constraints.real
        return constraints.interval(self.borders[..., 0], self.borders[..., -1])

    def expand(self, batch_shape, _instance=None) -> RiemannDistribution:
        shape = torch.Size(batch_shape)
        b = self.borders if self.borders.dim() == 1 else self.borders.expand((*shape, -1))
        logits = self.logits.expand((*shape, -1))
        new = RiemannDistribution(b, logits, validate_args=False, tails=self.tails)
        new._validate_args = self._validate_args  # as torch's own expand (borders already valid)
        return new

    def _prep(self, value, check: bool = True, support: bool = False) -> Tensor:
        """Cast to our dtype/device, validate, and broadcast to ``value.shape ∪ batch_shape``.

        Validation rejects NaN and, with ``support`` (for densities), values outside it.
        """
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        if check and self._validate_args:
            if support:
                self._validate_sample(value)  # torch's shape and support checks
            elif bool(value.isnan().any()):
                raise ValueError(f"values must not be NaN; got {value}")
        try:
            shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        except RuntimeError as e:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast against batch_shape "
                f"{tuple(self.batch_shape)}"
            ) from e
        return value.expand(shape)

    def _tails(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(b_1, σ_L, b_{K-1}, σ_R)``, each with the borders' batch shape."""
        b = self.borders
        sl, sr = (b[..., 1] - b[..., 0]) / _Z75, (b[..., -1] - b[..., -2]) / _Z75
        return b[..., 1], sl, b[..., -2], sr

    def _per_bucket(self, left: Tensor, inner: Tensor, right: Tensor) -> Tensor:
        """A per-bucket ``[*, K]`` quantity from the uniform-bucket formula ``inner`` ``[*, K]``
        (evaluated for all buckets) and the tails' ``left``, ``right`` ``[*]``; the tail buckets
        keep ``inner``'s entries with ``tails=False``."""
        return _stack_tails(left, inner, right) if self.tails else inner

    def _pick(self, idx: Tensor, left: Tensor, inner: Tensor, right: Tensor) -> Tensor:
        """Elementwise by bucket index ``idx``: ``left`` in bucket 0, ``right`` in bucket
        ``K-1``, else ``inner`` (everywhere with ``tails=False``); all broadcast together."""
        if not self.tails:
            return inner
        k = self.num_buckets
        return torch.where(idx == 0, left, torch.where(idx == k - 1, right, inner))

    def _cum(self) -> Tensor:
        """``[..., K+1]``: ``P(bucket < k)`` for ``k = 0..K``; exactly 0 first and 1 last."""
        c = self._bucket_probs.cumsum(-1)
        c = c / c[..., -1:]
        return torch.cat([torch.zeros_like(c[..., :1]), c], -1)

    def _reflect(self) -> RiemannDistribution:
        """The distribution of ``-Y``."""
        b, logits = -self.borders.flip(-1), self.logits.flip(-1)
        return RiemannDistribution(b, logits, validate_args=False, tails=self.tails)

    def _bucket_moments(self) -> tuple[Tensor, Tensor]:
        """Per-bucket means and variances, ``[..., K]`` each (borders' batch shape)."""
        b = self.borders
        b1, sl, bk, sr = self._tails()
        mid, var = (b[..., :-1] + b[..., 1:]) / 2, b.diff(dim=-1) ** 2 / 12
        m = self._per_bucket(b1 - sl * _SQRT_2_OVER_PI, mid, bk + sr * _SQRT_2_OVER_PI)
        return m, self._per_bucket(sl**2 * _HALFNORM_VAR, var, sr**2 * _HALFNORM_VAR)

    @lazy_property
    def _bucket_probs(self) -> Tensor:
        """``softmax(logits)`` ``[..., K]``, computed once (mean, variance, cdf, EI share it)."""
        return torch.softmax(self.logits, -1)

    @property
    def probs(self) -> Tensor:
        """``[*batch_shape, K]`` bucket probabilities."""
        return self._bucket_probs.expand((*self.batch_shape, -1))

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density ``[*value.shape ∪ batch_shape]``; differentiable w.r.t. logits and borders.

        Far in the tails this is the exact Gaussian log-density (finite, quadratic in ``y``).
        With ``tails=False`` it is ``-inf`` outside ``[b_0, b_K]`` (a ValueError if validating).
        """
        y = self._prep(value, support=True)
        b = self.borders
        idx = _count(b[..., 1:-1], y, right=True)  # bucket index in 0..K-1
        b1, sl, bk, sr = self._tails()
        left = _LOG_HALFNORM_PDF0 - sl.log() - 0.5 * ((b1 - y).clamp(min=0) / sl) ** 2
        right = _LOG_HALFNORM_PDF0 - sr.log() - 0.5 * ((y - bk).clamp(min=0) / sr) ** 2
        inner = -(_take(b, idx + 1) - _take(b, idx)).log()
        log_dens = self._pick(idx, left, inner, right)
        if not self.tails:
            outside = (y < b[..., 0]) | (y > b[..., -1])
            log_dens = torch.where(outside, -math.inf, log_dens)
        return _take(torch.log_softmax(self.logits, -1), idx) + log_dens

    def cdf(self, value: Tensor) -> Tensor:
        """``P(Y <= value)``, ``[*value.shape ∪ batch_shape]`` (0 below, 1 above a bounded
        support)."""
        y = self._prep(value)
        b, cum = self.borders, self._cum()
        idx = _count(b[..., 1:-1], y, right=True)
        prev, nxt = _take(cum, idx), _take(cum, idx + 1)
        b1, sl, bk, sr = self._tails()
        left = nxt * torch.special.erfc((b1 - y).clamp(min=0) / (sl * _SQRT2))
        right = prev + (nxt - prev) * torch.erf((y - bk).clamp(min=0) / (sr * _SQRT2))
        lo, hi = _take(b, idx), _take(b, idx + 1)
        inner = prev + (nxt - prev) * ((y - lo) / (hi - lo)).clamp(0, 1)
        return self._pick(idx, left, inner, right).clamp(0, 1)

    def icdf(self, value: Tensor) -> Tensor:
        """Quantile function, ``[*value.shape ∪ batch_shape]``.

        ``icdf(0) = -inf`` and ``icdf(1) = +inf`` always (the support is the whole real line);
        any ``0 < q < 1`` maps to a finite value. With ``tails=False``, ``icdf(0) = b_0`` and
        ``icdf(1) = b_K``.
        """
        q = self._prep(value, check=False)
        if self._validate_args and not bool(((q >= 0) & (q <= 1)).all()):
            raise ValueError("icdf expects probabilities in [0, 1]")
        b, cum = self.borders, self._cum()
        idx = _count(cum[..., 1:-1], q, right=False)  # prev < q <= nxt, so mass > 0 if q > 0
        prev, nxt = _take(cum, idx), _take(cum, idx + 1)
        mass = torch.where(nxt > prev, nxt - prev, torch.ones_like(q))
        b1, sl, bk, sr = self._tails()
        # each tail's level only where that tail is picked, and never 0: torch.where passes a
        # zero gradient to the branch it drops, and 0 * ndtri'(0) = 0 * inf would be NaN
        tiny, half = torch.finfo(q.dtype).tiny, torch.full_like(q, 0.5)
        u_left = torch.where(idx == 0, (q / mass).clamp(0, 1) / 2, half).clamp(min=tiny)
        u_right = torch.where(idx == self.num_buckets - 1, ((nxt - q) / mass).clamp(0, 1) / 2,
                              half).clamp(min=tiny)
        left = b1 + sl * torch.special.ndtri(u_left)
        right = bk - sr * torch.special.ndtri(u_right)
        lo, hi = _take(b, idx), _take(b, idx + 1)
        inner = lo + (hi - lo) * ((q - prev) / mass).clamp(0, 1)
        y = self._pick(idx, left, inner, right)
        first, last = (-math.inf, math.inf) if self.tails else (b[..., 0], b[..., -1])
        return torch.where(q <= 0, first, torch.where(q >= 1, last, y))

    @property
    def mean(self) -> Tensor:
        """``[*batch_shape]``."""
        m, _ = self._bucket_moments()
        return (self.probs * m).sum(-1)

    @property
    def variance(self) -> Tensor:
        """``[*batch_shape]``, via the law of total variance (stable for large offsets)."""
        m, v = self._bucket_moments()
        p = self.probs
        mean = (p * m).sum(-1, keepdim=True)
        return (p * (v + (m - mean) ** 2)).sum(-1)

    @property
    def mode(self) -> Tensor:
        """``[*batch_shape]``: where the density peaks; bucket midpoint for an inner bucket (and
        any bucket with ``tails=False``), the inner edge (``b_1`` or ``b_{K-1}``) for a tail."""
        b = self.borders
        b1, sl, bk, sr = self._tails()
        log_w = b.diff(dim=-1).log()
        log_peak = self._per_bucket(
            _LOG_HALFNORM_PDF0 - sl.log(), -log_w, _LOG_HALFNORM_PDF0 - sr.log()
        )
        idx = (torch.log_softmax(self.logits, -1) + log_peak).argmax(-1)
        return _take(self._per_bucket(b1, (b[..., :-1] + b[..., 1:]) / 2, bk), idx)

    def entropy(self) -> Tensor:
        """Differential entropy ``-∫ f log f``, ``[*batch_shape]``."""
        b = self.borders
        _, sl, _, sr = self._tails()
        h_l, h_r = sl.log() + _HALFNORM_ENTROPY, sr.log() + _HALFNORM_ENTROPY
        h = self._per_bucket(h_l, b.diff(dim=-1).log(), h_r)
        logp = torch.log_softmax(self.logits, -1)
        p = logp.exp()
        plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
        return (p * h - plogp).sum(-1).expand(self.batch_shape)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """``[*sample_shape, *batch_shape]`` exact samples (bucket, then uniform or half-normal)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        logits = self.logits.expand((*self.batch_shape, -1))
        idx = Categorical(logits=logits, validate_args=False).sample(torch.Size(sample_shape))
        b = self.borders
        kw = {"dtype": self.logits.dtype, "device": self.logits.device}
        u, z = torch.rand(shape, **kw), torch.randn(shape, **kw).abs()
        b1, sl, bk, sr = self._tails()
        lo, hi = _take(b, idx), _take(b, idx + 1)
        inner = lo + (hi - lo) * u
        return self._pick(idx, b1 - sl * z, inner, bk + sr * z)

    def _gain_terms(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Pieces of ``E[(Y - t)^+ | bucket k]`` for thresholds ``t`` ``[*]``.

        Uniform buckets: ``(a, c, w2)``, ``[*, K]`` each, with the partial expectation
        ``a c / w2 = ∫_u^hi (y - t) dy / w`` (``u`` is ``t`` clipped to the bucket); ``a > 0``
        and ``c > 0`` exactly where ``t < hi``. Tails: ``s_l = (b_1 - t)^+ / σ_L`` and
        ``s_r = (t - b_{K-1})^+ / σ_R``, ``[*]`` each.
        """
        b = self.borders
        lo, hi, tt = b[..., :-1], b[..., 1:], t.unsqueeze(-1)
        u = torch.minimum(torch.maximum(tt, lo), hi)
        b1, sl, bk, sr = self._tails()
        s_l, s_r = ((b1 - t) / sl).clamp(min=0), ((t - bk) / sr).clamp(min=0)
        a = hi - u
        return a, a + 2 * (u - tt), 2 * (hi - lo), s_l, s_r  # = hi + u - 2t, exact if u = t

    def ei(self, best: Tensor, maximize: bool = True) -> Tensor:
        """Expected improvement ``E[max(Y - best, 0)]`` (``maximize=False``:
        ``E[max(best - Y, 0)]``), ``[*best.shape ∪ batch_shape]``.

        Underflows to 0 far beyond the right tail (about 38 tail scales in float64); use
        :meth:`log_ei` there. With ``tails=False`` it is exactly 0 for ``best >= b_K``.
        """
        if not maximize:
            return self._reflect().ei(-self._prep(best), maximize=True)
        t = self._prep(best)
        a, c, w2, s_l, s_r = self._gain_terms(t)
        _, sl, bk, sr = self._tails()
        left = sl * _halfnormal_below(s_l)  # Y = b_1 - σ|Z|
        right = 2 * sr * _normal_partial(s_r) + (bk - t).clamp(min=0)  # Y = b_{K-1} + σ|Z|
        contrib = self._per_bucket(left, a * c / w2, right)
        return (self._bucket_probs * contrib).sum(-1).clamp(min=0)

    def log_ei(self, best: Tensor, maximize: bool = True) -> Tensor:
        """``log ei(best, maximize)``, ``[*best.shape ∪ batch_shape]``, computed in log space.

        The log of each bucket's partial expectation is combined with ``log p_k`` by
        logsumexp, and the right tail's ``log E[(Z - s)^+]`` never leaves log space, so the
        value and its gradients (w.r.t. ``best``, logits and borders) stay finite and accurate
        far beyond the outer tail, where :meth:`ei` is 0 (in float32 too, as long as ``s²``
        for ``s = (best - b_{K-1}) / σ_R`` is finite); ``d log_ei / d best = -pi / ei``
        (``+pi / ei`` with ``maximize=False``). With ``tails=False``, EI is exactly 0 for
        ``best >= b_K`` (``best <= b_0`` if minimising): ``log_ei`` is ``-inf`` there, with a
        zero gradient.
        """
        if not maximize:
            return self._reflect().log_ei(-self._prep(best), maximize=True)
        t = self._prep(best)
        a, c, w2, s_l, s_r = self._gain_terms(t)
        _, sl, bk, sr = self._tails()
        left = sl.log() + _safe_log(_halfnormal_below(s_l))
        beyond = (2 * sr).log() + _log_normal_partial(s_r)
        right = torch.where(t > bk, beyond, (2 * _PDF0 * sr + (bk - t).clamp(min=0)).log())
        inner = _safe_log(a) + _safe_log(c) - w2.log()
        return _logsumexp(torch.log_softmax(self.logits, -1) + self._per_bucket(left, inner, right))

    def pi(self, best: Tensor, maximize: bool = True) -> Tensor:
        """Probability of improvement ``P(Y > best)`` (``maximize=False``: ``P(Y < best)``),
        ``[*best.shape ∪ batch_shape]``; upper tails are computed without cancellation."""
        if maximize:
            return self._reflect().cdf(-self._prep(best))
        return self.cdf(best)

    def ucb(self, beta: float | Tensor) -> Tensor:
        """Upper confidence bound ``mean + sqrt(beta) * stddev`` (BoTorch's convention)."""
        beta = torch.as_tensor(beta, dtype=self.logits.dtype, device=self.logits.device)
        return self.mean + beta.sqrt() * self.stddev


def borders_from_samples(y: Tensor, num_buckets: int) -> Tensor:
    """Equal-mass bucket borders ``[num_buckets + 1]`` (float32, on ``y``'s device).

    ``y`` (any shape, flattened) are samples of the prior's targets; NaN or inf raise ValueError.
    Inner borders start at the empirical quantiles ``j / K`` (linear interpolation of the sorted
    samples), the outer ones at the quantiles ``1 / (2K)`` and ``1 - 1 / (2K)``: each tail bucket
    holds ``1 / K`` of the samples and its half-normal puts half of that beyond its outer border,
    so the tails are calibrated to the samples' own. (The sample min and max instead would make
    the tail scale follow single outliers: on heavy-tailed targets a tail bucket then spans
    hundreds of standard deviations, and a little mass on it swamps the predictive mean.) Ties
    (discrete targets, point masses) make quantiles coincide; the duplicates are dropped and
    the freed borders re-spent by repeatedly splitting the gap whose pieces are currently
    widest into equal pieces, so the result is always strictly increasing. If all samples are
    equal to ``v``, the range is ``v ± max(0.5, 1e-3 |v|)``.
    """
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2; got {num_buckets}")
    y = torch.as_tensor(y).detach()
    device, y = y.device, y.reshape(-1).to("cpu", torch.float64)
    if y.numel() == 0:
        raise ValueError("y is empty")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or inf")
    s, n = y.sort().values, y.numel()
    levels = torch.linspace(0, 1, num_buckets + 1, dtype=torch.float64)
    levels[0], levels[-1] = 0.5 / num_buckets, 1 - 0.5 / num_buckets
    pos = levels * (n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    q = s[lo] + (s[hi] - s[lo]) * (pos - lo)
    u = torch.unique(q.float()).double().tolist()  # dedupe at the output precision
    if len(u) == 1:
        half = max(0.5, 1e-3 * abs(u[0]))
        u = [u[0] - half, u[0] + half]
    gaps = [hi_ - lo_ for lo_, hi_ in itertools.pairwise(u)]
    pieces = [1] * len(gaps)
    heap = [(-g, i) for i, g in enumerate(gaps)]
    heapq.heapify(heap)
    for _ in range(num_buckets + 1 - len(u)):
        _, i = heapq.heappop(heap)
        pieces[i] += 1
        heapq.heappush(heap, (-gaps[i] / pieces[i], i))
    parts = [
        torch.linspace(u[i], u[i + 1], pieces[i] + 1, dtype=torch.float64)[:-1]
        for i in range(len(gaps))
    ]
    out = torch.cat([*parts, torch.tensor(u[-1:], dtype=torch.float64)]).float()
    if not bool((out.diff() > 0).all()):
        raise ValueError("samples too concentrated for strictly increasing float32 borders")
    return out.to(device)
