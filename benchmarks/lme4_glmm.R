# lme4 side of benchmarks/bench_glmm.py, run from the repository root in one of two ways.
#
#   Rscript benchmarks/lme4_glmm.R data
#     writes lme4's VerbAgg as benchmarks/out/glmm/verbagg.csv (r2 as 0/1, factors as
#     strings, the columns the model uses) and the level order of each factor as
#     verbagg_levels.json, so that pandas builds the same model; then exits.
#
#   Rscript benchmarks/lme4_glmm.R
#     a fit server (serve in harness.R): reads the manifest benchmarks/out/glmm/models.json
#     that bench_glmm.py wrote (datasets: CSV path and grouping columns; models: dataset,
#     formula, family, nAGQ), its CSVs (VerbAgg from lme4 itself), says READY, then answers
#     each model key on stdin: glmer() with default control, timed with proc.time() around
#     the glmer() call only; -2 logLik, fixef, theta, feval, singular and the warnings
#     glmer raised (convergence), muffled so that they do not pile up on stderr.

sys.source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                      value = TRUE))), "harness.R"), globalenv())

dir <- file.path("benchmarks", "out", "glmm")
verbagg <- lme4::VerbAgg[c("r2", "Anger", "Gender", "btype", "situ", "id", "item")]
verbagg$r2 <- as.integer(verbagg$r2 == "Y")

if (identical(commandArgs(TRUE), "data")) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  write.csv(verbagg, file.path(dir, "verbagg.csv"), row.names = FALSE)
  jsonlite::write_json(lapply(Filter(is.factor, verbagg), levels),
                       file.path(dir, "verbagg_levels.json"))
  quit(save = "no")
}

manifest <- jsonlite::fromJSON(file.path(dir, "models.json"), simplifyVector = FALSE)
data <- lapply(names(manifest$datasets), function(name) {
  if (name == "verbagg") verbagg
  else read_factors(manifest$datasets[[name]]$csv, unlist(manifest$datasets[[name]]$factors))
})
names(data) <- names(manifest$datasets)

timed_glmer <- function(key) {
  m <- manifest$models[[key]]
  if (is.null(m)) stop("unknown model key: ", key)
  warns <- character()
  fit <- withCallingHandlers({
    t0 <- proc.time()
    f <- glmer(as.formula(m$formula), data = data[[m$data]], family = m$family,
               nAGQ = m$nAGQ)
    dt <- proc.time() - t0
    f
  }, warning = function(w) {
    warns <<- c(warns, conditionMessage(w))
    invokeRestart("muffleWarning")
  }, message = function(msg) invokeRestart("muffleMessage"))
  list(seconds = num(dt[["elapsed"]], "%.6f"),
       cpu_s = num(dt[["user.self"]] + dt[["sys.self"]], "%.6f"),
       m2ll = num(-2 * as.numeric(logLik(fit))),
       fixef = as.list(fixef(fit)), theta = as.list(getME(fit, "theta")),
       feval = as.integer(fit@optinfo$feval), singular = isSingular(fit),
       warnings = I(warns))
}

serve(function(words) timed_glmer(words[1]))
