# lme4 references for fits of shifted data (tests/test_shift_invariance.py):
# sleepstudy with Reaction shifted by a constant, ML and REML, with the tight
# nloptwrap control every reference fit uses. lme4's answer does not depend on
# the shift (up to the digits the shift itself costs lme4); interlace must
# give the unshifted numbers at every shift.
#
# Dependencies: apt-get install -y r-base-core r-cran-lme4 r-cran-jsonlite
# Run from the repository root:
#   Rscript tests/data/make_lme4_shift_references.R
# Reads tests/data/sleepstudy.csv; writes tests/data/lme4_shift_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_shift_references.R")
}
source(helpers)  # data_dir, fmt17/jnum/jarr, ctrl, reference_meta, write_reference_json

sleep <- read.csv(file.path(data_dir, "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)

models <- list(
  slopes = "Reaction ~ Days + (Days | Subject)",
  intercept = "Reaction ~ Days + (1 | Subject)"
)
fits <- list()
for (name in names(models)) {
  for (method in c("REML", "ML")) {
    for (shift in c(0, 1e6, 1e9)) {
      df <- sleep
      df$Reaction <- df$Reaction + shift
      fit <- lmer(as.formula(models[[name]]), data = df, REML = (method == "REML"),
                  control = ctrl)
      key <- sprintf("%s_%s_shift%g", name, method, shift)
      fits[[key]] <- list(
        formula = models[[name]], method = method, shift = jnum(shift),
        deviance = jnum(if (method == "REML") REMLcrit(fit) else deviance(fit)),
        sigma = jnum(sigma(fit)),
        beta = jarr(unname(fixef(fit)) - c(shift, 0)),  # intercept relative to the shift
        theta = jarr(getME(fit, "theta"))
      )
      cat(sprintf("%-28s criterion %s sigma %.8f\n", key, fits[[key]]$deviance,
                  sigma(fit)))
    }
  }
}
meta <- c(reference_meta("make_lme4_shift_references.R"), list(
  notes = c("deviance is REMLcrit(fit) for REML and deviance(fit) for ML",
            "beta is fixef(fit) with the shift subtracted from the intercept")
))
write_reference_json(list(meta = meta, fits = fits), "lme4_shift_references.json")
