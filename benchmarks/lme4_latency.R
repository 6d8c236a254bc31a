# lme4 side of benchmarks/bench_latency.py: a small fit server (serve in harness.R).
#
# Started once by the Python runner (Rscript benchmarks/lme4_latency.R, from the repository
# root), after that runner has written the models and their data: the manifest
# benchmarks/out/latency/models.json maps each model key ("page" for the warm-up, then
# "m01", "m02", ...) to its CSV (a path from the repository root), formula, REML flag and
# grouping columns. This script reads every CSV at start (grouping columns as factors, the
# others as doubles; "cond" is a two-level factor), says READY, then reads model keys from
# stdin, one per line. For each key it fits lmer() with default control and answers RESULT
# with: seconds (elapsed) and cpu_s (user + sys), timed with proc.time() around the lmer()
# call only (R startup, package loading and data reading are outside it); deviance
# (REMLcrit(fit) for REML fits, deviance(fit) for ML fits); feval; singular;
# convergence_messages (lme4's, besides the singular fit). One long-lived process lets the
# runner alternate: interlace's first fit of a model, then lme4's fit of the same model.

# sys.source, not source: source() itself adds 0.3 MB to R's heap (lme4_scaling.R's gc max)
sys.source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                      value = TRUE))), "harness.R"), globalenv())

manifest <- jsonlite::fromJSON(file.path("benchmarks", "out", "latency", "models.json"),
                               simplifyVector = FALSE)
models <- lapply(manifest, function(m) {
  list(data = read_factors(m$csv, c(unlist(m$factors), "cond")), REML = isTRUE(m$REML),
       formula = as.formula(m$formula))
})

serve(function(words) timed_lmer(models, words[1]))
