"""Few-shot image classification baselines: nearest neighbour and logistic regression on pixels,
and a prototypical network (Snell et al., 2017) trained on real characters.

Every function takes flattened images ``[n, side²]`` as :func:`priorfit.images.prepare_images`
makes them (grey levels in [0, 1], ink bright, centred) and returns predicted class codes.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def nearest_neighbour(support: np.ndarray, labels: np.ndarray, queries: np.ndarray
                      ) -> np.ndarray:
    """The label of each query's nearest support image (Euclidean distance on pixels)."""
    distances = torch.cdist(torch.as_tensor(queries), torch.as_tensor(support))
    return labels[distances.argmin(1).numpy()]


def logistic_regression(support: np.ndarray, labels: np.ndarray, queries: np.ndarray
                        ) -> np.ndarray:
    """Multinomial logistic regression on pixels (scikit-learn, L2, ``C = 1``)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=500).fit(support, labels).predict(queries)


class ProtoNet(nn.Module):
    """The 4-block convolutional embedding of prototypical networks: each block a 3×3
    convolution (64 channels), batch norm, ReLU and 2×2 max pooling; images ``[n, side²]`` ->
    embeddings ``[n, 64 · (side / 16)²]``."""

    def __init__(self, side: int, channels: int = 64):
        super().__init__()
        self.side = side
        blocks, width = [], 1
        for _ in range(4):
            blocks += [nn.Conv2d(width, channels, 3, padding=1), nn.BatchNorm2d(channels),
                       nn.ReLU(), nn.MaxPool2d(2)]
            width = channels
        self.blocks = nn.Sequential(*blocks)

    def forward(self, images: Tensor) -> Tensor:
        return self.blocks(images.reshape(-1, 1, self.side, self.side)).flatten(1)

    @torch.no_grad()
    def predict(self, support: np.ndarray, labels: np.ndarray, queries: np.ndarray
                ) -> np.ndarray:
        """Each query's class: the nearest class mean of the support embeddings."""
        self.eval()
        classes, codes = np.unique(labels, return_inverse=True)
        logits = _prototype_logits(self(torch.as_tensor(support)), torch.as_tensor(codes),
                                   self(torch.as_tensor(queries)), len(classes))
        return classes[logits.argmax(1).numpy()]


def _prototype_logits(support: Tensor, codes: Tensor, queries: Tensor, classes: int) -> Tensor:
    """Negative squared distances ``[m, classes]`` of query embeddings to the class means."""
    prototypes = torch.zeros(classes, support.shape[1]).index_add_(0, codes, support)
    prototypes = prototypes / torch.bincount(codes, minlength=classes)[:, None]
    return -torch.cdist(queries, prototypes).pow(2)


def train_protonet(images: np.ndarray, side: int, seconds: float, *, ways: int = 20,
                   shots: int = 5, queries: int = 5, lr: float = 1e-3, rotate_classes: bool = True,
                   seed: int = 0) -> tuple[ProtoNet, dict]:
    """A :class:`ProtoNet` trained for ``seconds`` of wall time on episodes of ``images
    [characters, drawings, side²]`` (``ways`` classes, ``shots`` support and ``queries`` query
    images each; Adam, rate halved every 2000 episodes; with ``rotate_classes`` each character
    turned by 90, 180 and 270 degrees is a class of its own: all as in the paper, and as the
    fine-tuned PFN's episodes). Returns the network and a record of the episodes trained and
    the seconds spent."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = ProtoNet(side)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2000, gamma=0.5)
    data = torch.as_tensor(images, dtype=torch.float32)
    if rotate_classes:
        square = data.reshape(*data.shape[:2], side, side)
        data = torch.cat([torch.rot90(square, k, (-2, -1)) for k in range(4)]).flatten(2)
    start, episodes = time.perf_counter(), 0
    network.train()
    while time.perf_counter() - start < seconds:
        chosen = torch.as_tensor(rng.choice(len(data), ways, replace=False))
        drawings = torch.as_tensor(np.stack([rng.choice(data.shape[1], shots + queries,
                                                        replace=False) for _ in range(ways)]))
        batch = data[chosen[:, None], drawings]  # [ways, shots + queries, side²]
        embedded = network(batch.reshape(-1, side * side)).reshape(ways, shots + queries, -1)
        codes = torch.arange(ways)
        logits = _prototype_logits(embedded[:, :shots].reshape(ways * shots, -1),
                                   codes.repeat_interleave(shots),
                                   embedded[:, shots:].reshape(ways * queries, -1), ways)
        loss = F.cross_entropy(logits, codes.repeat_interleave(queries))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        episodes += 1
    return network.eval(), {"episodes": episodes, "seconds": time.perf_counter() - start}
