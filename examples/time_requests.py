"""Time one request of SCIF, GIF and Kookmin: the cold call (compilation), the warm median and p90."""
import erase_jax as ej

run = ej.train_model(["model=BPR", "dataset=synthetic", "data.synthetic={n_users: 300, n_items: 150}", "train.epochs=5"])
for method in ("scif", "gif", "kookmin"):
    timing = ej.time_request(run, "sensitive:Horror", method, request=0, repeats=5, fraction=0.01)
    print(f"{method:>8}: compile {timing.compile_seconds:.3f} s, warm median {timing.median_seconds * 1e3:.2f} ms, "
          f"p90 {timing.p90_seconds * 1e3:.2f} ms")
