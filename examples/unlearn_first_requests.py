"""Unlearn the first five requests of the sensitive scenario "Horror" with SCIF; utility and exposure before and after."""
import erase_jax as ej

run = ej.train_model(["model=BPR", "dataset=synthetic", "data.synthetic={n_users: 300, n_items: 150}", "train.epochs=5"])
after = ej.unlearn_requests(run, "sensitive:Horror", "scif", n_requests=5, fraction=0.01)
before = ej.evaluate(after, params=run.params)  # the trained model, on the same data without the removed rows
for name, row in (("trained", before), ("scif", ej.evaluate(after))):
    print(f"{name:>8}: test recall@20 {row['test_recall@20']:.4f}, Horror items in the 5 users' top-20 "
          f"{row['avg_sensitive_per_user@20']:.2f}, forgotten items in their top-20 {row['forgotten_hit@20']:.3f}")
