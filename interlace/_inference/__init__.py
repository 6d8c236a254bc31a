"""Inference on a fitted model (a ``ModelFit``): bootstraps, profiles, Satterthwaite and
likelihood-ratio tests. See the package map in ``interlace``.
"""
