"""The `erase-jax` command line: train, evaluate, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration file (unknown keys are rejected)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set model=LightGCN --set dataset=ml-100k --set train.epochs=20",
    )
    parser.add_argument("--data-root", help="folder holding data sets by name (default: $ERASE_JAX_DATA, else ../shared/data)")


def _config(args):
    from erase_jax.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "data_root", None):
        overrides.append(f"data.data_root={args.data_root}")
    return load_config(args.config, overrides)


def _default_out(config) -> Path:
    dataset = Path(config.data.dataset).name
    return Path("runs") / f"{config.model}_{dataset}_seed{config.seed}"


def cmd_train(args) -> int:
    from erase_jax.run import train_run

    config = _config(args)
    out = Path(args.out) if args.out else _default_out(config)
    result = train_run(config, out, overwrite=args.overwrite, quiet=args.quiet)
    print(json.dumps({"run": str(out), "epochs": result["epochs"], "test": result["test"]}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from erase_jax.run import evaluate_run

    print(json.dumps(evaluate_run(args.run), indent=2))
    return 0


def cmd_demo(args) -> int:
    """Trains BPR on the embedded synthetic data set and prints its test metrics."""
    from erase_jax.config import load_config
    from erase_jax.run import train_run

    out = Path(args.out)
    rows = []
    for model in ("Pop", "BPR", "LightGCN"):
        config = load_config(None, [f"model={model}", "dataset=synthetic", f"seed={args.seed}"])
        result = train_run(config, out / model, overwrite=True, quiet=args.quiet)
        rows.append((model, result["epochs"], result["test"]))
    keys = ["recall@20", "ndcg@20", "hit@20", "mrr@20"]
    print(f"{'model':<10}{'epochs':>7}" + "".join(f"{k:>11}" for k in keys))
    for model, epochs, test in rows:
        print(f"{model:<10}{epochs:>7}" + "".join(f"{test[k]:>11.4f}" for k in keys))
    print(f"run folders: {out}/<model>/ (config.yaml, result.json, checkpoints/)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="erase-jax", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train a model and evaluate it (resumes an interrupted run)")
    _add_config_arguments(train)
    train.add_argument("--out", help="run folder (default runs/<model>_<dataset>_seed<seed>)")
    train.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="re-evaluate a saved run on its valid and test splits")
    evaluate.add_argument("run", help="run folder written by `erase-jax train`")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", parents=[common], help="the main job on the embedded synthetic data set (no download)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seed", type=int, default=2)
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    if args.quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"erase-jax: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
