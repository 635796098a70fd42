"""Next-basket models on Ta-Feng, the original ERASE split: trained, evaluated, recorded side by side.

    python experiments/nbr_tafeng.py [--models PTopFreq GPTopFreq GTopFreq DNNTSP Sets2Sets]
        [--set key=value ...] [--variant NAME] [--out runs/experiments/nbr_tafeng]

Each model is trained with `erase-jax train` and its Ta-Feng config (`experiments/configs/
<model>_tafeng.yaml`; the frequency baselines take DNNTSP's split and evaluation settings),
into `<out>/<model>_tafeng` (a finished run is not repeated, an interrupted one resumes). The
split: users with >= 4 baskets, train predicts basket n-3, valid n-2, test n-1 (next-basket
spec 1.3); full ranking with repeat items allowed; the repeat / explore split of recall.

`--variant NAME` (with its `--set` overrides, e.g. `--variant lazy_adam --set
model_params.history_optimizer=lazy_adam`) trains into `<out>/<model>_<NAME>_tafeng` and records
the run as "<model> (<NAME>)", next to the model's own run.

Writes `experiments/results/nbr_tafeng.json`: per model its provenance (config, overrides,
command, commit, machine), valid and test metrics, epochs, best epoch and seconds per epoch.
`--partial` records a run that is still training (or was stopped) at its best epoch so far,
marked as such in `stopped`, without continuing it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

MODELS = ("PTopFreq", "GPTopFreq", "GTopFreq", "DNNTSP", "Sets2Sets")
BASELINE_CONFIG = "dnntsp_tafeng.yaml"  # the frequency baselines: DNNTSP's split and evaluation
RESULTS = REPO_ROOT / "experiments" / "results" / "nbr_tafeng.json"


def config_of(model: str) -> Path:
    own = REPO_ROOT / "experiments" / "configs" / f"{model.lower()}_tafeng.yaml"
    return own if own.exists() else REPO_ROOT / "experiments" / "configs" / BASELINE_CONFIG


def train(model: str, out: Path, overrides: list[str], partial: bool = False,
          variant: str | None = None) -> tuple[dict, float | str]:
    """(result.json of the run, wall seconds or "done earlier"); with `partial`, an unfinished run
    is not continued but evaluated at its best epoch so far (`partial_result`)."""
    run = out / (f"{model.lower()}_{variant}_tafeng" if variant else f"{model.lower()}_tafeng")
    if (run / "result.json").exists():
        return json.loads((run / "result.json").read_text()), "done earlier"
    if partial and (run / "config.yaml").exists():
        return partial_result(run), "in progress"
    args = ["train", "--config", str(config_of(model)), "--set", f"model={model}", "--out", str(run), "--quiet"]
    args += [part for override in overrides for part in ("--set", override)]
    print(f"$ erase-jax {' '.join(args)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "erase_jax.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"training {model} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads((run / "result.json").read_text()), time.perf_counter() - started


def partial_result(run: Path) -> dict:
    """A run still training, as result.json would hold it, at the best epoch of its latest
    checkpoint; "stopped" says it is unfinished and after how many epochs."""
    sys.path.insert(0, str(REPO_ROOT))
    from erase_jax.checkpoint import Checkpointer
    from erase_jax.run import CHECKPOINT_DIR, build_experiment, evaluate_params, read_run_config, restore_best_params

    experiment = build_experiment(read_run_config(run))
    checkpointer = Checkpointer(run / CHECKPOINT_DIR)
    step = checkpointer.latest_step()
    checkpointer.close()
    record = json.loads((run / CHECKPOINT_DIR / str(step) / "record" / "metadata").read_text())
    params = restore_best_params(run, experiment)
    started = time.perf_counter()
    test = evaluate_params(experiment, params, "test")
    eval_seconds = time.perf_counter() - started
    history = record["valid"]
    metric = experiment.config.train.valid_metric
    best = max(history, key=lambda entry: (entry[metric], entry["epoch"])) if history else {}  # ties: the later, as fit
    return {
        "config": read_config_dict(run), "valid": {k: v for k, v in best.items() if k != "epoch"},
        "test": test, "epochs": len(record["epoch_loss"]), "best_epoch": best.get("epoch", -1),
        "stopped": f"in progress: evaluated after epoch {len(record['epoch_loss'])} of at most {experiment.config.train.epochs}",
        "timing": {"train_seconds_per_epoch": record["epoch_seconds"], "compile_seconds": record["compile_seconds"],
                   "eval_seconds": eval_seconds},
        "data": experiment.data_summary,
    }


def read_config_dict(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every model trained now (e.g. train.epochs=10)")
    parser.add_argument("--out", type=Path, default=Path("runs/experiments/nbr_tafeng"))
    parser.add_argument("--partial", action="store_true",
                        help="record an unfinished run at its best epoch so far instead of continuing it")
    parser.add_argument("--variant", default=None, help="a name for this run's overrides: its own folder and entry")
    args = parser.parse_args()
    if args.variant is not None and not args.variant.replace("_", "").replace("-", "").isalnum():
        parser.error(f"--variant {args.variant!r}: letters, digits, '_' and '-' only")
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"models": {}}
    for model in args.models:
        result, seconds = train(model, args.out, args.overrides, args.partial, args.variant)
        config = config_of(model).relative_to(REPO_ROOT)
        entry = f"{model} ({args.variant})" if args.variant else model
        record["models"][entry] = {
            "provenance": provenance(config={"config": str(config), "overrides": [f"model={model}", *args.overrides],
                                             "resolved": result["config"]}),
            "valid": result["valid"], "test": result["test"], "epochs": result["epochs"],
            "best_epoch": result["best_epoch"], "stopped": result["stopped"],
            "train_seconds_per_epoch": result["timing"]["train_seconds_per_epoch"],
            "compile_seconds": result["timing"]["compile_seconds"], "eval_seconds": result["timing"]["eval_seconds"],
            "wall_seconds": seconds, "load_average_at_end": os.getloadavg(), "data": result["data"],
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        temporary = RESULTS.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2))
        os.replace(temporary, RESULTS)
        print(f"{entry}: test {json.dumps({k: round(v, 4) for k, v in result['test'].items()})}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
