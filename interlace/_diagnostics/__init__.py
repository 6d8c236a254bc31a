"""Diagnostics of a fitted model: residuals, leverage, influence. See the package map in
``interlace``.
"""
