# lme4 side of benchmarks/bench_inference.py: a small server for inference timings.
#
# Started once by the Python script (Rscript benchmarks/lme4_inference.R, from the repo
# root). It says READY (serve in harness.R), then reads one command per line from stdin
# and answers each with one RESULT line:
#
#   influence_page              system.time(influence(fit)) on the results-page model
#                               (lme4's influence.merMod; case deletion is its default)
#   bootmer_sleepstudy NSIM SEED   bootMer(fit, function(m) fixef(m), nsim = NSIM)
#   bootmer_insteval NSIM SEED     bootMer(fit, fixef, nsim = NSIM) on InstEval (REML)
#   QUIT
#
# Each fit (lmer, default control, REML) is made once, on first use, outside the clock;
# the clock (proc.time(): elapsed, and user + sys CPU) runs around influence() / bootMer()
# only. bootMer is plain: type = "parametric", parallel = "no" (single-threaded), the seed
# is set with set.seed(SEED) just before the call (outside the clock). Warnings and
# messages raised inside the timed call (singular refits, convergence) are counted and
# muffled. Keeping one R process alive lets the Python side alternate repetitions: one
# interlace call, one lme4 call, ... and warm-up calls are ordinary commands.

# sys.source, not source: source() itself adds 0.3 MB to R's heap (lme4_scaling.R's gc max)
sys.source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                      value = TRUE))), "harness.R"), globalenv())

specs <- list(
  page = list(path = file.path("tests", "data", "results_page.csv"),
              factors = c("student_id", "school_id"),
              formula = score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)),
  sleepstudy = list(path = file.path("tests", "data", "sleepstudy.csv"), factors = "Subject",
                    formula = Reaction ~ Days + (Days | Subject)),
  insteval = list(path = file.path("tests", "data", "insteval.csv.gz"),
                  factors = c("s", "d", "dept", "service"),
                  formula = y ~ service + (1 | s) + (1 | d) + (1 | dept))
)
fits <- list()
fit_seconds <- list()

get_fit <- function(name) {
  if (is.null(fits[[name]])) {
    s <- specs[[name]]
    # The data frame lives in the global environment under the model's name, and the
    # call names it (lmer(..., data = page)), so that getData(fit), which
    # influence.merMod uses, finds it again.
    assign(name, read_factors(s$path, s$factors), envir = globalenv())
    call <- bquote(lmer(.(s$formula), data = .(as.name(name)), REML = TRUE))
    t0 <- proc.time()
    fits[[name]] <<- suppressMessages(suppressWarnings(eval(call, globalenv())))
    fit_seconds[[name]] <<- (proc.time() - t0)[["elapsed"]]
  }
  fits[[name]]
}

# Run expr, timing it; count (and muffle) warnings and messages it raises.
timed <- function(expr) {
  n_warn <- 0L
  n_msg <- 0L
  t0 <- proc.time()
  value <- withCallingHandlers(expr,
    warning = function(w) { n_warn <<- n_warn + 1L; invokeRestart("muffleWarning") },
    message = function(m) { n_msg <<- n_msg + 1L; invokeRestart("muffleMessage") })
  dt <- proc.time() - t0
  list(value = value, seconds = dt[["elapsed"]],
       cpu_s = dt[["user.self"]] + dt[["sys.self"]] + dt[["user.child"]] + dt[["sys.child"]],
       n_warnings = n_warn, n_messages = n_msg)
}

run_influence <- function() {
  fit <- get_fit("page")
  r <- timed(influence(fit))
  cd <- cooks.distance(r$value)
  list(task = "influence_page", seconds = r$seconds, cpu_s = r$cpu_s,
       n_warnings = r$n_warnings, n_messages = r$n_messages,
       n_deletions = length(cd), cooksd = unname(as.numeric(cd)),
       fit_seconds = fit_seconds[["page"]])
}

run_bootmer <- function(name, nsim, seed) {
  fit <- get_fit(name)
  set.seed(seed)
  r <- if (name == "insteval") timed(bootMer(fit, fixef, nsim = nsim))
       else timed(bootMer(fit, function(m) fixef(m), nsim = nsim))
  t <- r$value$t
  ok <- stats::complete.cases(t)
  list(task = paste0("bootmer_", name), nsim = nsim, seed = seed,
       seconds = r$seconds, cpu_s = r$cpu_s,
       n_warnings = r$n_warnings, n_messages = r$n_messages,
       n_ok = sum(ok), names = colnames(t), estimate = unname(as.numeric(fixef(fit))),
       boot_sd = unname(apply(t[ok, , drop = FALSE], 2, sd)),
       fit_seconds = fit_seconds[[name]])
}

serve(function(words) {
  if (words[1] == "influence_page") {
    run_influence()
  } else if (words[1] %in% c("bootmer_sleepstudy", "bootmer_insteval")) {
    run_bootmer(sub("^bootmer_", "", words[1]), as.integer(words[2]), as.integer(words[3]))
  } else {
    stop("unknown command: ", paste(words, collapse = " "))
  }
})
