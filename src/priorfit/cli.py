"""Command line: ``priorfit demo | train | predict | bench | models | export``."""

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

    commands.add_parser("models", help="list the shipped models")

    export = commands.add_parser("export", help="re-save a model, e.g. in half precision")
    export.add_argument("model", help="shipped model name or .safetensors path")
    export.add_argument("out", help="destination .safetensors file")
    export.add_argument("--half", action="store_true", help="store weights as float16")

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"demo": _demo, "train": _train, "predict": _predict, "bench": _bench,
                "models": _models, "export": _export}[args.command](args)
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
