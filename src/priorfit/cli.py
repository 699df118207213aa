"""Command line: ``priorfit demo | train | predict | bench | curves | models | export |
serve``."""

from __future__ import annotations

import argparse
import os
import sys

# PyTorch's OpenMP threads spin while waiting; with another busy process on the machine that
# slows CPU training about tenfold. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="priorfit", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    demo = commands.add_parser("demo", help="condition a shipped GP PFN on a bundled dataset")
    demo.add_argument("--model", default="gp-1d")
    demo.add_argument("--out", default="results", help="folder for the plot")

    train = commands.add_parser("train", help="train a PFN from a TOML config")
    train.add_argument("config")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    train.add_argument("--out-dir", help="override [train] out_dir")
    train.add_argument("--steps", type=int, help="override [train] steps")
    train.add_argument("--time-limit", type=float, help="stop (resumably) after SECONDS")
    train.add_argument("--device", help="override [train] device")
    train.add_argument("--no-progress", action="store_true")

    predict = commands.add_parser("predict", help="posterior predictive for CSV data")
    predict.add_argument("model", help="shipped model name or .safetensors path")
    predict.add_argument("--train", required=True, help="CSV: feature columns, then the target")
    predict.add_argument("--test", required=True, help="CSV: feature columns")
    predict.add_argument("--level", type=float, default=0.95, help="central interval mass")

    bench = commands.add_parser("bench", help="run a benchmark; writes JSON and PNG plots")
    bench.add_argument("name")
    bench.add_argument("--quick", action="store_true", help="small version (< 2 min on CPU)")
    bench.add_argument("--out", default="results")
    bench.add_argument("--data", default="../shared/data")

    curves = commands.add_parser("curves", help="learning curves: extrapolate training runs")
    curves_commands = curves.add_subparsers(dest="curves_command", required=True)
    extrapolate = curves_commands.add_parser(
        "predict", help="predict later epochs of the runs in a CSV (a column per run, a row per "
        "epoch, empty after a run's last epoch)")
    extrapolate.add_argument("runs", help="CSV file with a header row of run names")
    extrapolate.add_argument("--horizon", type=int, help="epochs of a whole run (default: the "
                             "model's)")
    extrapolate.add_argument("--metric", default="accuracy",
                             help="accuracy, percent, error, error_percent or loss")
    extrapolate.add_argument("--model", default="curves")
    extrapolate.add_argument("--out", default="results", help="folder for the plot")

    commands.add_parser("models", help="list the shipped models")

    export = commands.add_parser("export", help="re-save a model, e.g. in half precision")
    export.add_argument("model", help="shipped model name or .safetensors path")
    export.add_argument("out", help="destination .safetensors file")
    export.add_argument("--half", action="store_true", help="store weights as float16")

    serve = commands.add_parser("serve", help="a local web page that shows a PFN's posterior "
                                "(the [app] extra)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"demo": _demo, "train": _train, "predict": _predict, "bench": _bench,
                "curves": _curves, "models": _models, "export": _export,
                "serve": _serve}[args.command](args)
    except (ValueError, TypeError) as error:
        print(f"priorfit {args.command}: error: {error}", file=sys.stderr)
        return 2


def _demo(args) -> int:
    from priorfit.demo import run_demo

    run_demo(args.model, args.out)
    return 0


def _train(args) -> int:
    import dataclasses

    import priorfit as pf

    prior, model_config, train_config = pf.load_config(args.config)
    overrides = {"out_dir": args.out_dir, "steps": args.steps, "time_limit_s": args.time_limit,
                 "device": args.device}
    train_config = dataclasses.replace(
        train_config, **{k: v for k, v in overrides.items() if v is not None}
    )
    model = pf.train(prior, train_config, model_config, resume=args.resume,
                     progress=not args.no_progress)
    print(f"trained {model.card['steps']} steps; model in {train_config.out_dir}/model.safetensors")
    print("validation:", model.card["validation"])
    return 0


def _predict(args) -> int:
    import numpy as np
    import torch

    import priorfit as pf

    model = pf.load(args.model)
    train = np.loadtxt(args.train, delimiter=",", ndmin=2, skiprows=_header_rows(args.train))
    test = np.loadtxt(args.test, delimiter=",", ndmin=2, skiprows=_header_rows(args.test))
    tail = (1 - args.level) / 2

    def summary(post):  # [4, chunk]: memory stays flat in the number of test rows
        return torch.stack([post.mean, post.stddev, post.icdf(tail), post.icdf(1 - tail)])

    with torch.inference_mode():
        table = model.condition_on(train[:, :-1], train[:, -1]).reduce(test, summary)
    print(f"mean,std,lower_{args.level:g},upper_{args.level:g}")
    for row in table.T.tolist():
        print(",".join(f"{v:.6g}" for v in row))
    return 0


def _curves(args) -> int:
    import csv
    from pathlib import Path

    import numpy as np

    from priorfit.curves import CurveExtrapolator
    from priorfit.plots import plot_curves

    with open(args.runs, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{args.runs} needs a header row of run names and at least one epoch")
    names, body = rows[0], rows[1:]
    values = np.full((len(body), len(names)), np.nan)
    for i, row in enumerate(body):
        for j, cell in enumerate(row[: len(names)]):
            if cell.strip():
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise ValueError(f"{args.runs}: run {names[j]!r}, epoch {i + 1}: {cell!r} "
                                     "is not a number") from None
    extrapolator = CurveExtrapolator(args.model, metric=args.metric, horizon=args.horizon)
    horizon = extrapolator.horizon
    epochs = np.arange(1, horizon + 1)
    predictive = extrapolator.predict(values.T, at=epochs)
    mean, lower, upper = (t.numpy() for t in (predictive.mean, predictive.icdf(0.05),
                                              predictive.icdf(0.95)))
    print(f"run,observed_epochs,last_value,mean_at_{horizon},q05_at_{horizon},q95_at_{horizon}")
    for j, name in enumerate(names):
        observed = values[:, j][~np.isnan(values[:, j])]
        last = f"{observed[-1]:.4g}" if len(observed) else ""
        print(f"{name},{len(observed)},{last},{mean[j, -1]:.4g},{lower[j, -1]:.4g},"
              f"{upper[j, -1]:.4g}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "curves.png"
    plot_curves(path, names, values.T, epochs, mean, lower, upper, args.metric)
    print(f"wrote {path}")
    return 0


def _header_rows(path: str) -> int:
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
    except ValueError:
        return 1
    return 0


def _bench(args) -> int:
    from priorfit.bench import run_bench

    run_bench(args.name, quick=args.quick, out=args.out, data=args.data)
    return 0


def _models(args) -> int:
    import priorfit as pf
    from priorfit import zoo

    for name in zoo.names():
        card = pf.load(name).card
        print(f"{name}: prior {card['prior']['class']}, {card['steps']} steps, "
              f"validation {card.get('validation', {})}")
    return 0


def _export(args) -> int:
    import priorfit as pf

    pf.load(args.model).save(args.out, half=args.half)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _serve(args) -> int:
    try:
        from priorfit.app.server import serve
    except ImportError as error:
        print(f"priorfit serve needs the [app] extra (pip install 'priorfit[app]'): {error}",
              file=sys.stderr)
        return 2
    serve(args.host, args.port)
    return 0
