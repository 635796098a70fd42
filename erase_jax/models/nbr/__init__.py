"""Next-basket recommendation (NBR) models."""
