# Regenerate lme4's per-level coefficients, coef(fit) (fixed effects plus each
# level's conditional modes, by grouping factor), that tests/test_coef.py reads.
# (The tests never run R.)
#
# Dependencies (Debian/Ubuntu packages):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
#   Rscript tests/data/make_coef_references.R
#
# Models: two linear (sleepstudy's correlated slope; a crossed design with
# factor slopes (0 + cond | subject), whose column conda has no fixed
# effect, so lme4 adds it with a fixed part of 0) and two GLMMs (cbpp as a
# cbind response; a binary model with a correlated slope and a crossed item
# intercept). Linear fits use the helpers' tight nloptwrap control, GLMMs
# glmer with bobyqa, rhoend 1e-10 and tolPwrss 1e-12 (as
# make_glmm_references.R). CSV columns are read as R reads them (numbers as
# numbers, text as factors in sorted level order).

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_coef_references.R")
}
source(helpers)  # data_dir, jnum/jarr, ctrl, reference_meta, write_reference_json

gctrl <- glmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                      tolPwrss = 1e-12)

read_data <- function(file) {
  read.csv(file.path(data_dir, file), stringsAsFactors = TRUE)
}

models <- list(
  list(name = "sleepstudy_slope", file = "sleepstudy.csv", family = "gaussian",
       formula = "Reaction ~ Days + (Days | Subject)", factors = "Subject"),
  list(name = "crossed_factor_slopes", file = "crossed_slopes.csv", family = "gaussian",
       formula = "y ~ cond + t + (0 + cond | subject) + (1 | item)", factors = character(0)),
  list(name = "cbpp", file = "cbpp.csv", family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", factors = "herd"),
  list(name = "binary_slope", file = "glmm_binary_slope.csv", family = "binomial",
       formula = "y ~ x + (1 + x | subject) + (1 | item)", factors = character(0))
)

coef_json <- function(fit) {
  out <- list()
  for (g in names(coef(fit))) {
    cf <- coef(fit)[[g]]
    out[[g]] <- list(
      levels = rownames(cf),
      columns = names(cf),
      values = lapply(names(cf), function(col) jarr(cf[[col]])),
      ranef_sd = lapply(names(ranef(fit)[[g]]), function(col) jnum(sd(ranef(fit)[[g]][[col]])))
    )
    names(out[[g]]$values) <- names(cf)
    names(out[[g]]$ranef_sd) <- names(ranef(fit)[[g]])
  }
  out
}

fits <- list()
for (m in models) {
  d <- read_data(m$file)
  for (f in m$factors) d[[f]] <- factor(d[[f]])  # integer ids as grouping factors
  fit <- if (m$family == "gaussian") {
    lmer(as.formula(m$formula), data = d, REML = TRUE, control = ctrl)
  } else {
    glmer(as.formula(m$formula), data = d, family = binomial, control = gctrl)
  }
  fe_se <- sqrt(diag(as.matrix(vcov(fit))))
  fits[[m$name]] <- list(
    data_file = m$file,
    formula = m$formula,
    family = m$family,
    fixef = jobj(fixef(fit)),
    fixef_se = jobj(fe_se),
    coef = coef_json(fit)
  )
}

write_reference_json(
  list(meta = reference_meta("make_coef_references.R"), fits = fits),
  "coef_references.json"
)
