# bootMer(type = "parametric") of glmer fits, for benchmarks/bench_glmm_bootstrap.py.
# Usage: Rscript lme4_glmm_bootstrap.R cbpp.csv NSIM verbagg.csv NSIM_VERBAGG
# Prints one JSON line: per model, bootMer's wall seconds (the fit itself untimed, made
# first), the refits without NA, and the bootstrap sd of each fixed effect. Default glmer
# and bootMer settings, as a user would call them; seed 1.
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
cbpp <- read.csv(args[1])
cbpp$herd <- factor(cbpp$herd)
cbpp$period <- factor(cbpp$period, levels = c("1", "2", "3", "4"))
verbagg <- read.csv(args[3])
for (col in c("Gender", "btype", "situ", "id", "item")) verbagg[[col]] <- factor(verbagg[[col]])
verbagg$Gender <- factor(verbagg$Gender, levels = c("F", "M"))
verbagg$btype <- factor(verbagg$btype, levels = c("curse", "scold", "shout"))
verbagg$situ <- factor(verbagg$situ, levels = c("other", "self"))
fits <- list(
  cbpp = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
               family = binomial),
  verbagg = glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), verbagg,
                  family = binomial)
)
nsim <- c(cbpp = as.integer(args[2]), verbagg = as.integer(args[4]))
invisible(suppressWarnings(bootMer(fits$cbpp, fixef, nsim = 2, seed = 0)))  # warm-up
out <- c()
for (key in names(fits)) {
  t <- system.time(b <- suppressWarnings(suppressMessages(
    bootMer(fits[[key]], fixef, nsim = nsim[[key]], seed = 1))))[["elapsed"]]
  ok <- sum(complete.cases(b$t))
  sds <- apply(b$t, 2, sd, na.rm = TRUE)
  out <- c(out, sprintf('"%s": {"seconds": %.4f, "nsim": %d, "ok": %d, "sd": {%s}}', key, t,
                        nsim[[key]], ok,
                        paste(sprintf('"%s": %.8g', names(sds), sds), collapse = ", ")))
}
version <- sprintf("%s, lme4 %s", R.version.string, as.character(packageVersion("lme4")))
cat(sprintf('{%s, "version": "%s"}\n', paste(out, collapse = ", "), version))
