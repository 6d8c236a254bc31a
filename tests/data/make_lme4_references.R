# Regenerate the lme4 reference data that interlace's Python tests read.
# (The tests never run R; they read the files this script writes.)
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (the script sources the shared helpers in
# tests/data/lme4_reference_helpers.R, which must be present):
#   python3 tests/data/make_results_page_csv.py     # only if results_page.csv is missing
#   Rscript tests/data/make_lme4_references.R
#
# Writes, into tests/data/:
#   dyestuff.csv        lme4::Dyestuff   (Batch, Yield)
#   penicillin.csv      lme4::Penicillin (diameter, plate, sample)
#   insteval.csv.gz     lme4::InstEval   (s, d, dept, service, y; factor labels)
#   lme4_references.json  fits of every model below, REML and ML
# and reads tests/data/results_page.csv, which is made in Python with numpy
# by tests/data/make_results_page_csv.py (not by this script).

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, ctrl, meta, output

# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------
dyestuff <- lme4::Dyestuff[, c("Batch", "Yield")]
penicillin <- lme4::Penicillin[, c("diameter", "plate", "sample")]
insteval <- lme4::InstEval[, c("s", "d", "dept", "service", "y")]
insteval$y <- as.double(insteval$y)  # integer 1..5 in lme4

files <- list(
  dyestuff = list(df = dyestuff, file = "dyestuff.csv"),
  penicillin = list(df = penicillin, file = "penicillin.csv"),
  insteval = list(df = insteval, file = "insteval.csv.gz")
)
write_data_files(files)

results_page <- read_results_page()

# ---------------------------------------------------------------------------
# Fits (all with the tight control ctrl from the helpers)
# ---------------------------------------------------------------------------
models <- list(
  dyestuff = list(data = dyestuff, file = "dyestuff.csv",
                  formula = "Yield ~ 1 + (1 | Batch)",
                  methods = c("REML", "ML")),
  penicillin = list(data = penicillin, file = "penicillin.csv",
                    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)",
                    methods = c("REML", "ML")),
  results_page = list(data = results_page, file = "results_page.csv",
                      formula = "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)",
                      methods = c("REML", "ML")),
  results_page_reduced = list(data = results_page, file = "results_page.csv",
                              formula = "score ~ hours_studied + (1 | student_id) + (1 | school_id)",
                              methods = c("REML", "ML")),
  insteval = list(data = insteval, file = "insteval.csv.gz",
                  formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
                  methods = c("REML", "ML"),
                  fitted_every = 37L)
)

summarise_fit <- function(name, spec, method, fit) {
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit)
  fv <- unname(fitted(fit))
  n <- length(fv)
  if (!is.null(spec$fitted_every)) {
    rows0 <- seq(0L, n - 1L, by = spec$fitted_every)  # 0-based row indices
    fitted_rows <- rows0
    fitted_vals <- fv[rows0 + 1L]
  } else {
    fitted_rows <- NULL
    fitted_vals <- fv
  }
  blups <- lapply(re, function(d) {
    stopifnot(identical(colnames(d), "(Intercept)"))
    v <- d[["(Intercept)"]]
    names(v) <- rownames(d)
    jobj(v)
  })
  cmp <- getME(fit, "devcomp")$cmp
  oi <- fit@optinfo
  out <- c(
    fit_header(name, spec, method, fit),
    list(
      theta = jobj(getME(fit, "theta")),
      sigma = jnum(sigma(fit)),
      sigma2 = jnum(sigma(fit)^2),
      varcomp = jobj(setNames(vc$vcov, vc$grp)),
      sdcomp = jobj(setNames(vc$sdcor, vc$grp))),
    # vcov row/col names unboxed (a bare string for 1 x 1), as this file always had
    fixef_summary(fit, names_as_arrays = FALSE),
    list(
      isSingular = isSingular(fit),
      ngrps = as.list(ngrps(fit)),
      ranef = blups,
      fitted_rows = fitted_rows,
      fitted = jarr(fitted_vals),
      devcomp = jobj(cmp[is.finite(cmp)]),
      optinfo = list(optimizer = oi$optimizer,
                     feval = oi$feval,
                     conv = oi$conv$opt,
                     messages = as.list(unlist(oi$conv$lme4$messages)),
                     warnings = as.list(unlist(oi$warnings))))
  )
  if (is.null(fitted_rows)) out$fitted_rows <- NULL
  out
}

fits <- list()
for (name in names(models)) {
  spec <- models[[name]]
  for (method in spec$methods) {
    key <- paste0(name, "_", method)
    t0 <- proc.time()[["elapsed"]]
    fit <- lmer(as.formula(spec$formula), data = spec$data,
                REML = (method == "REML"), control = ctrl)
    dt <- proc.time()[["elapsed"]] - t0
    fits[[key]] <- summarise_fit(name, spec, method, fit)
    cat(sprintf("%-28s logLik = %.10f  (%.1f s)\n", key, as.numeric(logLik(fit)), dt))
  }
}

meta <- c(reference_meta("make_lme4_references.R"), list(
  notes = c(
    "criterion is REMLcrit(fit) for REML fits and deviance(fit) for ML fits",
    "vcov is row-major: values[i][j] = vcov[rownames[i], colnames[j]]",
    "varcomp/sdcomp come from as.data.frame(VarCorr(fit)) keyed by grp (incl. Residual)",
    "ranef holds the conditional modes (BLUPs) of the intercepts, per factor {level: value}",
    "fitted holds fitted(fit); where fitted_rows is present it gives the 0-based rows of the values",
    "devcomp is getME(fit, 'devcomp')$cmp (finite entries only)",
    paste("reruns reproduce criterion/logLik to ~1e-15 relative but parameters only to ~1e-7",
          "(penicillin_REML theta): the profiled criterion is flat at double precision and",
          "lme4's numerics round differently with memory alignment (ASLR); compare estimates",
          "with rtol ~1e-6, or evaluate your criterion at the stored theta")
  ),
  data = data_meta(models)
))

write_reference_json(list(meta = meta, fits = fits), "lme4_references.json")
