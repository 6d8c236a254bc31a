"""The numeric core: JAX and numpy functions of arrays (no pandas, no formulas).

From theta and the cross-products of the rows to the profiled deviance, the estimates,
the L-BFGS fit and the batched refit engine. See the package map in ``interlace``.
"""
