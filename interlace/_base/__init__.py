"""Foundations with no numerics: errors, float64 scopes, seeds, argument checks, progress."""
