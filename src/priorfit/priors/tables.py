"""Synthetic classification tables: the prior a TabPFN-like classifier is trained on.

:class:`TablePrior` draws every dataset from one of four mechanisms, then makes it look like a
real table:

1. **mechanism** (per dataset): a structural causal model over a random sparse MLP graph
   (``"mlp-scm"``), one whose edges are random decision trees or boosted sums of them
   (``"tree-scm"``, as TabICL's prior), a Bayesian neural network (``"bnn"``) or a Gaussian
   process in random Fourier features (``"gp"``). Root causes are Gaussian, uniform or discrete.
2. **classes**: 2 to ``max_classes`` classes per dataset by cutting the ranks of the continuous
   target at random quantiles (unequal gaps make the classes imbalanced), labels permuted.
3. **columns**: irrelevant (pure noise) and duplicated columns, heavy-tailed transforms,
   outliers, random scales and shifts, categorical columns (integer codes in random order), a
   random column order, and missing values (NaN), completely at random or not at random.

The width F of a batch is drawn once per batch (log-uniform on ``min_features..num_features``),
since all datasets of a batch share the tensor ``[B, T, F]``; every other knob is drawn per
dataset. Sampling is vectorised over the datasets: loops run only over layers, tree levels,
mechanisms and activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.hyper import HYPERPRIORS, LogUniform
from priorfit.priors.inputs import draw_device, target_device

MECHANISMS = ("mlp-scm", "tree-scm", "bnn", "gp")
ROOT_CAUSES = ("normal", "uniform", "discrete")
TABLE_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sin": torch.sin,
    "identity": lambda h: h,
    "abs": torch.abs,
    "square": torch.square,
}
MIN_GRAPH_WIDTH = 2  # nodes per layer of the causal graphs, at least
BNN_WIDTH = 32  # hidden units per layer of the BNN mechanism
MAX_ROOT_LEVELS = 5  # a discrete root cause takes 2 to 5 values
FOURIER_FEATURES = 256  # random Fourier features of the GP mechanism
RELEVANCE_SPREAD = 1.0  # BNN and GP inputs are weighted by log-normal factors of this log-std
DUPLICATE_JITTER = 0.1  # largest noise on a duplicated column, in units of its spread
HEAVY_TAIL_CLIP = 8.0  # standardised values are clipped here before exp / sinh / power
OUTLIER_FACTOR = (5.0, 100.0)  # outlier cells are multiplied by a log-uniform factor in this range
MNAR_SLOPE = 2.0  # not at random: P(missing) grows as sigmoid(MNAR_SLOPE * standardised value)


@dataclass
class TableInfo:
    """What :meth:`TablePrior.sample_with_info` drew, per dataset of a batch.

    Attributes:
        mechanism: ``[B]`` long, an index into :data:`MECHANISMS`.
        num_classes: ``[B]`` long, the classes of each dataset (all present in its rows).
        categorical: ``[B, F]`` bool, the columns holding integer category codes.
    """

    mechanism: Tensor
    num_classes: Tensor
    categorical: Tensor


@dataclass
class TablePrior:
    """Classification tables from a mixture of causal models, BNNs and GPs (see the module).

    Every ``max_*`` share below is the top of a per-dataset draw: each dataset draws its own
    share uniformly from ``[0, max_*]`` and each column is then affected with that probability.
    Setting one to 0 (or a probability to 0) switches that component off.

    Attributes:
        num_features: the most features; each batch draws its width F log-uniformly from
            ``min_features..num_features``.
        max_classes: the most classes; each dataset has 2 to ``max_classes`` (uniformly).
        mechanisms: weight of each mechanism of :data:`MECHANISMS` (missing names: 0), e.g.
            ``{"tree-scm": 1.0}`` for trees only.
        root_causes: weight of each root-cause distribution of :data:`ROOT_CAUSES`, per dataset
            (standard normal, uniform with unit variance, or 2 to 5 equally spaced values).
        max_layers: layers of the causal graphs and BNNs; each dataset reads its target from
            layer ``1..max_layers`` (SCMs) or uses that many hidden layers (BNNs).
        max_sparsity: each dataset drops a share ``U[0, max_sparsity]`` of its MLP edges.
        activations: names from :data:`TABLE_ACTIVATIONS`, one drawn per dataset and layer.
        weight_std: scale of the MLP weights (``N(0, weight_std² / fan_in)``), a number or a
            hyperprior (:class:`~priorfit.priors.LogUniform`, ...); it sets how nonlinear the
            activations act.
        noise_std: noise at every node of an SCM and on the target of a BNN or GP, relative to
            the node's standard deviation; a number or a hyperprior.
        max_tree_depth, max_trees: each tree-SCM dataset draws a tree depth in
            ``1..max_tree_depth`` and sums ``1..max_trees`` trees per node (1: a single tree).
        gp_lengthscale: RBF lengthscale of the GP mechanism on standardised inputs, times
            ``sqrt(F)``; a number or a hyperprior.
        imbalance: how unequal the classes may be: each dataset cuts its target's ranks at
            ``(1 - λ) · equal + λ · random`` quantiles with ``λ ~ U[0, imbalance]`` (0: balanced).
        max_irrelevant_share: columns replaced by pure noise.
        max_duplicate_share: columns replaced by a copy of another one plus a little noise.
        max_heavy_tail_share: columns put through ``exp``, ``sinh`` or a signed power.
        outlier_probability, max_outlier_rate: the share of datasets with outliers, and the
            largest share of their cells multiplied by a factor of 5 to 100.
        max_log10_scale, shift_std: each column is shifted by ``N(0, shift_std²)`` (in units of
            its spread) and multiplied by ``10^U[-max_log10_scale, max_log10_scale]``.
        max_categorical_share, max_categories: columns cut into 2 to ``max_categories``
            categories at the values of random rows, stored as codes ``0., 1., ...`` in a random
            order.
        missing_probability, max_missing_rate, mnar_probability: the share of datasets with
            missing values (NaN in x), their largest missing rate (drawn per dataset), and the
            share of those whose values are missing not at random (large values more often).
    """

    num_features: int = 100
    min_features: int = 1
    max_classes: int = 10
    mechanisms: dict[str, float] = field(
        default_factory=lambda: {"mlp-scm": 0.4, "tree-scm": 0.3, "bnn": 0.15, "gp": 0.15}
    )
    root_causes: dict[str, float] = field(
        default_factory=lambda: {"normal": 0.4, "uniform": 0.3, "discrete": 0.3}
    )
    max_layers: int = 4
    max_sparsity: float = 0.8
    activations: tuple[str, ...] = ("tanh", "relu", "sin", "identity", "abs", "square")
    weight_std: Any = field(default_factory=lambda: LogUniform(0.5, 2.0))
    noise_std: Any = field(default_factory=lambda: LogUniform(1e-3, 0.3))
    max_tree_depth: int = 4
    max_trees: int = 4
    gp_lengthscale: Any = field(default_factory=lambda: LogUniform(0.5, 10.0))
    imbalance: float = 1.0
    max_irrelevant_share: float = 0.2
    max_duplicate_share: float = 0.1
    max_heavy_tail_share: float = 0.3
    outlier_probability: float = 0.2
    max_outlier_rate: float = 0.02
    max_log10_scale: float = 2.0
    shift_std: float = 3.0
    max_categorical_share: float = 0.5
    max_categories: int = 10
    missing_probability: float = 0.3
    max_missing_rate: float = 0.3
    mnar_probability: float = 0.5

    def __post_init__(self) -> None:
        self.activations = tuple(self.activations)
        self.mechanisms = _check_weights("mechanisms", self.mechanisms, MECHANISMS)
        self.root_causes = _check_weights("root_causes", self.root_causes, ROOT_CAUSES)
        for name, low in (("num_features", 1), ("min_features", 1), ("max_classes", 2),
                          ("max_layers", 1), ("max_tree_depth", 1), ("max_trees", 1),
                          ("max_categories", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TablePrior.{name} must be an integer >= {low}, got {value!r}")
        if self.min_features > self.num_features:
            raise ValueError(
                f"TablePrior.min_features must be <= num_features ({self.num_features}), got "
                f"{self.min_features}"
            )
        for name in ("imbalance", "max_irrelevant_share", "max_duplicate_share",
                     "max_heavy_tail_share", "outlier_probability", "max_outlier_rate",
                     "max_categorical_share", "missing_probability", "max_missing_rate",
                     "mnar_probability"):
            _check_number(name, getattr(self, name), high=1.0)
        _check_number("max_sparsity", self.max_sparsity, high=0.99)
        _check_number("max_log10_scale", self.max_log10_scale)
        _check_number("shift_std", self.shift_std)
        unknown = [a for a in self.activations if a not in TABLE_ACTIVATIONS]
        if not self.activations or unknown:
            raise ValueError(
                f"TablePrior.activations must name at least one of {sorted(TABLE_ACTIVATIONS)}, "
                f"got {self.activations}"
            )
        for name in ("weight_std", "noise_std", "gp_lengthscale"):
            value = getattr(self, name)
            fixed = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not (fixed or isinstance(value, HYPERPRIORS)):
                raise ValueError(
                    f"TablePrior.{name} must be a positive number or a hyperprior, got {value!r}"
                )

    @property
    def num_classes(self) -> int:
        """The most classes of a dataset (what a ``"classes"`` head must hold)."""
        return self.max_classes

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch:
        """``batch_size`` tables: x ``[B, T, F]`` (NaN where missing), y ``[B, T]`` class labels,
        float32, with F drawn for the batch."""
        return self.sample_with_info(batch_size, seq_len, generator=generator, device=device)[0]

    def sample_with_info(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Batch, TableInfo]:
        """As :meth:`sample`, also returning each dataset's mechanism, classes and categorical
        columns."""
        out = target_device(generator, device)
        rng = _Random(generator, draw_device(generator, device))
        width = self._draw_width(rng)
        mechanism = rng.categorical(self.mechanisms, MECHANISMS, batch_size)
        x = torch.empty(batch_size, seq_len, width, device=rng.device)
        target = torch.empty(batch_size, seq_len, device=rng.device)
        draws = (self._mlp_scm, self._tree_scm, self._bnn, self._gp)  # in MECHANISMS' order
        for index, draw in enumerate(draws):
            chosen = (mechanism == index).nonzero().squeeze(1)
            if len(chosen):
                x[chosen], target[chosen] = draw(rng, len(chosen), seq_len, width)
        y, num_classes = _classes(rng, target, self.max_classes, self.imbalance)
        x, categorical = self._columns(rng, x)
        info = TableInfo(mechanism.to(out), num_classes.to(out), categorical.to(out))
        return Batch(x.to(out), y.float().to(out)), info

    def _draw_width(self, rng: _Random) -> int:
        """The batch's number of features, log-uniform on ``min_features..num_features``."""
        low, high = math.log(self.min_features), math.log(self.num_features + 1)
        width = math.floor(math.exp(low + (high - low) * float(rng.uniform(1))))
        return min(max(width, self.min_features), self.num_features)

    def _mlp_scm(self, rng: _Random, n: int, rows: int, width: int) -> tuple[Tensor, Tensor]:
        """Features ``[n, T, F]`` and target ``[n, T]`` read at random nodes of a random sparse
        MLP graph, every node ``standardise(activation(parents @ w + b)) + noise``."""
        nodes = _graph_width(width)
        h = _root_causes(rng, rng.categorical(self.root_causes, ROOT_CAUSES, n), rows, nodes)
        sparsity, weight_std = self.max_sparsity * rng.uniform(n), rng.hyper(self.weight_std, n)
        noise_std = rng.hyper(self.noise_std, n)[:, None, None]
        layers = [h]
        for _ in range(self.max_layers):
            h = self._activate(rng, _dense(rng, h, nodes, sparsity, weight_std))
            h = _standardize(h) + noise_std * rng.normal(n, rows, nodes)
            layers.append(h)
        return _read_nodes(rng, torch.stack(layers, 2), width)

    def _tree_scm(self, rng: _Random, n: int, rows: int, width: int) -> tuple[Tensor, Tensor]:
        """As :meth:`_mlp_scm` with every node a sum of random decision trees of the nodes of
        the layer before: features ``[n, T, F]``, target ``[n, T]``."""
        nodes = _graph_width(width)
        h = _root_causes(rng, rng.categorical(self.root_causes, ROOT_CAUSES, n), rows, nodes)
        depth = rng.integers(1, self.max_tree_depth + 1, n)
        trees = rng.integers(1, self.max_trees + 1, n)
        noise_std = rng.hyper(self.noise_std, n)[:, None, None]
        shapes = [(int(d), int(k), (depth == d) & (trees == k))
                  for d, k in torch.stack([depth, trees], 1).unique(dim=0)]
        layers = [h]
        for _ in range(self.max_layers):
            grown = torch.empty_like(h)
            for tree_depth, tree_count, chosen in shapes:  # each shape at its own cost
                grown[chosen] = _random_trees(rng, h[chosen], tree_depth, tree_count)
            h = _standardize(grown) + noise_std * rng.normal(n, rows, nodes)
            layers.append(h)
        return _read_nodes(rng, torch.stack(layers, 2), width)

    def _bnn(self, rng: _Random, n: int, rows: int, width: int) -> tuple[Tensor, Tensor]:
        """Root causes as features ``[n, T, F]``, the target ``[n, T]`` a random MLP of them
        (1 to ``max_layers`` hidden layers) plus noise."""
        x = _root_causes(rng, rng.categorical(self.root_causes, ROOT_CAUSES, n), rows, width)
        sparsity, weight_std = self.max_sparsity * rng.uniform(n), rng.hyper(self.weight_std, n)
        depth = rng.integers(1, self.max_layers + 1, n)[:, None, None]
        h = x * _relevance(rng, n, width)[:, None, :]
        for layer in range(self.max_layers):
            deeper = _dense(rng, h, BNN_WIDTH, sparsity, weight_std)
            deeper = _standardize(self._activate(rng, deeper))
            h = deeper if layer == 0 else torch.where(layer < depth, deeper, h)
        readout = torch.bmm(h, rng.normal(n, BNN_WIDTH, 1)).squeeze(2)
        return x, self._noisy(rng, readout)

    def _gp(self, rng: _Random, n: int, rows: int, width: int) -> tuple[Tensor, Tensor]:
        """Root causes as features ``[n, T, F]``, the target ``[n, T]`` a draw from an RBF GP
        (random Fourier features, lengthscale ``gp_lengthscale · sqrt(F)``) plus noise."""
        x = _root_causes(rng, rng.categorical(self.root_causes, ROOT_CAUSES, n), rows, width)
        lengthscale = rng.hyper(self.gp_lengthscale, n)[:, None] * math.sqrt(width)
        lengthscale = lengthscale / _relevance(rng, n, width)
        frequencies = rng.normal(n, width, FOURIER_FEATURES) / lengthscale[:, :, None]
        phases = 2 * math.pi * rng.uniform(n, 1, FOURIER_FEATURES)
        features = torch.cos(torch.baddbmm(phases, x, frequencies))
        f = torch.bmm(features, rng.normal(n, FOURIER_FEATURES, 1)).squeeze(2)
        return x, self._noisy(rng, f)

    def _noisy(self, rng: _Random, f: Tensor) -> Tensor:
        """``f [n, T]`` standardised per dataset, plus noise of std ``noise_std``."""
        noise_std = rng.hyper(self.noise_std, f.shape[0])[:, None]
        return _standardize(f) + noise_std * rng.normal(*f.shape)

    def _activate(self, rng: _Random, h: Tensor) -> Tensor:
        """``h [n, T, W]`` through an activation drawn per dataset from ``activations``."""
        kind = rng.integers(0, len(self.activations), h.shape[0])
        out = torch.empty_like(h)
        for index, name in enumerate(self.activations):
            chosen = kind == index
            if chosen.any():
                out[chosen] = TABLE_ACTIVATIONS[name](h[chosen])
        return out

    def _columns(self, rng: _Random, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``[B, T, F]`` made to look like a real table's: ``[B, T, F]``, and which
        columns are categorical ``[B, F]``. Each step works in place on the columns ``[B, F, T]``
        it changes."""
        columns = _standardize(x, dim=1).transpose(1, 2).contiguous()
        _irrelevant(rng, columns, self.max_irrelevant_share)
        _duplicates(rng, columns, self.max_duplicate_share)
        _heavy_tails(rng, columns, self.max_heavy_tail_share)
        _outliers(rng, columns, self.outlier_probability, self.max_outlier_rate)
        _rescale(rng, columns, self.max_log10_scale, self.shift_std)
        categorical = _categorical(rng, columns, self.max_categorical_share, self.max_categories)
        order = torch.argsort(rng.uniform(*categorical.shape), dim=1)
        columns = columns.gather(1, order[:, :, None].expand_as(columns))
        _missing(rng, columns, self.missing_probability, self.max_missing_rate,
                 self.mnar_probability)
        return columns.transpose(1, 2).contiguous(), categorical.gather(1, order)


class _Random:
    """The random draws of one :meth:`TablePrior.sample` call: all from ``generator``, float32
    on ``device``."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def uniform(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def normal(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def integers(self, low: int, high: int, *shape: int) -> Tensor:
        """Uniform integers in ``low..high - 1`` (long)."""
        return torch.randint(low, high, shape, generator=self.generator, device=self.device)

    def hyper(self, spec: Any, n: int) -> Tensor:
        """``[n]`` draws of a number (repeated) or a hyperprior."""
        if isinstance(spec, (int, float)):
            return torch.full((n,), float(spec), device=self.device)
        return spec.sample((n,), generator=self.generator).float().to(self.device)

    def categorical(self, weights: dict[str, float], names: tuple[str, ...], n: int) -> Tensor:
        """``[n]`` indices into ``names``, drawn with probabilities ``weights`` (by name)."""
        probs = torch.tensor([weights.get(name, 0.0) for name in names], device=self.device)
        return torch.multinomial(probs, n, replacement=True, generator=self.generator)

    def columns(self, max_share: float, batch: int, width: int) -> Tensor:
        """``[B, F]`` bool: each dataset picks columns with probability ``U[0, max_share]``."""
        return self.uniform(batch, width) < max_share * self.uniform(batch, 1)


def _graph_width(num_features: int) -> int:
    """Nodes per layer of a causal graph: two layers hold the target and all features."""
    return max(MIN_GRAPH_WIDTH, math.ceil((num_features + 1) / 2))


def _relevance(rng: _Random, n: int, width: int) -> Tensor:
    """``[n, F]`` log-normal weights of the inputs: a few features matter more than the rest."""
    return (RELEVANCE_SPREAD * rng.normal(n, width)).exp()


def _standardize(h: Tensor, dim: int = 1) -> Tensor:
    """``h`` with zero mean and unit variance along ``dim`` (the rows of each dataset);
    constant columns become 0."""
    std, mean = torch.std_mean(h, dim=dim, keepdim=True, correction=0)
    return (h - mean) / std.clamp_min(1e-6)


def _root_causes(rng: _Random, kind: Tensor, rows: int, width: int) -> Tensor:
    """``[n, T, W]`` independent root causes with zero mean and unit variance, of each dataset's
    ``kind [n]`` (an index into :data:`ROOT_CAUSES`)."""
    n = kind.shape[0]
    normal = rng.normal(n, rows, width)
    u = rng.uniform(n, rows, width)
    uniform = (2 * u - 1) * math.sqrt(3)
    levels = rng.integers(2, MAX_ROOT_LEVELS + 1, n, 1, width).float()
    discrete = ((u * levels).floor() - (levels - 1) / 2) / ((levels.square() - 1) / 12).sqrt()
    kind = kind[:, None, None]
    return torch.where(kind == 0, normal, torch.where(kind == 1, uniform, discrete))


def _dense(rng: _Random, h: Tensor, width: int, sparsity: Tensor, weight_std: Tensor) -> Tensor:
    """``h [n, T, fan_in] @ w + b -> [n, T, width]``, a share ``sparsity [n]`` of the weights
    zero and the others ``N(0, weight_std² / (fan_in · (1 - sparsity)))``; biases N(0, 1)."""
    n, _, fan_in = h.shape
    keep = rng.uniform(n, fan_in, width) >= sparsity[:, None, None]
    scale = weight_std / (fan_in * (1 - sparsity)).sqrt()
    w = rng.normal(n, fan_in, width) * keep * scale[:, None, None]
    return torch.baddbmm(rng.normal(n, 1, width), h, w)


def _random_trees(rng: _Random, h: Tensor, depth: int, trees: int) -> Tensor:
    """Each of ``W`` output nodes a sum of ``trees`` random axis-aligned decision trees of depth
    ``depth`` of ``h [n, T, W]`` (scaled by ``1 / sqrt(trees)``): ``[n, T, W]``.

    Every internal node splits a random input at the value of a random row; every leaf holds an
    N(0, 1) value. Rows walk down all trees together, one level at a time.
    """
    n, rows, width = h.shape
    count, internal = width * trees, 2**depth - 1
    split = rng.integers(0, width, n, count * internal)  # [n, trees · internal nodes], heap order
    at_row = rng.integers(0, rows, n, count * internal)
    threshold = h.reshape(n, rows * width).gather(1, at_row * width + split)
    values = rng.normal(n, count * (internal + 1))
    tree = torch.arange(count, device=h.device)
    node = (tree * internal).expand(n, rows, count).clone()  # flat index: every row at the roots
    for _ in range(depth):
        at = node.view(n, rows * count)
        feature = split.gather(1, at).view_as(node)
        right = h.gather(2, feature) > threshold.gather(1, at).view_as(node)
        node.mul_(2).sub_(tree * internal - 1).add_(right)  # to the child: 2 j + 1 + right
    at = (node + tree - internal).view(n, rows * count)  # the leaf's flat index
    leaf = values.gather(1, at).view(n, rows, width, trees)
    return leaf.sum(3) / math.sqrt(trees)


def _read_nodes(rng: _Random, nodes: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Features ``[n, T, F]`` and target ``[n, T]`` at random nodes of ``nodes [n, T, L + 1, W]``
    (layer 0 the root causes).

    Each dataset reads its target at a random node of layer ``1..L`` and its ``F`` features at
    distinct random other nodes of that layer and the one before it (its parents' layer): nodes
    further away depend on the target too weakly to predict it from a few hundred rows.
    """
    n, rows, depth, per_layer = nodes.shape
    layer = rng.integers(1, depth, n)[:, None]
    target = layer * per_layer + rng.integers(0, per_layer, n, 1)  # [n, 1] flat node index
    node = torch.arange(depth * per_layer, device=nodes.device)
    above = layer - node // per_layer  # [n, nodes]: 0 in the target's layer, 1 in its parents'
    near = ((above == 0) | (above == 1)) & (node != target)
    keys = rng.uniform(n, depth * per_layer).masked_fill(~near, 2.0)
    features = torch.argsort(keys, dim=1)[:, :width]
    flat = nodes.reshape(n, rows, depth * per_layer)
    x = flat.gather(2, features[:, None, :].expand(n, rows, width))
    return x, flat.gather(2, target[:, None, :].expand(n, rows, 1)).squeeze(2)


def _classes(rng: _Random, target: Tensor, max_classes: int,
             imbalance: float) -> tuple[Tensor, Tensor]:
    """Class labels ``[B, T]`` (long) of a continuous ``target [B, T]`` and the classes ``[B]``.

    Dataset ``i`` has ``c = U{2..max_classes}`` classes (at most T): the ranks of its target,
    as quantiles, are cut at ``(1 - λ) · k / c + λ · d_k`` for ``k = 1..c-1``, with ``d`` the
    cumulative sums of a flat Dirichlet and ``λ ~ U[0, imbalance]``; λ is kept small enough that
    every class holds a row. The labels are then permuted at random.
    """
    batch, rows = target.shape
    count = rng.integers(2, max_classes + 1, batch).clamp(max=rows)
    slot = torch.arange(max_classes, device=target.device)
    gaps = -torch.log1p(-rng.uniform(batch, max_classes)) * (slot < count[:, None])
    random_cuts = (gaps.cumsum(1) / gaps.sum(1, keepdim=True))[:, :-1]
    equal_cuts = (slot[1:] / count[:, None]).float()
    largest = (1 - (count + 0.5) / rows).clamp(min=0)  # every gap stays wider than one row
    mix = torch.minimum(imbalance * rng.uniform(batch), largest)[:, None]
    cuts = ((1 - mix) * equal_cuts + mix * random_cuts).masked_fill(slot[1:] >= count[:, None], 2)
    quantile = (target.argsort(1).argsort(1) + 0.5) / rows
    label = (quantile[:, :, None] > cuts[:, None, :]).sum(2)
    keys = rng.uniform(batch, max_classes) + 2 * (slot >= count[:, None])
    return keys.argsort(1).gather(1, label), count


def _irrelevant(rng: _Random, columns: Tensor, max_share: float) -> None:
    """Replaces columns of ``columns [B, F, T]`` (never the first) by standard normal noise."""
    chosen = rng.columns(max_share, *columns.shape[:2])
    chosen[:, 0] = False
    columns[chosen] = rng.normal(int(chosen.sum()), columns.shape[2])


def _duplicates(rng: _Random, columns: Tensor, max_share: float) -> None:
    """Replaces columns of ``columns [B, F, T]`` (never the first) by copies of random columns
    plus noise of up to :data:`DUPLICATE_JITTER` standard deviations."""
    batch, width, rows = columns.shape
    chosen = rng.columns(max_share, batch, width)
    chosen[:, 0] = False
    dataset, column = chosen.nonzero(as_tuple=True)
    source = rng.integers(0, width, len(dataset))
    jitter = DUPLICATE_JITTER * rng.uniform(len(dataset), 1) * rng.normal(len(dataset), rows)
    columns[dataset, column] = columns[dataset, source] + jitter


def _heavy_tails(rng: _Random, columns: Tensor, max_share: float) -> None:
    """Puts columns of ``columns [B, F, T]`` (about standardised, z) through ``exp(s z)``,
    ``sinh(s z)`` or ``sign(z) |z|^(1 + s)``, with a strength ``s ~ U[0.5, 1.5]`` per column."""
    chosen = rng.columns(max_share, *columns.shape[:2])
    z = columns[chosen].clamp(-HEAVY_TAIL_CLIP, HEAVY_TAIL_CLIP)  # [chosen, T]
    kind = rng.integers(0, 3, len(z), 1)
    strength = 0.5 + rng.uniform(len(z), 1)
    power = z.sign() * z.abs().pow(1 + strength)
    columns[chosen] = torch.where(kind == 0, (strength * z).exp(),
                                  torch.where(kind == 1, (strength * z).sinh(), power))


def _outliers(rng: _Random, columns: Tensor, probability: float, max_rate: float) -> None:
    """Multiplies a few cells of ``columns [B, F, T]`` (in a share ``probability`` of datasets,
    each at a rate ``U[0, max_rate]``) by log-uniform factors in :data:`OUTLIER_FACTOR`."""
    affected = (rng.uniform(columns.shape[0]) < probability).nonzero().squeeze(1)
    tables = columns[affected]
    cells = rng.uniform(*tables.shape) < max_rate * rng.uniform(len(affected), 1, 1)
    low, high = (math.log(v) for v in OUTLIER_FACTOR)
    tables[cells] *= (low + (high - low) * rng.uniform(int(cells.sum()))).exp()
    columns[affected] = tables


def _rescale(rng: _Random, columns: Tensor, max_log10_scale: float, shift_std: float) -> None:
    """Shifts each column of ``columns [B, F, T]`` by ``N(0, shift_std²)`` and multiplies it by
    ``10^U[-max_log10_scale, max_log10_scale]``."""
    batch, width, _ = columns.shape
    shift = shift_std * rng.normal(batch, width, 1)
    columns.add_(shift).mul_(10 ** (max_log10_scale * (2 * rng.uniform(batch, width, 1) - 1)))


def _categorical(rng: _Random, columns: Tensor, max_share: float, max_categories: int) -> Tensor:
    """Cuts columns of ``columns [B, F, T]`` into ``k = U{2..max_categories}`` categories at the
    values of ``k - 1`` random rows, stored as codes ``0..k-1`` in a random order; returns
    which columns ``[B, F]``."""
    chosen = rng.columns(max_share, *columns.shape[:2])
    values = columns[chosen]  # [chosen, T]
    count, rows = values.shape
    categories = rng.integers(2, max_categories + 1, count, 1)
    at_row = rng.integers(0, rows, count, max_categories - 1)
    unused = torch.arange(max_categories - 1, device=columns.device) >= categories - 1
    thresholds = values.gather(1, at_row).masked_fill(unused, math.inf).sort(1).values
    codes = torch.searchsorted(thresholds, values)  # how many thresholds lie below
    slot = torch.arange(max_categories, device=columns.device)
    order = torch.argsort(rng.uniform(count, max_categories) + 2 * (slot >= categories), 1)
    columns[chosen] = order.gather(1, codes).float()
    return chosen


def _missing(rng: _Random, columns: Tensor, probability: float, max_rate: float,
             mnar_probability: float) -> None:
    """Sets cells of ``columns [B, F, T]`` to NaN: in a share ``probability`` of datasets, each
    at a rate ``r ~ U[0, max_rate]``, completely at random, or (a share ``mnar_probability`` of
    them) not at random: ``P(missing) = min(1, 2 r · sigmoid(MNAR_SLOPE · standardised value))``,
    so that large values go missing more often."""
    affected = (rng.uniform(columns.shape[0]) < probability).nonzero().squeeze(1)
    if not len(affected):
        return
    tables = columns[affected]
    rate = max_rate * rng.uniform(len(affected), 1, 1)
    not_at_random = rng.uniform(len(affected), 1, 1) < mnar_probability
    by_value = (2 * rate * torch.sigmoid(MNAR_SLOPE * _standardize(tables, dim=2))).clamp(max=1)
    missing = rng.uniform(*tables.shape) < torch.where(not_at_random, by_value, rate)
    columns[affected] = tables.masked_fill(missing, math.nan)


def _check_weights(name: str, weights: Any, names: tuple[str, ...]) -> dict[str, float]:
    """``weights`` as a ``{name: float}`` dict, or a ValueError naming ``TablePrior.name``."""
    if not isinstance(weights, dict) or not set(weights) <= set(names):
        raise ValueError(
            f"TablePrior.{name} must map names from {names} to weights, got {weights!r}"
        )
    values = list(weights.values())
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 for v in values) \
            or sum(values) <= 0:
        raise ValueError(
            f"TablePrior.{name} weights must be non-negative with a positive sum, got {weights!r}"
        )
    return {key: float(value) for key, value in weights.items()}


def _check_number(name: str, value: Any, high: float = math.inf) -> None:
    """A ValueError naming ``TablePrior.name`` unless ``0 <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        bounds = f"in [0, {high}]" if high < math.inf else ">= 0"
        raise ValueError(f"TablePrior.{name} must be a number {bounds}, got {value!r}")
