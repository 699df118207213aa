"""``priorfit bench tabular``: PFNClassifier against classical classifiers on the cc18 tables.

The protocol of the field (TabPFN v1): each of the 29 tables of ``DATA/cc18`` (see its README)
is split 5 times at random, stratified, into up to 1000 training rows (half the table when it
is smaller) and up to 1000 test rows (the rest). Setting ``"tiny-30"`` (the paper's §6 regime,
where the prior matters most) fits on 30 of those training rows and scores the same test rows.
Every method sees the same encoded table (:class:`~priorfit.tabular.columns.TableEncoder`
fitted on the training rows: category codes, NaN for missing values) and its own preprocessing
(:mod:`priorfit.baselines.tables`).

Methods: ``pfn`` (:class:`priorfit.PFNClassifier` with its defaults on the shipped ``tabular``
model), the default baselines of :data:`~priorfit.baselines.tables.DEFAULT_BASELINES`, and,
unless ``tuned_seconds = 0``, XGBoost, LightGBM and CatBoost tuned with Optuna for
``tuned_seconds`` per dataset and split (3-fold CV log loss on the training rows).

Scores of a full run are kept per method, table, split and setting in the score ledger
:data:`SCORE_CACHE` (the PFN's keyed by a digest of its weights), so an interrupted run resumes
and methods can be scored at different times. The ledger is kept in git: the full protocol
takes about 16 CPU-hours (the tuned boosting 14.5 of them), more than one session of a
two-core machine, so its scores are carried from checkout to checkout.
Scores per test set: ROC AUC (one-vs-one macro for more than two classes), accuracy, log
loss, expected calibration error (top-label confidence, 15 equal-width bins), fit + predict
seconds.
The summary reports, for the 18 numerical tables (``tabpfn_numeric18``) and for all 29, mean
AUC with its standard error over tables, mean rank, and the means of the other scores, plus the
seconds of fit + predict at 1000 training x 1000 test rows x 100 features on one core, and, on
held-out prior tables, the evidence behind the classifier's defaults (:func:`prior_checks`).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from priorfit.bench import Result, cached, mean_se

SPLITS = 5
MAX_TRAIN, MAX_TEST, TINY_TRAIN = 1000, 1000, 30
SEED = 20_260_001
ECE_BINS = 15
TUNED_SECONDS = 60.0
SCORE_CACHE = Path("benchmarks/tabular-scores.jsonl")  # the score ledger, kept in git
GROUPS = ("numeric18", "all29")
METRICS = ("roc_auc", "accuracy", "log_loss", "ece", "seconds_per_task")
SPEED_SHAPE = (1000, 1000, 100)  # training rows, test rows, features


def run(quick: bool, data: Path, model_name: str = "tabular",
        tuned_seconds: float = TUNED_SECONDS, methods: tuple[str, ...] | None = None,
        splits: int = SPLITS) -> Result:
    """The protocol of the module docstring; ``methods`` (default: all; ``pfn`` always first)
    and ``splits`` narrow a run, and the JSON's config says what ran."""
    from priorfit.baselines.tables import DEFAULT_BASELINES, TUNABLE

    folder = data / "cc18"
    if not (folder / "manifest.json").exists():
        raise ValueError(f"no cc18 tables in {folder} (pass --data DIR)")
    manifest = json.loads((folder / "manifest.json").read_text())
    if quick:
        manifest = sorted(manifest, key=lambda e: e["n_rows"] * e["n_features"])[:2]
        methods, splits = methods or ("pfn", "logistic", "random_forest"), 1
    elif methods is None:
        tuned = TUNABLE if tuned_seconds > 0 else ()
        methods = ("pfn", *DEFAULT_BASELINES, *(f"{name}_tuned" for name in tuned))
    methods = ("pfn", *(m for m in methods if m != "pfn"))
    tuned = [m for m in methods if m.endswith("_tuned")]
    cache = None if quick else SCORE_CACHE
    config = {"model": model_name, "datasets": [e["name"] for e in manifest], "splits": splits,
              "max_train": MAX_TRAIN, "max_test": MAX_TEST, "tiny_train": TINY_TRAIN,
              "methods": list(methods), "tuned_seconds": tuned_seconds if tuned else 0}
    rows = [row for entry in manifest
            for row in table_rows(folder, entry, methods, splits, model_name, tuned_seconds,
                                  cache)]
    summary = summarise(rows, methods)
    if not quick:
        summary["speed"] = speed(model_name)
        summary["prior_checks"] = prior_checks(model_name)
    return Result(config, rows, summary, table_of(summary))


