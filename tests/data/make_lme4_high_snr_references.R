# lme4 references for random slopes whose variance dwarfs the residual variance
# (tests/test_high_snr_slopes.py): y ~ x + (x | subject) + (1 | site), x with a
# standard deviation of ~1000 and subject slopes of ~1 residual sd per unit of x,
# so theta of the slope is ~1 in x's units (~1e3 per standard deviation of x),
# next to a site variance on or near its boundary (2 sites). Two responses (y1,
# y2) drawn from one such fit; 1,500 rows, 48 subjects.
#
# interlace's L-BFGS stalled on both (REML criterion 4.25 and 2.13 above lme4's)
# before it polished a stalled search by Newton steps (interlace/_core/newton.py).
# lme4 reaches the same optimum from its default optimiser, bobyqa at a tight
# rhoend and Nelder-Mead; the reference is the lowest criterion of the three.
#
# Dependencies: apt-get install -y r-base-core r-cran-lme4 r-cran-jsonlite
# Run from the repository root:
#   Rscript tests/data/make_lme4_high_snr_references.R
# Reads tests/data/high_snr_slopes.csv; writes tests/data/lme4_high_snr_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_high_snr_references.R")
}
source(helpers)  # data_dir, fmt17/jnum/jarr, ctrl, capture, reference_meta, write_reference_json

d <- read.csv(file.path(data_dir, "high_snr_slopes.csv"))
d$subject <- factor(d$subject)
d$site <- factor(d$site)

controls <- list(
  default = lmerControl(),
  bobyqa = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5)),
  nelder_mead = lmerControl(optimizer = "Nelder_Mead")
)
fits <- list()
for (response in c("y1", "y2")) {
  for (method in c("REML", "ML")) {
    reml <- method == "REML"
    d$y <- d[[response]]
    criteria <- c()
    best <- NULL
    for (name in names(controls)) {
      fit <- capture(lmer(y ~ x + (x | subject) + (1 | site), d, REML = reml,
                          control = controls[[name]]))$value
      crit <- if (reml) REMLcrit(fit) else deviance(fit)
      criteria[name] <- crit
      if (is.null(best) || crit < (if (reml) REMLcrit(best) else deviance(best))) best <- fit
    }
    key <- sprintf("%s_%s", response, method)
    fits[[key]] <- list(
      response = response, method = method,
      deviance = jnum(min(criteria)),
      by_optimizer = jobj(criteria),
      sigma = jnum(sigma(best)),
      beta = jarr(unname(fixef(best))),
      theta = jarr(unname(getME(best, "theta")))
    )
    cat(sprintf("%-8s %s\n", key, paste(sprintf("%s %.10f", names(criteria), criteria), collapse = ", ")))
  }
}
meta <- c(reference_meta("make_lme4_high_snr_references.R"), list(
  notes = c("deviance is REMLcrit for REML and deviance for ML: the lowest of by_optimizer",
            "sigma, beta and theta (getME order) are those of the fit with the lowest criterion")
))
meta$control <- list(optimizers = c("default: lmerControl()",
                                    "bobyqa: optCtrl = list(rhoend = 1e-10, maxfun = 1e5)",
                                    "nelder_mead: optimizer = 'Nelder_Mead'"))
write_reference_json(list(meta = meta, fits = fits), "lme4_high_snr_references.json")
