"""Device-side construction of whole epochs of training batches, one module per task family."""
