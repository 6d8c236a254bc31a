# What the R side of the benchmarks shares (lme4_fit.R, lme4_inference.R, lme4_scaling.R
# source it), as benchmarks/harness.py is for the Python side: loading lme4, reading a CSV
# with its grouping columns as factors, the versions of R, lme4 and the BLAS, and the line
# protocol harness.py reads: one line "TAG\t<json>" per message; a long-lived driver
# (serve) says READY with the versions, then answers each request line on stdin with one
# RESULT line, until QUIT. jsonlite is loaded on the first message only, after anything
# is measured (lme4_scaling.R's peak RSS).

suppressPackageStartupMessages(library(lme4))

read_factors <- function(path, factors) {
  con <- if (grepl("\\.gz$", path)) gzfile(path) else file(path)
  d <- read.csv(con, colClasses = "character")
  for (nm in names(d)) {
    d[[nm]] <- if (nm %in% factors) factor(d[[nm]]) else as.double(d[[nm]])
  }
  d
}

# Numbers written with sprintf(fmt), as they are: jsonlite keeps 15 significant digits.
num <- function(x, fmt = "%.17g", array = length(x) != 1L) {
  s <- paste(sprintf(fmt, x), collapse = ",")
  structure(if (array) paste0("[", s, "]") else s, class = "json")
}

say <- function(tag, x) {
  cat(tag, "\t", jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, json_verbatim = TRUE),
      "\n", sep = "")
  flush(stdout())
}

versions <- function() {
  list(r_version = R.version.string, lme4_version = as.character(packageVersion("lme4")),
       blas = basename(sessionInfo()$BLAS))
}

# handle(words) answers one request line (split into words) with a list.
serve <- function(handle) {
  say("READY", versions())
  con <- file("stdin")
  open(con)
  while (length(line <- readLines(con, n = 1L)) > 0L) {
    words <- strsplit(trimws(line), "[[:space:]]+")[[1]]
    if (length(words) == 0L || words[1] == "QUIT") break
    say("RESULT", handle(words))
  }
}

# Fit models[[key]] (a list of data, formula, REML) with lmer() and default control, timed
# with proc.time() around lmer() only: seconds (elapsed), cpu_s (user + sys), the deviance
# (REMLcrit for REML fits), feval, singular and the count of lme4's convergence messages
# besides the singular fit. The request handler of the fit servers (lme4_fit.R,
# lme4_latency.R).
timed_lmer <- function(models, key) {
  m <- models[[key]]
  if (is.null(m)) stop("unknown model key: ", key)
  t0 <- proc.time()
  fit <- suppressMessages(lmer(m$formula, data = m$data, REML = m$REML))
  dt <- proc.time() - t0
  msgs <- unlist(fit@optinfo$conv$lme4$messages)
  list(seconds = num(dt[["elapsed"]], "%.6f"),
       cpu_s = num(dt[["user.self"]] + dt[["sys.self"]], "%.6f"),
       deviance = num(if (m$REML) REMLcrit(fit) else deviance(fit)),
       feval = as.integer(fit@optinfo$feval), singular = isSingular(fit),
       convergence_messages = length(msgs[!grepl("singular", msgs)]))
}
