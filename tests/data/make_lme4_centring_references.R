# lme4 references for random slopes on a covariate far from 0
# (tests/test_centring.py): sleepstudy's (Days | Subject) with Days shifted by
# 2000 (a calendar year) and by 1e5, REML and ML.
#
# lme4 fitted to the shifted data stalls on the ridge between the intercept's
# and the slope's variances (convergence warnings; its criterion is recorded
# as "direct"). The reference is the same model fitted with Days centred,
# where lme4 converges cleanly, mapped here to the shifted columns: with
# m = mean(Days + shift), the intercept at Days + shift = 0 is b0 - m b1, so
# Sigma = B Sigma_c B' with B = [1 -m; 0 1], theta = the lower Cholesky factor
# of Sigma / sigma^2, and beta_0 = beta_0c - m beta_1.
#
# Dependencies: apt-get install -y r-base-core r-cran-lme4 r-cran-jsonlite
# Run from the repository root:
#   Rscript tests/data/make_lme4_centring_references.R
# Reads tests/data/sleepstudy.csv; writes tests/data/lme4_centring_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_centring_references.R")
}
source(helpers)  # data_dir, fmt17/jnum/jarr, ctrl, capture, reference_meta, write_reference_json

sleep <- read.csv(file.path(data_dir, "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)

fits <- list()
for (shift in c(2000, 1e5)) {
  for (method in c("REML", "ML")) {
    reml <- method == "REML"
    df <- sleep
    df$Days <- df$Days + shift
    m <- mean(df$Days)
    direct <- capture(lmer(Reaction ~ Days + (Days | Subject), df, REML = reml, control = ctrl))
    df$Dc <- df$Days - m
    centred <- capture(lmer(Reaction ~ Dc + (Dc | Subject), df, REML = reml, control = ctrl))
    stopifnot(length(centred$warnings) == 0)
    fit <- centred$value
    s <- sigma(fit)
    Sigma_c <- as.matrix(VarCorr(fit)$Subject)
    B <- matrix(c(1, 0, -m, 1), 2, 2)  # column-major: [1 -m; 0 1]
    Sigma <- B %*% Sigma_c %*% t(B)
    L <- t(chol(Sigma)) / s
    beta_c <- unname(fixef(fit))
    key <- sprintf("%s_shift%g", method, shift)
    fits[[key]] <- list(
      method = method, shift = jnum(shift), mean = jnum(m),
      deviance = jnum(if (reml) REMLcrit(fit) else deviance(fit)),
      sigma = jnum(s),
      beta = jarr(c(beta_c[1] - m * beta_c[2], beta_c[2])),
      theta_centred = jarr(getME(fit, "theta")),
      theta = jarr(c(L[1, 1], L[2, 1], L[2, 2])),
      sd = jarr(sqrt(diag(Sigma))),
      direct_deviance = jnum(if (reml) REMLcrit(direct$value) else deviance(direct$value)),
      direct_warnings = I(direct$warnings)
    )
    cat(sprintf("%-16s centred criterion %.10f, direct %.10f (%d warnings)\n", key,
                if (reml) REMLcrit(fit) else deviance(fit),
                if (reml) REMLcrit(direct$value) else deviance(direct$value),
                length(direct$warnings)))
  }
}
meta <- c(reference_meta("make_lme4_centring_references.R"), list(
  notes = c("deviance is REMLcrit for REML and deviance for ML, of the centred fit",
            "theta, sd and beta are the centred fit's, mapped to Days + shift",
            "theta_centred is getME(centred fit, 'theta'); direct_* is lme4 on Days + shift")
))
write_reference_json(list(meta = meta, fits = fits), "lme4_centring_references.json")
