"""Few-shot image classification in one forward pass of a PFN trained on pen strokes
(:class:`~priorfit.priors.StrokePrior`, the paper's §7).

:class:`FewShotClassifier` takes a labelled support set and query images, brings every image to
the form of the prior's (:func:`priorfit.images.prepare_images`: grey levels in [0, 1], ink
bright, centred and scaled, resized to the model's canvas) and returns the class
probabilities of the queries, averaged over random relabellings of the classes (the network is
invariant to them only approximately).
"""

from __future__ import annotations

import numpy as np
import torch

from priorfit.images import prepare_images
from priorfit.model import PFN, load

DEFAULT_MODEL = "fewshot"  # the shipped stroke-prior PFN (configs/fewshot.toml)


class FewShotClassifier:
    """N-way K-shot classification of images with an ``"images"`` PFN (see the module).

    Parameters:
        model: a zoo name, a path or a loaded PFN of the ``"images"`` architecture.
        n_permutations: relabellings of the classes averaged over (1: the labels in sorted
            order only); all go through the network as one batch.
        random_state: seeds the relabellings.
    """

    def __init__(self, model: str | PFN = DEFAULT_MODEL, n_permutations: int = 4,
                 random_state: int = 0) -> None:
        self.model = model if isinstance(model, PFN) else load(model)
        if self.model.config.arch != "images":
            raise ValueError("FewShotClassifier needs a PFN of the 'images' architecture, got "
                             f"{self.model.config.arch!r}")
        if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) \
                or n_permutations < 1:
            raise ValueError(f"n_permutations must be an int >= 1, got {n_permutations!r}")
        self.n_permutations, self.random_state = n_permutations, random_state
        self.side = self.model.x_encoder.side

    @property
    def max_classes(self) -> int:
        """The most classes an episode may have."""
        return self.model.config.num_outputs

    def predict_proba(self, support_images, support_labels, query_images) -> np.ndarray:
        """Probabilities ``[n_query, n_classes]`` of the queries, columns in the order of
        ``np.unique(support_labels)``.

        Args:
            support_images: ``[n_support, H, W]`` images (bool, integer or float grey levels).
            support_labels: ``[n_support]`` labels of any type.
            query_images: ``[n_query, H, W]``, the same size as the support images.
        """
        support = prepare_images("support_images", support_images, self.side)[0]
        queries = prepare_images("query_images", query_images, self.side)[0]
        if np.shape(support_images)[1:] != np.shape(query_images)[1:]:
            raise ValueError(
                "support_images and query_images must have the same image size, got "
                f"{np.shape(support_images)[1:]} and {np.shape(query_images)[1:]}"
            )
        return self.predict_proba_prepared(support, support_labels, queries)

    @torch.inference_mode()
    def predict_proba_prepared(self, support: torch.Tensor, support_labels,
                               queries: torch.Tensor) -> np.ndarray:
        """As :meth:`predict_proba` for images already through
        :func:`~priorfit.images.prepare_images` at this model's side: ``support [n_support,
        side²]`` and ``queries [n_query, side²]`` float32."""
        labels = np.asarray(support_labels)
        if labels.shape != (len(support),):
            raise ValueError(f"support_labels must hold one label per support image "
                             f"({len(support)}), got shape {labels.shape}")
        classes, codes = np.unique(labels, return_inverse=True)
        if len(classes) > self.max_classes:
            raise ValueError(f"{len(classes)} classes, but this model takes at most "
                             f"{self.max_classes}")
        relabellings = self._relabellings(len(classes))  # [P, N]: class -> label seen
        y = torch.from_numpy(relabellings[:, codes]).float()  # [P, n_support]
        x_train = support[None].expand(len(relabellings), -1, -1)
        x_test = queries[None].expand(len(relabellings), -1, -1)
        model = self.model
        device = next(model.parameters()).device
        logits = model.predict_logits(model.condition(x_train.to(device), y.to(device)),
                                      x_test.to(device))[..., : max(2, len(classes))]
        probabilities = logits.double().softmax(-1).cpu()  # [P, n_query, labels]
        index = torch.from_numpy(relabellings)[:, None, :].expand(-1, len(queries), -1)
        per_class = probabilities.gather(2, index)  # [P, n_query, N] in class order
        return per_class.mean(0).numpy()

    def predict(self, support_images, support_labels, query_images) -> np.ndarray:
        """The most probable class of each query, ``[n_query]``, as the support labels' type."""
        probabilities = self.predict_proba(support_images, support_labels, query_images)
        return np.unique(np.asarray(support_labels))[probabilities.argmax(1)]

    def _relabellings(self, classes: int) -> np.ndarray:
        """``[P, classes]`` int64: the identity, then random permutations."""
        rng = np.random.default_rng(self.random_state)
        orders = [np.arange(classes)]
        orders += [rng.permutation(classes) for _ in range(self.n_permutations - 1)]
        return np.stack(orders).astype(np.int64)