def table_rows(folder: Path, entry: dict, methods, splits: int, model_name: str,
               tuned_seconds: float, cache: Path | None) -> list[dict]:
    """One row per method and setting of the table ``entry`` of the manifest: each score's
    mean and standard error over the splits."""
    X, y = load_table(folder / entry["file"])
    model_id = _model_id(model_name) if "pfn" in methods else None
    per_setting: dict[tuple[str, str], list[dict]] = {}
    for split in range(splits):
        for setting, train, test in split_rows(y, split):
            for method in methods:
                identity = {"method": method, "dataset": entry["name"], "split": split,
                            "setting": setting, "seed": SEED,
                            **({"model": model_id} if method == "pfn" else {}),
                            **({"tuned_seconds": tuned_seconds}
                               if method.endswith("_tuned") else {})}
                scores = cached(cache, identity, partial(score, method, model_name, X, y, train,
                                                         test, split, tuned_seconds))
                per_setting.setdefault((setting, method), []).append(scores)
    rows = []
    for (setting, method), scores in per_setting.items():
        row = {"method": method, "dataset": entry["name"], "setting": setting,
               "numeric18": entry["tabpfn_numeric18"], "n": scores[0]["n"],
               "features": X.shape[1], "classes": int(y.max()) + 1}
        for metric in METRICS:
            row[metric], row[metric + "_se"] = mean_se([s[metric] for s in scores])
        rows.append(row)
    return rows


def _model_id(model_name: str) -> str:
    """A digest of the PFN's file: cached PFN scores belong to these very weights."""
    from priorfit import zoo

    path = Path(model_name) if Path(model_name).is_file() else zoo.path(model_name)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_table(path: Path) -> tuple[object, np.ndarray]:
    """A cc18 CSV -> (its feature columns as a DataFrame, labels ``[n]`` as codes 0..K-1)."""
    import pandas as pd

    frame = pd.read_csv(path)
    _, y = np.unique(frame.pop("target").astype(str).to_numpy(), return_inverse=True)
    return frame, y


