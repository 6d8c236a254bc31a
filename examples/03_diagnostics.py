"""Diagnostics guide: check a fit before you trust it.

Run: python examples/03_diagnostics.py [output folder, default ./diagnostics]

Walks through the checks an lme4/HLMdiag user knows, on the results-page model:
residuals (conditional and marginal, standardized), leverage (lme4's hatvalues, split
into fixed and random parts), Cook's distance (lme4's one-step formula, then exact
case deletion: 300 refits in one vectorised call), group-level influence, the BLUPs
with their conditional standard errors, and the plots (needs ``interlace[plot]``).
"""

import sys
import time
import warnings
from pathlib import Path

import interlace

out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "diagnostics")
out_dir.mkdir(parents=True, exist_ok=True)

df = interlace.datasets.exam_scores()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the page's school variance is at the boundary
    result = interlace.fit(
        "score ~ hours_studied + prior_gpa", data=df, groups=["student_id", "school_id"]
    )

print("# 1. Residuals: standardized conditional residuals should look like N(0, 1)")
res = interlace.hlm_resid(result, standardized=True)
print(res[["resid", "fitted", "resid_marginal"]].head().round(3))
big = res["resid"].abs() > 3
print(f"{int(big.sum())} of {len(res)} rows have |standardized residual| > 3")

print("\n# 2. Leverage: the diagonal of the hat matrix, without forming it")
lev = interlace.leverage(result)
print(lev.describe().loc[["mean", "max"]].round(4))
print(f"sum of fixed-effect leverage = {lev['fixef'].sum():.3f} (= number of fixed effects)")

print("\n# 3. Cook's distance: lme4's one-step formula, then exact case deletion")
one_step = interlace.cooks_distance(result)
start = time.perf_counter()
infl = interlace.hlm_influence(result)  # compiles once, then all 300 refits in one call
first = time.perf_counter() - start
start = time.perf_counter()
infl = interlace.hlm_influence(result)
again = time.perf_counter() - start
print(f"{len(infl)} case-deletion refits: {first:.1f} s with compilation, {again:.2f} s after")
top = infl.sort_values("cooksd", ascending=False).head(5)
print(top[["cooksd", "mdffits", "covratio", "rvc_sigma2"]].round(4))
print(
    f"rows above 4/n: one-step {interlace.n_influential(result)}, "
    f"exact {interlace.n_influential(result, influence=infl)}; "
    f"all refits converged: {bool(infl['converged'].all())}"
)

print("\n# 4. Which school moves the estimates most? (group deletion)")
schools = interlace.hlm_influence(result, level="school_id")
print(schools[["cooksd", "covratio", "rvc_sigma2"]].sort_values("cooksd").tail(3).round(4))

print("\n# 5. Group-level residuals: BLUPs with conditional standard errors")
students = interlace.hlm_resid(result, level="student_id")
print(students.sort_values("(Intercept)").tail(3).round(3))

try:
    from interlace import plots
except ImportError as exc:
    print(f"\n(no plots: {exc})")
else:
    import matplotlib

    matplotlib.use("Agg")
    fig = plots.diagnostic_panel(result, "student_id", path=out_dir / "panel.png")
    ax = plots.cooks_index(result, influence=infl)
    ax.figure.savefig(out_dir / "cooks_exact.png", dpi=100)
    print(f"\nplots written to {out_dir}/panel.png and {out_dir}/cooks_exact.png")
