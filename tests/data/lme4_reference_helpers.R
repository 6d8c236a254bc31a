# Shared helpers for the scripts that regenerate interlace's lme4 reference
# data:
#   tests/data/make_lme4_references.R            -> lme4_references.json
#   tests/data/make_lme4_slope_references.R      -> lme4_slope_references.json
#   tests/data/make_lme4_inference_references.R  -> lme4_inference_references.json
#   tests/data/make_lme4_weights_references.R    -> lme4_weights_references.json
# Not meant to be run on its own: each of those scripts source()s this file
# (as tests/data/lme4_reference_helpers.R, so they are run from the repository
# root, e.g. Rscript tests/data/make_lme4_references.R).
#
# Defines, in the caller's global environment:
#   data_dir                       "tests/data"
#   fmt17, jnum, jarr, jobj, jmat  full-precision JSON numbers / arrays / matrices
#   capture                        run an expression, collecting its warnings and messages
#   write_data, check_roundtrip, write_data_files, read_checked, read_results_page
#                                  the CSV data files
#   opt_ctrl, ctrl                 the tight nloptwrap lmerControl every reference fit uses
#   fit_header, fixef_summary      fields common to the per-fit summaries
#   records, summarise_varcorr, summarise_ranef
#                                  data rows, VarCorr and conditional modes as JSON
#   reference_meta, data_meta      versions, generator and control for meta
#   write_reference_json           serialise and write a reference JSON file

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data_dir <- file.path("tests", "data")

# ---------------------------------------------------------------------------
# Full-precision JSON numbers. jsonlite caps numbers at 15 significant digits,
# so doubles are formatted here with %.17g (round-trips exactly) and inserted
# verbatim (toJSON(json_verbatim = TRUE), see write_reference_json).
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
# Matrix -> {rownames, colnames, values} with values row-major. With
# names_as_arrays = TRUE the row/col names are wrapped in I() so that a 1 x 1
# matrix keeps JSON arrays of names; with FALSE, auto_unbox turns a single name
# into a bare string (the format of lme4_references.json, kept as it was).
jmat <- function(m, names_as_arrays = TRUE) {
  m <- as.matrix(m)
  wrap <- if (names_as_arrays) I else identity
  list(rownames = wrap(rownames(m)), colnames = wrap(colnames(m)),
       values = lapply(seq_len(nrow(m)), function(i) jarr(m[i, ])))
}

