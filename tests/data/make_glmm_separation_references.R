# Regenerate the lme4 reference data that tests/test_glmm_separation.py reads for a
# crossed binary GLMM with a separated fixed effect. (The tests never run R.)
#
# Dependencies (Debian/Ubuntu packages; minqa comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (seconds):
#   Rscript tests/data/make_glmm_separation_references.R
# It reads glmm_separated_crossed.csv (made by tests/data/make_glmm_data.py) and
# writes tests/data/glmm_separation_references.json.
#
# Model: y ~ x + f + (1 | g) + (1 | h), binomial logit, Laplace (nAGQ = 1). Every row
# of level C has y = 0, so f[T.C]'s estimate runs off to a large negative value. The
# fit uses glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10,
# maxfun = 1e5), tolPwrss = 1e-12), as make_glmm_references.R.
#
# Recorded:
#   fit      theta, fixef and -2 logLik of glmer's fit
#   points   lme4's Laplace deviance function (update(fit, devFunOnly = TRUE), whose
#            argument is c(theta, beta)) at two theta vectors and fixed effects equal
#            to glmer's except f[T.C], set to values from near the estimate to far
#            along the separated direction (-1000: the working weights of level C's
#            rows underflow to 0). lme4 factorises the random effects' block only at a
#            given beta, so these values exist wherever the deviance does.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_separation_references.R")
}
source(helpers)  # data_dir, JSON number helpers, read_checked, write_reference_json

gctrl <- glmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                      tolPwrss = 1e-12)

d <- read_checked("glmm_separated_crossed.csv",
  c(g = "character", h = "character", x = "numeric", f = "character", y = "integer"),
  300L)
for (nm in c("g", "h", "f")) d[[nm]] <- factor(d[[nm]])  # sorted labels, as interlace

formula <- "y ~ x + f + (1 | g) + (1 | h)"
fit_cap <- capture(glmer(as.formula(formula), data = d, family = binomial(),
                         nAGQ = 1L, control = gctrl))
fit <- fit_cap$value
theta_hat <- getME(fit, "theta")
beta_hat <- fixef(fit)
devfun <- update(fit, devFunOnly = TRUE)

thetas <- list(theta_hat, 1.2 * theta_hat + 0.05)
separated <- c(-25, -30, -50, -100, -400, -1000)
points <- list()
for (th in thetas) {
  for (v in separated) {
    beta <- beta_hat
    beta[["fC"]] <- v
    dev <- devfun(c(th, beta))
    cat(sprintf("theta %s  f[T.C] %6g  deviance %.10f\n",
                paste(sprintf("%.6f", th), collapse = " "), v, dev))
    points[[length(points) + 1L]] <- list(theta = jarr(th), beta = jarr(beta), deviance = jnum(dev))
  }
}

meta <- reference_meta("make_glmm_separation_references.R",
                       packages = c("lme4", "Matrix", "minqa", "jsonlite"))
meta$control <- list(optimizer = "bobyqa", optCtrl = list(rhoend = jnum(1e-10), maxfun = jnum(1e5)),
                     tolPwrss = jnum(1e-12))
meta$notes <- c(
  "beta in R's column order: (Intercept), x, fB, fC (interlace: Intercept, x, f[T.B], f[T.C])",
  "deviance: lme4's Laplace deviance function at c(theta, beta), -2 logLik for 0/1 data")
out <- list(
  meta = meta,
  data_file = "glmm_separated_crossed.csv",
  formula = formula,
  fit = list(theta = jarr(theta_hat), fixef = jarr(beta_hat),
             m2ll = jnum(-2 * as.numeric(logLik(fit))),
             warnings = I(fit_cap$warnings), messages = I(fit_cap$messages)),
  points = points)
write_reference_json(out, "glmm_separation_references.json")
