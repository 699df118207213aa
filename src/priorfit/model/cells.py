"""The ``"cells"`` architecture: one token per table cell (TabPFN v2, nanoTabPFN).

A row of ``F`` features becomes ``G = ceil(F / g)`` feature tokens (``g =
config.features_per_group`` features each, embedded by one linear map shared by every group) and
one target token (``y`` embedded for training rows, a learned vector for test rows). Each layer

1. attends across the ``G + 1`` tokens of each row,
2. attends across rows within each column: training rows to training rows, test rows to
   training rows only (never to themselves or to other test rows),
3. applies a feed-forward block to every token.

Missing values (NaN in ``x``) are encoded, not imputed: a cell's value enters as 0 and a second
linear map embeds the group's missing-value indicators, so "missing" is a learned embedding.
The decoder reads the target token of each test row. With ``config.thinking_rows = T``, ``T``
learned rows are prepended to the training rows in every dataset: they take part like training
rows, so every row can attend to them (and test rows still see something when there are no
training rows). Without positional encodings the output is invariant to the order of training
rows and, as the feature embedding is shared, to the order of feature groups (with ``g = 1``,
of features). Training rows never attend to test rows, so their keys and values per layer and
column are cached once (:meth:`CellsPFN.condition`) and test rows are predicted in chunks.

Only the test rows' target tokens are decoded, so the last layer computes no more than they
read: the target token's attention across its row, the target column's keys and values of the
training rows, and the test rows' target tokens after that (about a quarter less work than every
token of every layer with 4 layers, outputs equal up to rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorfit.model.attention import Attention, FeedForward, attend, decoder, residual_gain
from priorfit.model.pfn import PFN
from priorfit.model.registry import register_architecture

CellsCache = tuple[list[tuple[Tensor, Tensor]], Tensor | None]
"""Per layer, column-attention keys and values of the training (and thinking) rows, each
``[B, G + 1, heads, T + n, head_dim]`` (the last layer's ``[B, 1, heads, T + n, head_dim]``:
the target column's), and the key mask ``[B, 1, T + n]`` (or ``None``)."""


class CellBlock(nn.Module):
    """Attention across a row's tokens, then across a column's rows, then feed-forward."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.norm_row = nn.LayerNorm(d)
        self.row_attn = Attention(d, config.num_heads)
        self.norm_col = nn.LayerNorm(d)
        self.col_attn = Attention(d, config.num_heads)
        self.row_gain = residual_gain(d, config.residual_scale)
        self.col_gain = residual_gain(d, config.residual_scale)
        self.feed_forward = FeedForward(d, config.d_ff, config.dropout, config.residual_scale)
        self.dropout = nn.Dropout(config.dropout)

    def across_row(self, h: Tensor, target_only: bool = False) -> Tensor:
        """``h [B, R, C, d]``: each row's ``C`` tokens attend to each other -> ``[B, R, C, d]``
        (``target_only``: only the last, target token's query -> ``[B, R, 1, d]``)."""
        q, k, v = self.row_attn.split(self.norm_row(h))  # [B, R, H, C, hd]
        if target_only:
            h, q = h[..., -1:, :], q[..., -1:, :]
        return h + self.dropout(self.row_gain(self.row_attn.merge(attend(q, k, v))))

    def train_rows(self, h: Tensor, mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Training rows ``h [B, R, C, d]`` -> (``[B, R, C, d]``, column keys/values
        ``[B, C, heads, R, head_dim]``)."""
        h = self.across_row(h)
        q, k, v = self.col_attn.split(self.norm_col(h).transpose(1, 2))  # [B, C, H, R, hd]
        attended = self.col_attn.merge(attend(q, k, v, mask)).transpose(1, 2)
        return self.feed_forward(h + self.dropout(self.col_gain(attended))), (k, v)

    def target_keys_values(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The last layer's training rows ``h [B, R, C, d]`` -> keys and values of their target
        column ``[B, 1, heads, R, head_dim]``, all that test rows read of them there."""
        h = self.across_row(h, target_only=True)
        _, k, v = self.col_attn.split(self.norm_col(h).transpose(1, 2))
        return k, v

    def test_rows(self, h: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None,
                  target_only: bool = False) -> Tensor:
        """Test rows ``h [B, m, C, d]`` attend across their row, then to the cached training
        rows of each column -> ``[B, m, C, d]`` (``target_only``, in the last layer, with the
        target column's ``kv``: the target tokens alone, ``[B, m, 1, d]``)."""
        h = self.across_row(h, target_only)
        q, _, _ = self.col_attn.split(self.norm_col(h).transpose(1, 2))
        attended = self.col_attn.merge(attend(q, *kv, mask)).transpose(1, 2)
        return self.feed_forward(h + self.dropout(self.col_gain(attended)))


@register_architecture("cells")
class CellsPFN(PFN):
    """One token per cell (see the module docstring). Any number of features up to
    ``config.num_features``; ``features_per_group`` features share a token."""

    default_chunk_size = 256  # test rows per pass: every row holds G + 1 tokens
    accepts_missing = True

    def __init__(self, config):
        super().__init__(config)
        d, group = config.d_model, config.features_per_group
        self.group = group
        self.cell_encoder = nn.Linear(group, d)
        self.y_encoder = nn.Linear(1, d)
        self.test_target = nn.Parameter(torch.randn(d) * 0.02)  # target token of test rows
        # thinking rows: one vector for their feature tokens, one for their target token
        self.thinking = nn.Parameter(torch.randn(config.thinking_rows, 2, d) * 0.02)
        self.blocks = nn.ModuleList(CellBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.decoder = decoder(d, config.d_ff, config.num_outputs)
        self.missing_encoder = nn.Linear(group, d, bias=False)  # embeds NaN indicators

    def _cells(self, x: Tensor) -> Tensor:
        """``x [B, N, F]`` (NaN where missing) -> feature tokens ``[B, N, G, d]``; a last
        partial group is zero-padded and rescaled like the rows encoder (``sqrt(g / features in
        the group)``)."""
        missing = x.isnan()
        pad = -x.shape[-1] % self.group
        groups = F.pad(x.masked_fill(missing, 0.0), (0, pad)).unflatten(-1, (-1, self.group))
        if pad:
            last = groups[..., -1:, :] * ((self.group / (self.group - pad)) ** 0.5)
            groups = torch.cat([groups[..., :-1, :], last], -2)
        flags = F.pad(missing.to(groups.dtype), (0, pad)).unflatten(-1, (-1, self.group))
        return self.cell_encoder(groups) + self.missing_encoder(flags)

    def condition(self, x_train: Tensor, y_train: Tensor,
                  train_mask: Tensor | None = None) -> CellsCache:
        """``x_train [B, n, F]``, ``y_train [B, n]`` -> per-layer column keys and values."""
        cells = self._cells(x_train)  # [B, n, G, d]
        target = self.y_encoder(y_train.to(cells.dtype)[..., None])[:, :, None]
        h = torch.cat([cells, target], 2)
        think = self.config.thinking_rows
        if think:
            features = self.thinking[:, :1].expand(think, cells.shape[2], -1)
            thinking = torch.cat([features, self.thinking[:, 1:]], 1).to(h.dtype)
            h = torch.cat([thinking.expand(h.shape[0], -1, -1, -1), h], 1)
            if train_mask is not None:
                train_mask = F.pad(train_mask, (think, 0), value=True)
        mask = None if train_mask is None else train_mask[:, None]  # [B, 1, T + n]
        kv = []
        for block in self.blocks[:-1]:
            h, layer_kv = block.train_rows(h, mask)
            kv.append(layer_kv)
        kv.append(self.blocks[-1].target_keys_values(h))
        return kv, mask

    def predict_logits(self, cache: CellsCache, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of test rows ``x_test [B, m, F]`` given a cache."""
        kv, mask = cache
        cells = self._cells(x_test)
        target = self.test_target.to(cells.dtype).expand(*cells.shape[:2], 1, -1)
        h = torch.cat([cells, target], 2)
        for block, layer_kv in zip(self.blocks[:-1], kv[:-1], strict=True):
            h = block.test_rows(h, layer_kv, mask)
        h = self.blocks[-1].test_rows(h, kv[-1], mask, target_only=True)
        return self._decode(h[:, :, -1])