# Evaluate expr, collecting (and muffling) its warnings and messages:
# warnings and messages separately, and all of them in the order raised.
capture <- function(expr) {
  warns <- character(0)
  msgs <- character(0)
  conds <- character(0)
  value <- withCallingHandlers(
    expr,
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      conds <<- c(conds, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, trimws(conditionMessage(m)))
      conds <<- c(conds, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  list(value = value, warnings = warns, messages = msgs, all = conds)
}

# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------
write_data <- function(df, path) {
  con <- if (grepl("\\.gz$", path)) gzfile(path, "w") else file(path, "w")
  on.exit(close(con))
  # Doubles with %.17g so values round-trip exactly; factors as their level
  # labels.
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

# files: list of list(df = <data frame>, file = <name in data_dir>).
write_data_files <- function(files) {
  for (f in files) {
    path <- file.path(data_dir, f$file)
    write_data(f$df, path)
    check_roundtrip(f$df, path)
    cat("wrote", path, "\n")
  }
  invisible(TRUE)
}

# Read data_dir/file with the named colClasses, checking the column names and
# the number of rows; `how` says how to make a missing file.
read_checked <- function(file, colClasses, nrow_expected,
                         how = "run the script that makes it first") {
  path <- file.path(data_dir, file)
  if (!file.exists(path)) stop(path, " is missing: ", how)
  df <- read.csv(path, colClasses = colClasses)
  stopifnot(identical(names(df), names(colClasses)), nrow(df) == nrow_expected)
  df
}

# tests/data/results_page.csv (made in Python by make_results_page_csv.py),
# with student_id and school_id as factors.
read_results_page <- function() {
  df <- read_checked("results_page.csv",
                     c(score = "numeric", hours_studied = "numeric",
                       prior_gpa = "numeric", student_id = "character",
                       school_id = "character"), 300L,
                     how = "run python3 tests/data/make_results_page_csv.py first")
  df$student_id <- factor(df$student_id)
  df$school_id <- factor(df$school_id)
  df
}

# ---------------------------------------------------------------------------
# Control: tight nloptwrap settings for every reference fit. (Defined here at
# top level of the sourcing script, so `control = ctrl` in a fit's call refers
# to this global `ctrl`.)
# ---------------------------------------------------------------------------
opt_ctrl <- list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                 xtol_rel = 1e-12, ftol_rel = 1e-14, maxeval = 1e5)
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = opt_ctrl)

# ---------------------------------------------------------------------------
# Per-fit summaries: the leading fields (identification and likelihood
# criteria) and the fixed-effects fields shared by make_lme4_references.R and
# make_lme4_slope_references.R.
# ---------------------------------------------------------------------------
fit_header <- function(name, spec, method, fit) {
  reml <- method == "REML"
  ll <- logLik(fit)
  list(
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
    df = as.integer(attr(ll, "df"))
  )
}

# fixef, fixef_se (sqrt of the diagonal of vcov) and vcov (see jmat).
fixef_summary <- function(fit, names_as_arrays = TRUE) {
  V <- as.matrix(vcov(fit))
  fe <- fixef(fit)
  list(fixef = jobj(fe),
       fixef_se = jobj(setNames(sqrt(diag(V)), names(fe))),
       vcov = jmat(V, names_as_arrays = names_as_arrays))
}

# ---------------------------------------------------------------------------
# meta and output
# ---------------------------------------------------------------------------
# R and package versions (<pkg>_version, in the order given), the command that
# generated the file, and the control settings.
# Rows of a data frame as records; doubles as full-precision numbers, factors
# and characters as strings.
records <- function(df) {
  lapply(seq_len(nrow(df)), function(i) {
    row <- lapply(names(df), function(nm) {
      v <- df[[nm]][i]
      if (is.double(v)) jnum(v) else as.character(v)
    })
    names(row) <- names(df)
    row
  })
}

summarise_varcorr <- function(fit) {
  vc <- VarCorr(fit)
  out <- lapply(vc, function(m) {
    list(cov = jmat(m),
         stddev = jobj(attr(m, "stddev")),
         correlation = jmat(attr(m, "correlation")))
  })
  names(out) <- names(vc)
  out
}

summarise_ranef <- function(fit) {
  re <- ranef(fit)
  out <- lapply(re, function(d) {
    cols <- lapply(colnames(d), function(cn) jobj(setNames(d[[cn]], rownames(d))))
    names(cols) <- colnames(d)
    cols
  })
  names(out) <- names(re)
  out
}


reference_meta <- function(script,
                           packages = c("lme4", "Matrix", "nloptr", "jsonlite")) {
  versions <- lapply(packages, function(p) as.character(packageVersion(p)))
  names(versions) <- paste0(packages, "_version")
  c(list(R_version = R.version.string),
    versions,
    list(generated_by = paste("Rscript", file.path(data_dir, script)),
         control = list(optimizer = "nloptwrap",
                        optCtrl = lapply(opt_ctrl, jnum))))
}

# meta$data: file name and row count of each model's data.
data_meta <- function(models) {
  lapply(models, function(s) list(file = s$file, nrow = nrow(s$data)))
}

write_reference_json <- function(x, file) {
  json <- toJSON(x, auto_unbox = TRUE, json_verbatim = TRUE, pretty = FALSE,
                 null = "null", na = "null")
  out_path <- file.path(data_dir, file)
  writeLines(json, out_path)
  cat("wrote", out_path, "\n")
  invisible(out_path)
}
