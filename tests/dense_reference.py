"""A deliberately naive dense implementation of the same model, for cross-checking.

Builds ``Z`` (n x q) and ``V = Z Lambda Lambda' Z' + I`` (n x n) explicitly and uses the
textbook formulas (Harville 1977; Bates et al. 2015, eq. 34 for the profiled forms):
feasible only for small n, which is exactly what tests need.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def _gls(V, X, y, reml):
    """Generalised least squares with relative covariance ``V``: the profiled deviance
    ``nu (1 + log(2 pi sigma^2)) + log|V| [+ log|X'V^-1 X|]``, beta, sigma^2, vcov,
    ``V^-1`` and the residual ``y - X beta``."""
    n, p = X.shape
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    nu = n - p if reml else n
    sigma2 = r @ Vi @ r / nu
    dev = nu * (1 + np.log(2 * np.pi * sigma2)) + np.linalg.slogdet(V)[1]
    if reml:
        dev += np.linalg.slogdet(XtViX)[1]
    return dev, beta, sigma2, sigma2 * np.linalg.inv(XtViX), Vi, r


def dense_fit_at(theta, codes, nlevels, X, y, reml):
    """Profiled deviance, beta, sigma^2, vcov(beta) and BLUPs at ``theta`` (user order)."""
    n = X.shape[0]
    Z = np.concatenate([np.eye(q)[c] for c, q in zip(codes, nlevels)], axis=1)
    lam = np.concatenate([np.full(q, t) for q, t in zip(nlevels, theta)])
    ZL = Z * lam
    dev, beta, sigma2, fe_cov, Vi, r = _gls(ZL @ ZL.T + np.eye(n), X, y, reml)
    blups = lam * (ZL.T @ Vi @ r)
    split = np.split(blups, np.cumsum(nlevels)[:-1])
    return {"deviance": dev, "beta": beta, "sigma2": sigma2, "fe_cov": fe_cov, "blups": split}


def dense_optimum(codes, nlevels, X, y, reml):
    """Minimise the dense deviance over theta >= 0 with scipy's L-BFGS-B (numeric
    gradients), from several starts; returns the best :func:`dense_fit_at` plus theta."""
    best = None
    for start in (0.5, 1.0, 2.0):
        res = minimize(
            lambda t: dense_fit_at(t, codes, nlevels, X, y, reml)["deviance"],
            np.full(len(codes), start),
            method="L-BFGS-B",
            bounds=[(0, None)] * len(codes),
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
        )
        if best is None or res.fun < best.fun:
            best = res
    out = dense_fit_at(best.x, codes, nlevels, X, y, reml)
    out["theta"] = best.x
    return out


def dense_terms_deviance(theta, codes, nlevels, term_X, X, y, reml):
    """Profiled deviance for general random terms: term ``r`` has columns ``term_X[r]``
    (``n x k_r``) and a lower-triangular factor ``T_r`` whose lower triangle, column by
    column, is its slice of ``theta``; ``V = sum_r Z_r (I (x) T_r T_r') Z_r' + I``."""
    n = X.shape[0]
    V = np.eye(n)
    start, parts = 0, []
    for c, q, Xr in zip(codes, nlevels, term_X):
        k = Xr.shape[1]
        T = np.zeros((k, k))
        rows, cols = np.tril_indices(k)
        order = np.lexsort((rows, cols))  # column-major lower triangle
        T[rows[order], cols[order]] = theta[start : start + len(rows)]
        start += len(rows)
        Zr = np.concatenate([np.eye(q)[c] * Xr[:, [j]] for j in range(k)], axis=1)
        # columns j * q + l; the level-l block couples columns l, q + l, ...
        G = np.kron(T @ T.T, np.eye(q))
        V += Zr @ G @ Zr.T
        parts.append((Zr, G, q, k))
    dev, beta, sigma2, _, Vi, r = _gls(V, X, y, reml)
    # BLUPs b_r = G_r Z_r' V^-1 r, reshaped to (levels, k)
    blups = [(G @ Zr.T @ Vi @ r).reshape(k, q).T for Zr, G, q, k in parts]
    return dev, beta, sigma2, blups


def dense_diagnostics(result):
    """Textbook dense diagnostics of a fitted ``CrossedLMEResult`` (any random terms):
    the conditional hat diagonal ``diag([Z Lambda, X] M^-1 [Z Lambda, X]')``, the
    diagonal of ``H1 = X (X'V^-1 X)^-1 X'V^-1``, the marginal residual variances
    ``sigma^2 diag(V - X (X'V^-1 X)^-1 X')`` and the BLUPs' conditional covariance
    ``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'`` (diagonal blocks per term)."""
    from scipy.linalg import block_diag

    d = result.design
    n = d.nobs
    Zs, Ts, start = [], [], 0
    theta = result.theta.to_numpy()
    for t in d.terms:
        q, k = len(t.levels), t.k
        Z = np.zeros((n, q * k))
        for j in range(k):
            Z[np.arange(n), t.codes * k + j] = t.X[:, j]
        Zs.append(Z)
        m = k * (k + 1) // 2
        rows, cols = np.tril_indices(k)
        order = np.lexsort((rows, cols))  # theta is the lower triangle column by column
        T = np.zeros((k, k))
        T[rows[order], cols[order]] = theta[start : start + m]
        start += m
        Ts.append(np.kron(np.eye(q), T))
    Z, Lam = np.hstack(Zs), block_diag(*Ts)
    q = Lam.shape[0]
    A = np.hstack([Z @ Lam, d.X])
    M = A.T @ A
    M[:q, :q] += np.eye(q)
    hat = np.einsum("ij,ji->i", A, np.linalg.solve(M, A.T))
    V = np.eye(n) + Z @ Lam @ Lam.T @ Z.T
    ViX = np.linalg.solve(V, d.X)
    XtViX = d.X.T @ ViX
    hat_fixef = np.einsum("ij,ji->i", d.X, np.linalg.solve(XtViX, ViX.T))
    marginal_var = result.scale * (
        np.diag(V) - np.einsum("ij,ji->i", d.X, np.linalg.solve(XtViX, d.X.T))
    )
    P = Lam.T @ Z.T @ Z @ Lam + np.eye(q)
    cond = result.scale * Lam @ np.linalg.solve(P, Lam.T)
    blocks, off = [], 0
    for t in d.terms:
        qq, k = len(t.levels), t.k
        blocks.append(
            np.array(
                [
                    cond[off + l * k : off + (l + 1) * k, off + l * k : off + (l + 1) * k]
                    for l in range(qq)
                ]
            )
        )
        off += qq * k
    return {"hat": hat, "hat_fixef": hat_fixef, "marginal_var": marginal_var, "condvar": blocks}
