# Profile-likelihood intervals of glmer fits, for benchmarks/bench_glmm_profile.py.
# Usage: Rscript lme4_glmm_profile.R DATA_DIR
# Prints one JSON line: per model, the wall seconds of confint(fit, method = "profile")
# (profile() and the spline inversion; the fit itself untimed, made first) and the
# interval ends. Default glmer and confint settings, as a user would call them.
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
rd <- function(file, factors) {
  d <- read.csv(file.path(dir, file))
  for (f in factors) d[[f]] <- factor(as.character(d[[f]]))
  d
}
models <- list(
  cbpp = list(d = rd("cbpp.csv", c("herd", "period")), family = binomial,
              f = cbind(incidence, size - incidence) ~ period + (1 | herd)),
  poisson_offset = list(d = rd("glmm_poisson_offset.csv", c("site", "year", "observer")),
                        family = poisson,
                        f = count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)),
  binary_slope = list(d = rd("glmm_binary_slope.csv", c("subject", "item")), family = binomial,
                      f = y ~ x + (1 + x | subject) + (1 | item))
)
out <- c()
for (key in names(models)) {
  m <- models[[key]]
  fit <- glmer(m$f, data = m$d, family = m$family)
  t <- system.time(ci <- suppressWarnings(suppressMessages(
    confint(fit, method = "profile", oldNames = FALSE))))[["elapsed"]]
  out <- c(out, sprintf('"%s": {"seconds": %.4f, "rows": [%s], "lower": [%s], "upper": [%s]}',
                        key, t, paste(sprintf('"%s"', rownames(ci)), collapse = ", "),
                        paste(sprintf("%.10g", ci[, 1]), collapse = ", "),
                        paste(sprintf("%.10g", ci[, 2]), collapse = ", ")))
}
version <- sprintf("%s, lme4 %s", R.version.string, as.character(packageVersion("lme4")))
cat(sprintf('{%s, "version": "%s"}\n', paste(out, collapse = ", "), version))
