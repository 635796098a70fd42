"""Collaborative-filtering models, one file each."""
