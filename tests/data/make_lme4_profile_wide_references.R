# Regenerate the lme4 reference for fixed-effect profile intervals that are much
# wider than the Wald interval (tests/test_profile_wide.py reads the JSON; the
# tests never run R). Conventions as in make_lme4_inference_references.R
# (%.17g numbers, tight nloptwrap settings, versions in meta), taken from the
# shared helpers in tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (a few seconds):
#   Rscript tests/data/make_lme4_profile_wide_references.R
#
# Writes tests/data/profile_two_groups.csv (the data, defined below) and
# tests/data/lme4_profile_wide_references.json.
#
# The model: y ~ x + (1 | g) by ML on 10 rows in two groups, x constant within
# each group. The ML fit is singular (sd(g) = 0), and moving a fixed effect
# away from its estimate is absorbed by the group variance at a logarithmic
# cost in deviance: at level 0.999 the profile interval of x is about 4 times
# as wide as the Wald interval.
#
# Two references per fixed effect and level:
#   confint_profile  lme4's confint(fit, method = "profile", level), whose ends
#                    are spline interpolations of zeta on a grid (error ~1e-3);
#   exact_root       the ends solved to 1e-12 with uniroot: zeta(v) =
#                    sign(v - est) sqrt(deviance(v) - deviance(fit)) where
#                    deviance(v) is the ML deviance of the model with that fixed
#                    effect set to v (an offset v * column, the column dropped).

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: ",
       "Rscript tests/data/make_lme4_profile_wide_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, ctrl, meta, output

two <- data.frame(
  g = factor(rep(c("a", "b"), each = 5)),
  x = rep(c(0, 1), each = 5),
  y = c(1.6891, 0.9773, 1.0869, -0.9415, 3.2997,
        4.1442, 2.6746, 3.7738, 3.2812, 2.4462))
write_data_files(list(list(df = two, file = "profile_two_groups.csv")))

fit <- suppressMessages(lmer(y ~ x + (1 | g), two, REML = FALSE, control = ctrl))
d_min <- deviance(fit)
est <- fixef(fit)

# ML deviance with fixed effect `name` set to v.
deviance_at <- function(name, v) {
  off <- v * if (name == "x") two$x else rep(1, nrow(two))
  form <- if (name == "x") y ~ 1 + (1 | g) else y ~ 0 + x + (1 | g)
  m <- suppressMessages(suppressWarnings(
    lmer(form, two, REML = FALSE, offset = off, control = ctrl)))
  deviance(m)
}
zeta <- function(name, v) sign(v - est[[name]]) * sqrt(max(deviance_at(name, v) - d_min, 0))

levels <- c(0.95, 0.99, 0.999)
out <- list()
for (level in levels) {
  key <- sprintf("%g", level)
  zq <- qnorm(0.5 + level / 2)
  prof <- suppressWarnings(suppressMessages(
    confint(fit, method = "profile", level = level, oldNames = FALSE)))
  wald <- confint(fit, method = "Wald", level = level)
  roots <- list()
  for (name in names(est)) {
    ends <- c(NA_real_, NA_real_)
    for (side in 1:2) {
      target <- if (side == 1) -zq else zq
      # bracket around lme4's interpolated end, widened until zeta changes sign
      spline_end <- prof[name, side]
      half <- abs(spline_end - est[[name]])
      lo <- est[[name]] + sign(target) * 0.8 * half
      hi <- est[[name]] + sign(target) * 1.25 * half
      while ((zeta(name, hi) - target) * sign(target) < 0) hi <- hi + sign(target) * half
      ends[side] <- uniroot(function(v) zeta(name, v) - target, sort(c(lo, hi)),
                            tol = 1e-12)$root
    }
    roots[[name]] <- jarr(ends)
  }
  out[[key]] <- list(
    level = jnum(level),
    confint_profile = list(rownames = I(rownames(prof)), lower = jarr(prof[, 1]),
                           upper = jarr(prof[, 2])),
    confint_wald = list(rownames = I(names(est)), lower = jarr(wald[names(est), 1]),
                        upper = jarr(wald[names(est), 2])),
    exact_root = roots)
  cat(sprintf("level %g: x profile [%.6g, %.6g], Wald [%.6g, %.6g]\n", level,
              prof["x", 1], prof["x", 2], wald["x", 1], wald["x", 2]))
}

meta <- reference_meta("make_lme4_profile_wide_references.R")
meta$data <- list(file = "profile_two_groups.csv", nrow = nrow(two))
meta$model <- "lmer(y ~ x + (1 | g), REML = FALSE, control = ctrl)"
write_reference_json(list(meta = meta,
                          fit = list(deviance = jnum(d_min), fixef = jobj(est),
                                     fixef_se = jobj(sqrt(diag(as.matrix(vcov(fit)))))),
                          levels = out),
                     "lme4_profile_wide_references.json")
