# lme4 side of benchmarks/run_benchmarks.py: a small fit server.
#
# Started once by the Python runner (Rscript benchmarks/lme4_fit.R, from the repo root).
# It loads lme4 and the data sets, prints one "READY" line, then reads model keys from
# stdin, one per line ("page_REML", "sleepstudy_REML", "insteval_REML", "insteval_ML").
# For each key it fits lmer() with default control and prints one line back:
#   RESULT <key> <elapsed s> <cpu s> <criterion> <feval> <singular> <n convergence messages>
# The clock (proc.time(), elapsed and user+sys) runs around the lmer() call only: R startup,
# package loading and data reading are outside it. Keeping one R process alive lets the
# runner alternate single fits: one interlace fit, one lme4 fit, one interlace fit, ...
# The criterion is REMLcrit(fit) for REML fits and deviance(fit) for ML fits.

suppressPackageStartupMessages(library(lme4))

read_factors <- function(path, factors) {
  con <- if (grepl("\\.gz$", path)) gzfile(path) else file(path)
  d <- read.csv(con, colClasses = "character")
  for (nm in names(d)) {
    d[[nm]] <- if (nm %in% factors) factor(d[[nm]]) else as.double(d[[nm]])
  }
  d
}

page <- read_factors(file.path("tests", "data", "results_page.csv"),
                     c("student_id", "school_id"))
sleepstudy <- read_factors(file.path("tests", "data", "sleepstudy.csv"), "Subject")
insteval <- read_factors(file.path("tests", "data", "insteval.csv.gz"),
                         c("s", "d", "dept", "service"))

models <- list(
  page_REML = list(data = page, REML = TRUE,
                   formula = score ~ hours_studied + prior_gpa +
                     (1 | student_id) + (1 | school_id)),
  sleepstudy_REML = list(data = sleepstudy, REML = TRUE,
                         formula = Reaction ~ Days + (Days | Subject)),
  insteval_REML = list(data = insteval, REML = TRUE,
                       formula = y ~ service + (1 | s) + (1 | d) + (1 | dept)),
  insteval_ML = list(data = insteval, REML = FALSE,
                     formula = y ~ service + (1 | s) + (1 | d) + (1 | dept))
)

si <- sessionInfo()
cat(sprintf("READY\t%s\t%s\t%s\n", R.version.string, as.character(packageVersion("lme4")),
            basename(si$BLAS)))
flush(stdout())

con <- file("stdin")
open(con)
while (length(key <- readLines(con, n = 1L)) > 0L) {
  key <- trimws(key)
  if (key == "" || key == "QUIT") break
  m <- models[[key]]
  if (is.null(m)) stop("unknown model key: ", key)
  t0 <- proc.time()
  fit <- suppressMessages(lmer(m$formula, data = m$data, REML = m$REML))
  dt <- proc.time() - t0
  crit <- if (m$REML) REMLcrit(fit) else deviance(fit)
  msgs <- unlist(fit@optinfo$conv$lme4$messages)
  msgs <- length(msgs[!grepl("singular", msgs)])  # isSingular is reported on its own
  cat(sprintf("RESULT\t%s\t%.6f\t%.6f\t%.17g\t%d\t%d\t%d\n", key, dt[["elapsed"]],
              dt[["user.self"]] + dt[["sys.self"]], crit,
              as.integer(fit@optinfo$feval), as.integer(isSingular(fit)), msgs))
  flush(stdout())
}
