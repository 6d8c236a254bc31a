# A loop of glmer() / glmer.nb() fits, one per gene, for benchmarks/bench_glmm_many.py.
# Usage: Rscript lme4_glmm_many.R data.csv poisson|negative_binomial K
# Prints one JSON line: seconds per fit (timed around the fit only), -2 logLik per gene,
# and the R / lme4 versions. Default glmer control, as a user would call it.
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
family <- args[2]
k <- as.integer(args[3])
d$donor <- factor(d$donor)
d$batch <- factor(d$batch)
f <- y ~ x + offset(log(lib)) + (1 | donor) + (1 | batch)
one <- function(j) {
  d$y <- d[[paste0("g", j)]]
  suppressMessages(suppressWarnings(
    if (family == "poisson") glmer(f, d, family = poisson) else glmer.nb(f, d)
  ))
}
invisible(one(0))  # warm-up, untimed
secs <- numeric(k)
m2ll <- numeric(k)
for (j in seq_len(k) - 1) {
  t <- system.time(m <- one(j))[["elapsed"]]
  secs[j + 1] <- t
  m2ll[j + 1] <- -2 * as.numeric(logLik(m))
}
version <- sprintf("%s, lme4 %s", R.version.string, as.character(packageVersion("lme4")))
cat(sprintf('{"seconds": [%s], "minus2logLik": [%s], "version": "%s"}\n',
            paste(secs, collapse = ","), paste(sprintf("%.10f", m2ll), collapse = ","), version))
