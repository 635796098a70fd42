"""Train BPR on the embedded synthetic data set, evaluate it; with a folder argument, save and reload it."""
import sys

import erase_jax as ej

settings = ["model=BPR", "dataset=synthetic", "data.synthetic={n_users: 300, n_items: 150}", "train.epochs=5"]
out = sys.argv[1] if len(sys.argv) > 1 else None  # None: in memory
run = ej.train_model(settings, out=out)
run = ej.load(out) if out else run
test = ej.evaluate(run)["test"]
print(f"BPR, {run.result['epochs']} epochs: test recall@20 {test['recall@20']:.4f}, ndcg@20 {test['ndcg@20']:.4f}")
