# lme4 side of benchmarks/run_benchmarks.py: a small fit server (serve in harness.R).
#
# Started once by the Python runner (Rscript benchmarks/lme4_fit.R, from the repo root).
# It loads lme4 and the data sets, says READY, then reads model keys from stdin, one per
# line ("page_REML", "sleepstudy_REML", "insteval_REML", "insteval_ML"). For each key it
# fits lmer() with default control and answers RESULT with: seconds (elapsed) and cpu_s
# (user + sys), timed with proc.time() around the lmer() call only (R startup, package
# loading and data reading are outside it); deviance (REMLcrit(fit) for REML fits,
# deviance(fit) for ML fits); feval; singular; convergence_messages (lme4's, besides the
# singular fit). Keeping one R process alive lets the runner alternate single fits: one
# interlace fit, one lme4 fit, one interlace fit, ...

# sys.source, not source: source() itself adds 0.3 MB to R's heap (lme4_scaling.R's gc max)
sys.source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                      value = TRUE))), "harness.R"), globalenv())

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

serve(function(words) timed_lmer(models, words[1]))