def split_rows(y: np.ndarray, split: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(setting, train rows, test rows)`` of split ``split``: stratified where every class
    has two rows; the tiny training set is drawn from the full one and holds every class it
    can."""
    from sklearn.model_selection import train_test_split

    from priorfit.tabular.classifier import stratified_subset

    rng = np.random.default_rng(SEED + split)
    n = len(y)
    stratify = y if np.bincount(y).min() >= 2 else None
    train, rest = train_test_split(np.arange(n), train_size=min(MAX_TRAIN, n // 2),
                                   stratify=stratify, random_state=SEED + split)
    test = rng.permutation(rest)[:MAX_TEST]
    tiny = np.sort(train[stratified_subset(y[train], TINY_TRAIN, rng)])
    return [("full", np.sort(train), np.sort(test)), ("tiny-30", tiny, np.sort(test))]


def score(method: str, model_name: str, X, y: np.ndarray, train: np.ndarray, test: np.ndarray,
          split: int, tuned_seconds: float) -> dict:
    """Fit ``method`` on the training rows, score it on the test rows."""
    from priorfit.tabular.columns import TableEncoder

    classes = int(y.max()) + 1
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence, subsampling and ensembling warnings
        if method == "pfn":
            proba = _pfn(model_name, X.iloc[train], y[train], X.iloc[test], classes)
        else:
            encoder = TableEncoder().fit(X.iloc[train])
            X_train, X_test = encoder.transform(X.iloc[train]), encoder.transform(X.iloc[test])
            proba = _baseline(method, X_train, y[train], X_test, encoder.categorical,
                              classes, split, tuned_seconds)
    seconds = time.perf_counter() - start
    return {"n": len(train), **classification_scores(y[test], proba, classes),
            "seconds_per_task": seconds}


def _pfn(model_name: str, X_train, y_train, X_test, classes: int) -> np.ndarray:
    from priorfit.tabular import PFNClassifier

    clf = PFNClassifier(model_name).fit(X_train, y_train)
    proba = np.zeros((len(X_test), classes))
    proba[:, clf.classes_] = clf.predict_proba(X_test)
    return proba


def _baseline(method, X_train, y_train, X_test, categorical, classes, split, tuned_seconds):
    from priorfit.baselines.tables import fit_tuned, make_baseline

    if method.endswith("_tuned"):
        model, _ = fit_tuned(method.removesuffix("_tuned"), X_train, y_train, categorical,
                             seed=split, seconds=tuned_seconds)
    else:
        model = make_baseline(method, categorical, seed=split, n_classes=classes)
        model.fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    return np.pad(proba, ((0, 0), (0, classes - proba.shape[1])))  # classes absent in training


def classification_scores(y: np.ndarray, proba: np.ndarray, classes: int) -> dict:
    """ROC AUC, accuracy, log loss and ECE of probabilities ``proba [m, classes]``.

    AUC: binary, or one-vs-one macro over the classes present in ``y`` (renormalised)."""
    from sklearn.metrics import log_loss, roc_auc_score

    proba = np.clip(proba, 0.0, 1.0)
    proba = proba / proba.sum(1, keepdims=True)
    present = np.unique(y)
    if classes == 2:
        auc = roc_auc_score(y, proba[:, 1])
    else:
        sub = proba[:, present] / proba[:, present].sum(1, keepdims=True)
        auc = roc_auc_score(y, sub, multi_class="ovo", labels=present)
    return {"roc_auc": float(auc), "accuracy": float((proba.argmax(1) == y).mean()),
            "log_loss": float(log_loss(y, proba, labels=np.arange(classes))),
            "ece": expected_calibration_error(y, proba)}


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: ``sum_b |B_b|/m * |accuracy(B_b) - confidence(B_b)|`` over ``bins``
    equal-width confidence bins."""
    confidence, correct = proba.max(1), proba.argmax(1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def summarise(rows: list[dict], methods: tuple[str, ...]) -> dict:
    """Per group of tables and setting: mean scores (AUC with standard error over tables) and
    mean AUC rank per method; the targets of the issue."""
    summary: dict = {}
    for setting in sorted({r["setting"] for r in rows}):
        for group in GROUPS:
            chosen = [r for r in rows if r["setting"] == setting
                      and (group == "all29" or r["numeric18"])]
            datasets = sorted({r["dataset"] for r in chosen})
            if not datasets:
                continue
            by = {(r["dataset"], r["method"]): r for r in chosen}
            auc = np.array([[by[d, m]["roc_auc"] for m in methods] for d in datasets])
            ranks = rankdata(-auc, axis=1).mean(0)
            entry = {"datasets": len(datasets), "methods": {}}
            for j, method in enumerate(methods):
                scores = {metric: mean_se([by[d, method][metric] for d in datasets])
                          for metric in METRICS}
                entry["methods"][method] = {**scores, "auc_rank": float(ranks[j])}
            summary[f"{setting}/{group}"] = entry
    summary["targets"] = _targets(summary, methods)
    return summary


def _targets(summary: dict, methods: tuple[str, ...]) -> dict:
    targets = {}
    defaults = [m for m in methods if m != "pfn" and not m.endswith("_tuned")]
    for key, rivals in (("full/numeric18", defaults),
                        ("full/all29", [m for m in ("random_forest", "hist_gradient_boosting")
                                        if m in methods])):
        if key in summary and rivals:
            auc = {m: summary[key]["methods"][m]["roc_auc"][0] for m in ("pfn", *rivals)}
            targets[f"{key}: pfn AUC above {', '.join(rivals)}"] = all(
                auc["pfn"] > auc[m] for m in rivals)
    if "full/all29" in summary:
        entry = summary["full/all29"]["methods"]
        for metric in ("ece", "log_loss"):
            best = min(entry, key=lambda m: entry[m][metric][0])
            targets[f"full/all29: lowest {metric} (best: {best})"] = best == "pfn"
    return targets


def prior_checks(model_name: str, tables: int = 32, rows: int = 500,
                 test_rows: int = 128) -> dict:
    """The evidence behind PFNClassifier's defaults, on held-out prior tables (a seed training
    never used), ``rows`` training and ``test_rows`` test rows each:

    - ``rows_beyond_training``: every member conditioning on all rows against each on a
      stratified subset of the model's ``max_train`` (``None`` when the model was trained on
      at least ``rows`` training rows: there is nothing beyond its training to check);
    - ``ensemble``: test NLL with 1, 4 and 8 members (on ``min(max_train, rows)`` training
      rows).
    """
    import torch

    from priorfit.model import load
    from priorfit.priors import prior_from_config
    from priorfit.tabular import PFNClassifier

    model = load(model_name)
    prior = prior_from_config(model.card["prior"])
    trained = model.card["train"]["max_train"]
    beyond, conditioned = trained < rows, min(trained, rows)
    batch = prior.sample(tables, rows + test_rows, generator=torch.Generator().manual_seed(SEED))
    arms = {f"members_{k}": (conditioned, {"n_estimators": k}) for k in (1, 4, 8)}
    if beyond:
        arms |= {"all_rows": (rows, {"max_rows": rows}), "subsets": (rows, {"max_rows": trained})}
    nll: dict[str, list[float]] = {arm: [] for arm in arms}
    for t in range(tables):
        x, y = batch.x[t].double().numpy(), batch.y[t].long().numpy()
        test_x, test_y = x[rows:], y[rows:]
        if len(np.unique(y[:conditioned])) < 2:
            continue
        for arm, (size, kwargs) in arms.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = PFNClassifier(model, **kwargs).fit(x[:size], y[:size])
                proba = np.zeros((test_rows, int(y.max()) + 1))
                proba[:, clf.classes_] = clf.predict_proba(test_x)
            nll[arm].append(classification_scores(test_y, proba, proba.shape[1])["log_loss"])
    return {
        "tables": len(nll["members_1"]), "train_rows": rows, "trained_max_train": trained,
        "rows_beyond_training": None if not beyond else {
            "nll_all_rows": mean_se(nll["all_rows"]), "nll_subsets": mean_se(nll["subsets"]),
            "paired_difference": mean_se(np.array(nll["all_rows"]) - np.array(nll["subsets"])),
        },
        "ensemble": {k: mean_se(nll[f"members_{k}"]) for k in (1, 4, 8)},
    }


def speed(model_name: str) -> dict:
    """Fit + predict seconds of one member and of the default ensemble at
    :data:`SPEED_SHAPE` on random data, in float32 and bfloat16 (the threads torch is given)."""
    import torch

    from priorfit.tabular import PFNClassifier

    n, m, features = SPEED_SHAPE
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n + m, features))
    y = (X[:, :3].sum(1) > 0).astype(int)
    result = {"shape": list(SPEED_SHAPE), "threads": torch.get_num_threads()}
    for precision in ("float32", "bfloat16"):
        for name, kwargs in (("one_member_s", {"n_estimators": 1}), ("default_ensemble_s", {})):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                clf = PFNClassifier(model_name, precision=precision, **kwargs)
                clf.fit(X[:n], y[:n]).predict_proba(X[n:])
                result[f"{precision}_{name}"] = time.perf_counter() - start
    return result


