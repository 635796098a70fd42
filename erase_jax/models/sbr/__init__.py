"""Session-based models, one file each."""
