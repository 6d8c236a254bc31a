# Regenerate the lme4 reference for a binomial GLMM whose prior weights are not
# whole numbers of trials (tests/test_glmm_family.py reads it; the tests never
# run R).
#
# Dependencies (Debian/Ubuntu packages):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
#   python3 tests/data/make_glmm_data.py   # only if glmm_fractional_weights.csv is missing
#   Rscript tests/data/make_glmm_weights_references.R
#
# glmer warns "non-integer #successes in a binomial glm!" and fits anyway. Its
# objective (lme4's C++ binomialDist::aic) scales each row's binomial log
# density by w / round(w) (w = the prior weight, round(w) the trials), on top
# of the working weights w inside PIRLS and the log-determinant; R's
# binomial()$aic has no such factor. The reference records the tight fit and
# lme4's objective at two fixed points (devFunOnly), so a test can check the
# objective itself as well as the optimum.
#
# Control: glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10,
# maxfun = 1e5), tolPwrss = 1e-12), as make_glmm_references.R.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_weights_references.R")
}
source(helpers)  # data_dir, JSON number helpers, read_checked, capture, write_reference_json

gctrl <- glmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                      tolPwrss = 1e-12)
d <- read_checked("glmm_fractional_weights.csv",
  c(subject = "character", item = "character", x = "numeric", y = "integer", w = "numeric"),
  600L, how = "run python3 tests/data/make_glmm_data.py first")
d$subject <- factor(d$subject)
d$item <- factor(d$item)
f <- y ~ x + (1 | subject) + (1 | item)

cap <- capture(glmer(f, data = d, family = binomial, weights = w, control = gctrl))
fit <- cap$value
devfun <- glmer(f, data = d, family = binomial, weights = w, control = gctrl,
                devFunOnly = TRUE)
# devFunOnly of an nAGQ = 1 fit takes c(theta, beta)
points <- list(c(1, 1, 0, 0), c(0.8, 0.4, 0.3, 0.6))
at <- lapply(points, function(p) list(pars = jarr(p), value = jnum(devfun(p))))

out <- list(
  meta = c(reference_meta("make_glmm_weights_references.R",
                          packages = c("lme4", "Matrix", "minqa", "jsonlite")),
           list(notes = c("theta in lme4's term order (subject, item)",
                          "devfun: glmer(..., devFunOnly = TRUE) at c(theta, beta)"))),
  fractional_weights = list(
    data_file = "glmm_fractional_weights.csv",
    formula = "y ~ x + (1 | subject) + (1 | item)",
    weights = "w",
    m2ll = jnum(-2 * as.numeric(logLik(fit))),
    fixef = jobj(fixef(fit)),
    se = jobj(sqrt(diag(as.matrix(vcov(fit))))),
    theta = jobj(getME(fit, "theta")),
    devfun = at,
    warnings = I(cap$warnings)
  )
)
out$meta$control <- list(optimizer = "bobyqa",
                         optCtrl = list(rhoend = jnum(1e-10), maxfun = jnum(1e5)),
                         tolPwrss = jnum(1e-12))
write_reference_json(out, "glmm_weights_references.json")
