# Regenerate the lme4 reference data that interlace's Python tests read.
# (The tests never run R; they read the files this script writes.)
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
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

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data_dir <- file.path("tests", "data")
if (!dir.exists(data_dir)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_references.R")
}

# ---------------------------------------------------------------------------
# Full-precision JSON numbers. jsonlite caps numbers at 15 significant digits,
# so doubles are formatted here with %.17g (round-trips exactly) and inserted
# verbatim (toJSON(json_verbatim = TRUE)).
# ---------------------------------------------------------------------------
fmt17 <- function(x) {
  x <- as.double(x)
  out <- sprintf("%.17g", x)
  out[!is.finite(x)] <- "null"
  out
}
jnum <- function(x) {            # one number
  stopifnot(length(x) == 1L)
  structure(fmt17(x), class = "json")
}
jarr <- function(x) {            # JSON array of numbers
  structure(paste0("[", paste(fmt17(x), collapse = ","), "]"), class = "json")
}
jobj <- function(x) {            # named numbers -> JSON object {name: number}
  stopifnot(!is.null(names(x)))
  out <- lapply(unname(x), jnum)
  names(out) <- names(x)
  out
}
jmat <- function(m) {            # matrix -> row-major with names
  list(rownames = rownames(m), colnames = colnames(m),
       values = lapply(seq_len(nrow(m)), function(i) jarr(m[i, ])))
}

# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------
write_data <- function(df, path) {
  con <- if (grepl("\\.gz$", path)) gzfile(path, "w") else file(path, "w")
  on.exit(close(con))
  # Doubles with %.17g so values round-trip exactly (all of these are
  # integer-valued anyway); factors as their level labels.
  out <- df
  for (nm in names(out)) {
    if (is.double(out[[nm]])) out[[nm]] <- fmt17(out[[nm]])
    else out[[nm]] <- as.character(out[[nm]])
  }
  write.csv(out, con, row.names = FALSE, quote = FALSE)
}

check_roundtrip <- function(df, path) {
  back <- read.csv(path, colClasses = "character")
  stopifnot(identical(names(back), names(df)), nrow(back) == nrow(df))
  for (nm in names(df)) {
    if (is.factor(df[[nm]])) {
      stopifnot(identical(back[[nm]], as.character(df[[nm]])))
    } else {
      stopifnot(identical(as.double(back[[nm]]), as.double(df[[nm]])))
    }
  }
  invisible(TRUE)
}

dyestuff <- lme4::Dyestuff[, c("Batch", "Yield")]
penicillin <- lme4::Penicillin[, c("diameter", "plate", "sample")]
insteval <- lme4::InstEval[, c("s", "d", "dept", "service", "y")]
insteval$y <- as.double(insteval$y)  # integer 1..5 in lme4

files <- list(
  dyestuff = list(df = dyestuff, file = "dyestuff.csv"),
  penicillin = list(df = penicillin, file = "penicillin.csv"),
  insteval = list(df = insteval, file = "insteval.csv.gz")
)
for (f in files) {
  path <- file.path(data_dir, f$file)
  write_data(f$df, path)
  check_roundtrip(f$df, path)
  cat("wrote", path, "\n")
}

results_path <- file.path(data_dir, "results_page.csv")
if (!file.exists(results_path)) {
  stop(results_path, " is missing: run python3 tests/data/make_results_page_csv.py first")
}
results_page <- read.csv(results_path,
                         colClasses = c("numeric", "numeric", "numeric",
                                        "character", "character"))
stopifnot(nrow(results_page) == 300L)
results_page$student_id <- factor(results_page$student_id)
results_page$school_id <- factor(results_page$school_id)

# ---------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------
opt_ctrl <- list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                 xtol_rel = 1e-12, ftol_rel = 1e-14, maxeval = 1e5)
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = opt_ctrl)

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
  reml <- method == "REML"
  ll <- logLik(fit)
  vc <- as.data.frame(VarCorr(fit))
  V <- as.matrix(vcov(fit))
  fe <- fixef(fit)
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
  out <- list(
    model = name,
    data_file = spec$file,
    formula = spec$formula,
    method = method,
    REML = reml,
    nobs = nobs(fit),
    criterion_name = if (reml) "REMLcrit" else "deviance",
    criterion = jnum(if (reml) REMLcrit(fit) else deviance(fit)),
    logLik = jnum(as.numeric(ll)),
    AIC = jnum(AIC(fit)),
    BIC = jnum(BIC(fit)),
    df = as.integer(attr(ll, "df")),
    theta = jobj(getME(fit, "theta")),
    sigma = jnum(sigma(fit)),
    sigma2 = jnum(sigma(fit)^2),
    varcomp = jobj(setNames(vc$vcov, vc$grp)),
    sdcomp = jobj(setNames(vc$sdcor, vc$grp)),
    fixef = jobj(fe),
    fixef_se = jobj(setNames(sqrt(diag(V)), names(fe))),
    vcov = jmat(V),
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
                   warnings = as.list(unlist(oi$warnings)))
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

meta <- list(
  R_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  Matrix_version = as.character(packageVersion("Matrix")),
  nloptr_version = as.character(packageVersion("nloptr")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = "Rscript tests/data/make_lme4_references.R",
  control = list(optimizer = "nloptwrap",
                 optCtrl = lapply(opt_ctrl, jnum)),
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
  data = lapply(models, function(s) list(file = s$file, nrow = nrow(s$data)))
)

json <- toJSON(list(meta = meta, fits = fits), auto_unbox = TRUE,
               json_verbatim = TRUE, pretty = FALSE, null = "null", na = "null")
out_path <- file.path(data_dir, "lme4_references.json")
writeLines(json, out_path)
cat("wrote", out_path, "\n")
