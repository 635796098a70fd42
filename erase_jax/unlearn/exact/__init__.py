"""Exact unlearning by sharded retraining: shards, partitions, SISA and RecEraser."""
