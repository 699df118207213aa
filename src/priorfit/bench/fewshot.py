"""``priorfit bench fewshot``: N-way K-shot classification of Omniglot's evaluation alphabets
(``omniglot/images_evaluation.npz``: 659 characters × 20 drawings, none seen in training).

Methods, all on the same images (:func:`priorfit.images.prepare_images`: centred, ink
bright, ``side × side`` with the PFN's side):

- ``pfn``: :class:`~priorfit.fewshot.FewShotClassifier` with the stroke-prior PFN
  ``model_name`` (no real image seen in training); ``pfn-omniglot`` the same with
  :data:`FINETUNED` where that model ships (fine-tuned on the background alphabets);
- ``nearest-neighbour`` and ``logistic-regression`` on pixels;
- ``protonet``: a prototypical network trained here on the background alphabets
  (``images_background.npz``) for as long as the fine-tuned PFN was fine-tuned (its card's
  training seconds), or :data:`PROTONET_SECONDS` without one.

Settings: 5-way 1-shot, 5-way 5-shot and 20-way 1-shot, :data:`EPISODES` episodes each (N
characters drawn from the whole evaluation set, K support and :data:`QUERIES` query drawings of
each, seeded per episode: every method sees the same episodes), accuracy ± standard error over
episodes and seconds per episode; then the 20 official 20-way 1-shot runs of Lake et al.
(``all_runs.zip``, one alphabet per run), accuracy ± standard error over the runs.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from priorfit import zoo
from priorfit.baselines.fewshot import logistic_regression, nearest_neighbour, train_protonet
from priorfit.bench import Result, mean_se
from priorfit.fewshot import FewShotClassifier
from priorfit.images import prepare_images
from priorfit.model import load

MODEL, FINETUNED = "fewshot", "fewshot-omniglot"
SETTINGS = ((5, 1), (5, 5), (20, 1))
EPISODES, QUERIES, SEED = 1000, 5, 20_240_507
PROTONET_SECONDS = 600.0
QUICK = {"episodes": 10, "protonet_seconds": 10.0, "official_runs": 2, "characters": 40}
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def run(quick: bool, data: Path, model_name: str = MODEL) -> Result:
    """``model_name``: the stroke-prior PFN (a zoo name or a path)."""
    folder = data / "omniglot"
    models = {"pfn": load(model_name)}
    if FINETUNED in zoo.names():
        models["pfn-omniglot"] = load(FINETUNED)
    side = round(models["pfn"].config.num_features ** 0.5)
    characters = QUICK["characters"] if quick else None
    evaluation, background = (
        _prepared(np.load(folder / f"images_{part}.npz")["images"][:characters], side)
        for part in ("evaluation", "background"))
    finetuned = models.get("pfn-omniglot")
    seconds = (QUICK["protonet_seconds"] if quick else
               float(finetuned.card["wall_time_s"]) if finetuned is not None
               else PROTONET_SECONDS)
    protonet, protonet_record = train_protonet(background, side, seconds)
    predictors: dict[str, Predictor] = {
        name: _pfn_predictor(FewShotClassifier(model)) for name, model in models.items()}
    predictors.update({"nearest-neighbour": nearest_neighbour,
                       "logistic-regression": logistic_regression,
                       "protonet": protonet.predict})
    episodes = QUICK["episodes"] if quick else EPISODES
    rows = []
    for ways, shots in SETTINGS:
        tasks = [_episode(evaluation, ways, shots, SEED + 1000 * ways + 100 * shots + e)
                 for e in range(episodes)]
        for method, predict in predictors.items():
            rows.append(_score(method, f"{ways}-way {shots}-shot", ways, shots, tasks, predict))
    official = _official_runs(folder / "all_runs.zip", side)[: QUICK["official_runs"] if quick
                                                              else None]
    for method, predict in predictors.items():
        rows.append(_score(method, "official 20-way 1-shot", 20, 1, official, predict))
    config = {"model": model_name, "models": {m: _identity(model) for m, model in models.items()},
              "episodes": episodes, "queries_per_class": QUERIES, "seed": SEED, "side": side,
              "protonet": protonet_record, "threads": torch.get_num_threads()}
    summary = {"examples": _examples(predictors, evaluation),
               "accuracy": {f"{r['method']} / {r['setting']}": r["accuracy"] for r in rows}}
    return Result(config, rows, summary, _table(rows))


def _prepared(images: np.ndarray, side: int) -> np.ndarray:
    """``[characters, drawings, H, W]`` -> ``[characters, drawings, side²]`` prepared."""
    flat = prepare_images("images", images.reshape(-1, *images.shape[2:]), side)[0]
    return flat.reshape(*images.shape[:2], side * side).numpy()


def _episode(images: np.ndarray, ways: int, shots: int, seed: int) -> tuple:
    """(support ``[ways·shots, P]``, labels, queries ``[ways·QUERIES, P]``, their labels)."""
    rng = np.random.default_rng(seed)
    characters = rng.choice(len(images), ways, replace=False)
    drawings = np.stack([rng.choice(images.shape[1], shots + QUERIES, replace=False)
                         for _ in range(ways)])
    chosen = images[characters[:, None], drawings]  # [ways, shots + QUERIES, P]
    labels = np.arange(ways)
    return (chosen[:, :shots].reshape(ways * shots, -1), labels.repeat(shots),
            chosen[:, shots:].reshape(ways * QUERIES, -1), labels.repeat(QUERIES))


def _official_runs(path: Path, side: int) -> list[tuple]:
    """The 20 runs of ``all_runs.zip`` as episodes (20 training images, one per class; 20
    test images with their classes from ``class_labels.txt``)."""
    from PIL import Image

    archive = zipfile.ZipFile(path)

    def image(name: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("L"))

    runs = []
    for run in sorted({name.split("/")[0] for name in archive.namelist() if "/" in name}):
        pairs = [line.split() for line in archive.read(f"{run}/class_labels.txt").decode()
                 .splitlines() if line.strip()]
        training = sorted({train for _, train in pairs})
        support = prepare_images("support", np.stack([image(t) for t in training]), side)[0]
        queries = prepare_images("queries", np.stack([image(q) for q, _ in pairs]), side)[0]
        labels = np.array([training.index(t) for _, t in pairs])
        runs.append((support.numpy(), np.arange(len(training)), queries.numpy(), labels))
    return runs


def _pfn_predictor(classifier: FewShotClassifier) -> Predictor:
    """The classifier on the prepared images (``[n, side²]``) every method gets."""

    def predict(support, labels, queries):
        probabilities = classifier.predict_proba_prepared(torch.from_numpy(support), labels,
                                                          torch.from_numpy(queries))
        return np.unique(labels)[probabilities.argmax(1)]

    return predict


def _score(method: str, setting: str, ways: int, shots: int, tasks: list[tuple],
           predict: Predictor) -> dict:
    accuracies, seconds = [], []
    for support, labels, queries, truth in tasks:
        start = time.perf_counter()
        predicted = predict(support, labels, queries)
        seconds.append(time.perf_counter() - start)
        accuracies.append(float(np.mean(predicted == truth)))
    accuracy, se = mean_se(accuracies)
    return {"method": method, "setting": setting, "n": ways * shots, "n_way": ways, "k_shot": shots,
            "episodes": len(tasks), "accuracy": accuracy, "accuracy_se": se,
            "seconds_per_episode": float(np.median(seconds))}


def _identity(model) -> dict:
    card = model.card
    return {"datasets_seen": card.get("datasets_seen"), "wall_time_s": card.get("wall_time_s"),
            "val_nll": card.get("validation", {}).get("val_nll")}


def _examples(predictors: dict[str, Predictor], images: np.ndarray) -> dict:
    """Two 5-way 1-shot episodes and every method's predictions, for the plot."""
    examples = []
    for e in range(2):
        support, labels, queries, truth = _episode(images, 5, 1, SEED - 1 - e)
        examples.append({"support": support.tolist(), "queries": queries[::QUERIES].tolist(),
                         "truth": truth[::QUERIES].tolist(),
                         "predicted": {m: p(support, labels, queries)[::QUERIES].tolist()
                                       for m, p in predictors.items()}})
    return examples


def _table(rows: list[dict]) -> str:
    lines = [f"{'method':<20} {'setting':<24} {'accuracy':>16} {'s/episode':>10}"]
    for r in rows:
        lines.append(f"{r['method']:<20} {r['setting']:<24} "
                     f"{r['accuracy']:>8.3f} ± {r['accuracy_se']:.3f} "
                     f"{r['seconds_per_episode']:>10.4f}")
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    side = result.config["side"]
    methods = list(result.summary["examples"][0]["predicted"])
    paths = []
    for index, example in enumerate(result.summary["examples"]):
        fig, axes = plt.subplots(2, 5, figsize=(10, 5.6))
        for c in range(5):
            axes[0, c].imshow(np.reshape(example["support"][c], (side, side)), cmap="gray")
            axes[0, c].set_title(f"class {c}", fontsize=9)
            axes[1, c].imshow(np.reshape(example["queries"][c], (side, side)), cmap="gray")
            guesses = "\n".join(f"{m}: {example['predicted'][m][c]}" for m in methods)
            axes[1, c].set_title(f"true {example['truth'][c]}\n{guesses}", fontsize=7)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle("5-way 1-shot: support (top), a query of each class (bottom)")
        fig.tight_layout()
        path = out / f"fewshot_episode_{index}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
