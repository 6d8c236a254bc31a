# Regenerate the lme4 reference data for profile-likelihood confidence intervals
# of GLMMs (glmer's confint(fit, method = "profile"), lme4's default confint)
# that tests/test_glmm_profile.py reads. (The tests never run R.)
#
# Dependencies (Debian/Ubuntu packages; minqa comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (a few minutes; the correlated-slope profile is
# the slow one):
#   Rscript tests/data/make_glmm_profile_references.R
# It reads cbpp.csv, glmm_poisson_offset.csv and glmm_binary_slope.csv (made by
# make_glmm_references.R and make_glmm_data.py) and writes
# tests/data/glmm_profile_references.json.
#
# Fits: glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10,
# maxfun = 1e5), tolPwrss = 1e-12), as make_glmm_references.R. lme4's
# profile() then reuses the fit's optimizer (bobyqa) for every constrained
# refit, over (theta, beta) (nAGQ = 1), with sd and correlation parameters on
# the sd/cor scale, each fixed effect fixed in turn.
#
# Recorded per model:
#   confint   confint(profile(fit, signames = FALSE)) at 95% (lme4 interpolates
#             the inverse of zeta with a spline through the profile points, so
#             its ends carry that interpolation error)
#   points    as.data.frame(profile): for each parameter its focal values and
#             the signed root zeta = sign(v - est) sqrt(dev(v) - dev_min) there.
#             These are exact constrained refits (up to bobyqa's tolerance), so
#             comparing zeta at these points is tighter than comparing ends.
#   m2ll      -2 logLik of the fit.
# nAGQ = 0 fits are not profiled: lme4 1.1-31's profile() of an nAGQ = 0 glmer
# fit stops with "theta size mismatch".

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_profile_references.R")
}
source(helpers)  # data_dir, JSON number helpers, read_checked, write_reference_json

gctrl <- glmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                      tolPwrss = 1e-12)

as_factors <- function(df, nms) {
  for (nm in nms) df[[nm]] <- factor(df[[nm]])  # sorted labels, as interlace
  df
}
cbpp_d <- as_factors(read_checked("cbpp.csv",
  c(herd = "character", incidence = "numeric", size = "numeric", period = "character"),
  56L), c("herd", "period"))
poisoff_d <- as_factors(read_checked("glmm_poisson_offset.csv",
  c(site = "character", year = "character", observer = "character",
    cover = "numeric", hours = "numeric", count = "integer"),
  2000L), c("site", "year", "observer"))
binslope_d <- as_factors(read_checked("glmm_binary_slope.csv",
  c(subject = "character", item = "character", x = "numeric", y = "integer"),
  3000L), c("subject", "item"))

models <- list(
  cbpp_laplace = list(data = cbpp_d, file = "cbpp.csv", family = binomial(),
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  poisson_offset_laplace = list(data = poisoff_d, file = "glmm_poisson_offset.csv",
    family = poisson(),
    formula = "count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)"),
  binary_slope_laplace = list(data = binslope_d, file = "glmm_binary_slope.csv",
    family = binomial(), formula = "y ~ x + (1 + x | subject) + (1 | item)")
)

profile_points <- function(pr) {
  d <- as.data.frame(pr)
  pars <- levels(d$.par)
  out <- lapply(pars, function(p) {
    s <- d[d$.par == p, ]
    s <- s[order(s$.focal), ]
    list(focal = jarr(s$.focal), zeta = jarr(s$.zeta))
  })
  names(out) <- pars
  out
}

summaries <- list()
for (name in names(models)) {
  spec <- models[[name]]
  dat <- spec$data
  fit <- glmer(as.formula(spec$formula), data = dat, family = spec$family,
               nAGQ = 1L, control = gctrl)
  t0 <- proc.time()[["elapsed"]]
  pr_cap <- capture(profile(fit, signames = FALSE))
  secs <- proc.time()[["elapsed"]] - t0
  pr <- pr_cap$value
  ci <- confint(pr, level = 0.95)
  cat(name, ": profile in", round(secs, 1), "s\n")
  print(ci, digits = 8)
  summaries[[name]] <- list(
    data_file = spec$file,
    formula = spec$formula,
    family = spec$family$family,
    m2ll = jnum(-2 * as.numeric(logLik(fit))),
    fixef = jobj(fixef(fit)),
    confint = list(rownames = I(rownames(ci)), lower = jarr(ci[, 1]), upper = jarr(ci[, 2])),
    points = profile_points(pr),
    profile_seconds = jnum(secs),
    warnings = I(pr_cap$warnings),
    messages = I(pr_cap$messages)
  )
}

meta <- reference_meta("make_glmm_profile_references.R",
                       packages = c("lme4", "Matrix", "minqa", "jsonlite"))
meta$control <- list(optimizer = "bobyqa", optCtrl = list(rhoend = jnum(1e-10), maxfun = jnum(1e5)),
                     tolPwrss = jnum(1e-12))
meta$notes <- c(
  "confint: lme4's spline-interpolated ends of profile(fit, signames = FALSE), level 0.95",
  "points: as.data.frame(profile) per parameter, sorted by focal value; zeta = sign(v - est) sqrt(dev(v) - dev_min)",
  "sd parameters are sd_<column>|<group> (no residual sigma in a binomial or Poisson GLMM)")
write_reference_json(list(meta = meta, models = summaries), "glmm_profile_references.json")
