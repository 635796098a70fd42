"""Exact unlearning by sharded retraining (SISA, RecEraser).

One concern per module: `partition` (random and balanced shards of the training rows),
`shards` (stacked shard data and the vmapped epoch), `training` (the epoch loop with each
shard's early stopping), `rows` (what each part trains on once rows are removed),
`validation` (what early stopping validates on; which shards a removed validation row
reaches), `aggregators` (mean of scores, RecEraser's attention), `ensemble` (the shard
ensemble's settings, building and retraining), `sisa` (the SISA method: which parts a
request retrains) and `receraser` (SISA with RecEraser's partition and aggregator).
"""
