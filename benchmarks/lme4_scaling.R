# lme4 side of benchmarks/bench_scaling.py: one lmer() fit of a synthetic crossed design.
#
#   Rscript benchmarks/lme4_scaling.R data.csv
#
# The CSV has columns y, x and one or more factor columns (a, b, c, ...), as written by
# benchmarks/synthetic.py. Fits lmer(y ~ x + (1 | a) + (1 | b) [+ (1 | c) ...], REML = TRUE)
# with default control and says RESULT (harness.R) with: read_s (reading the CSV);
# wall_s and cpu_s of lmer(); deviance (REMLcrit); feval; singular; convergence_messages
# (their number, besides the singular fit) and messages (their text); gc_max_mb; theta;
# sigma; the versions of R, lme4 and the BLAS. The clock (proc.time()) runs around the
# lmer() call only. "gc max used" is R's own heap peak during lmer() (gc(reset = TRUE)
# before); memory that CHOLMOD allocates outside R's heap is not in it, so the caller also
# measures the process's peak RSS (/usr/bin/time -v).

# sys.source, not source: source() itself adds 0.3 MB to R's heap (lme4_scaling.R's gc max)
sys.source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                      value = TRUE))), "harness.R"), globalenv())
suppressPackageStartupMessages(library(data.table))

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

msgs <- unlist(fit@optinfo$conv$lme4$messages)
msgs <- msgs[!grepl("singular", msgs)]
say("RESULT", c(list(
  read_s = num(read_s, "%.3f"), wall_s = num(dt[["elapsed"]], "%.6f"),
  cpu_s = num(dt[["user.self"]] + dt[["sys.self"]], "%.6f"), deviance = num(REMLcrit(fit)),
  feval = as.integer(fit@optinfo$feval), singular = isSingular(fit),
  convergence_messages = length(msgs), gc_max_mb = num(sum(g[, 6]), "%.1f"),
  theta = num(getME(fit, "theta"), "%.10g", array = TRUE), sigma = num(sigma(fit))),
  versions(), list(messages = gsub("[\t\n]", " ", paste(msgs, collapse = "; ")))))