def table_of(summary: dict) -> str:
    lines = []
    for key, entry in summary.items():
        if "/" not in key:
            continue
        lines.append(f"{key} ({entry['datasets']} tables)")
        lines.append(f"  {'method':<24}{'ROC AUC':>16}{'rank':>6}{'acc':>7}{'logloss':>8}"
                     f"{'ECE':>7}{'s/split':>9}")
        for method, e in sorted(entry["methods"].items(), key=lambda kv: -kv[1]["roc_auc"][0]):
            lines.append(
                f"  {method:<24}{e['roc_auc'][0]:>9.4f} ± {e['roc_auc'][1]:.3f}"
                f"{e['auc_rank']:>6.2f}{e['accuracy'][0]:>7.3f}{e['log_loss'][0]:>8.3f}"
                f"{e['ece'][0]:>7.3f}{e['seconds_per_task'][0]:>9.2f}"
            )
    if "prior_checks" in summary:
        r = summary["prior_checks"]
        beyond = r["rows_beyond_training"]
        rows = (f"the model trained on up to {r['trained_max_train']}" if beyond is None else
                f"all rows {beyond['nll_all_rows'][0]:.4f}, {r['trained_max_train']}-row "
                f"subsets {beyond['nll_subsets'][0]:.4f} (paired "
                f"{beyond['paired_difference'][0]:+.4f} ± {beyond['paired_difference'][1]:.4f})")
        lines.append(
            f"held-out prior tables ({r['tables']}), {r['train_rows']} training rows: test NLL, "
            f"{rows}; " + ", ".join(f"{k} members {v[0]:.4f}" for k, v in r["ensemble"].items()))
    if "speed" in summary:
        s = summary["speed"]
        for precision in ("float32", "bfloat16"):
            lines.append(f"fit + predict at {s['shape']}, {precision}: one member "
                         f"{s[precision + '_one_member_s']:.2f} s, default ensemble "
                         f"{s[precision + '_default_ensemble_s']:.2f} s ({s['threads']} thread)")
    lines += [f"target {name}: {'met' if met else 'missed'}"
              for name, met in summary["targets"].items()]
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    """Per table, the PFN's ROC AUC against each baseline's (full training sets)."""
    from priorfit.plots import pyplot

    plt = pyplot()
    rows = [r for r in result.rows if r["setting"] == "full"]
    by = {(r["dataset"], r["method"]): r for r in rows}
    datasets = sorted({r["dataset"] for r in rows})
    pfn = np.array([by[d, "pfn"]["roc_auc"] for d in datasets])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for method in result.config["methods"][1:]:
        ax.scatter(pfn, [by[d, method]["roc_auc"] for d in datasets], s=12, label=method)
    low = min(0.5, float(pfn.min()))
    ax.plot([low, 1], [low, 1], "k--", lw=1)
    ax.set_xlabel("PFN ROC AUC")
    ax.set_ylabel("baseline ROC AUC")
    ax.set_title("below the diagonal: the PFN is better")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "tabular_auc.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
