"""The sequential unlearning protocol: requests, runs, retrains, result files and the report."""
