"""Approximate unlearning methods, one file each (`base.py`: the interface and the registry)."""
