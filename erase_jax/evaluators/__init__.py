"""Evaluation: ranking metrics, full-ranking evaluation per task family, and what the unlearning
protocol measures at each checkpoint (exposure of forgotten data, agreement with the retrain).
"""
