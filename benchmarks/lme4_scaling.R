# lme4 side of benchmarks/bench_scaling.py: one lmer() fit of a synthetic crossed design.
#
#   Rscript benchmarks/lme4_scaling.R data.csv
#
# The CSV has columns y, x and one or more factor columns (a, b, c, ...), as written by
# benchmarks/synthetic.py. Fits lmer(y ~ x + (1 | a) + (1 | b) [+ (1 | c) ...], REML = TRUE)
# with default control and prints one tab-separated line:
#   RESULT <read s> <lmer elapsed s> <lmer cpu s> <REMLcrit> <feval> <singular>
#          <n convergence messages besides singular> <gc max used MB during lmer>
#          <theta, comma-separated> <sigma> <R version> <lme4 version> <BLAS> <messages>
# The clock (proc.time()) runs around the lmer() call only; reading the CSV is timed
# separately. "gc max used" is R's own heap peak during lmer() (gc(reset = TRUE) before);
# memory that CHOLMOD allocates outside R's heap is not in it, so the caller also measures
# the process's peak RSS (/usr/bin/time -v).

suppressPackageStartupMessages({
  library(lme4)
  library(data.table)
})

args <- commandArgs(trailingOnly = TRUE)
path <- args[[1]]

t0 <- proc.time()
d <- as.data.frame(fread(path, showProgress = FALSE))
factors <- setdiff(names(d), c("y", "x"))
for (f in factors) d[[f]] <- factor(d[[f]])
read_s <- (proc.time() - t0)[["elapsed"]]

form <- as.formula(paste("y ~ x +", paste(sprintf("(1 | %s)", factors), collapse = " + ")))
invisible(gc(reset = TRUE))
t0 <- proc.time()
fit <- suppressMessages(suppressWarnings(lmer(form, data = d, REML = TRUE)))
dt <- proc.time() - t0
g <- gc()
gc_max_mb <- sum(g[, 6])

msgs <- unlist(fit@optinfo$conv$lme4$messages)
msgs <- msgs[!grepl("singular", msgs)]
si <- sessionInfo()
cat(sprintf("RESULT\t%.3f\t%.6f\t%.6f\t%.17g\t%d\t%d\t%d\t%.1f\t%s\t%.17g\t%s\t%s\t%s\t%s\n",
            read_s, dt[["elapsed"]], dt[["user.self"]] + dt[["sys.self"]], REMLcrit(fit),
            as.integer(fit@optinfo$feval), as.integer(isSingular(fit)), length(msgs),
            gc_max_mb, paste(sprintf("%.10g", getME(fit, "theta")), collapse = ","),
            sigma(fit), R.version.string, as.character(packageVersion("lme4")),
            basename(si$BLAS), gsub("[\t\n]", " ", paste(msgs, collapse = "; "))))
