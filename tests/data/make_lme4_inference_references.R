# Regenerate the lme4 / lmerTest reference data for inference (likelihood-ratio
# tests, profile and Wald confidence intervals, Satterthwaite degrees of
# freedom, parametric bootstrap) that interlace's Python tests read. (The tests
# never run R; they read the file this script writes.) Companion of
# tests/data/make_lme4_references.R and make_lme4_slope_references.R, with the
# same conventions (%.17g numbers, tight nloptwrap settings, versions in meta),
# which all three take from tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite r-cran-lmertest
#
# Run from the repository root (the script sources the shared helpers in
# tests/data/lme4_reference_helpers.R, which must be present; takes a few
# minutes: two 1000-replicate parametric bootstraps):
#   Rscript tests/data/make_lme4_inference_references.R
#
# Reads, from tests/data/ (written by the other scripts, not by this one):
#   sleepstudy.csv      (make_lme4_slope_references.R)
#   dyestuff.csv        (make_lme4_references.R)
#   results_page.csv    (make_results_page_csv.py)
# Writes tests/data/lme4_inference_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_inference_references.R")
}
source(helpers)  # data_dir, JSON number helpers, capture, data I/O, ctrl, meta, output
# lmerTest is used through lmerTest:: only (not attached), so that every other
# fit here is a plain lme4 lmerMod and anova()/confint() are lme4's.
suppressPackageStartupMessages(invisible(loadNamespace("lmerTest")))

# Print the warnings and messages collected by capture().
show_notes <- function(label, cap) {
  for (w in unique(cap$warnings)) cat("    [", label, "] warning:", w, "\n")
  for (m in unique(cap$messages)) cat("    [", label, "] message:", m, "\n")
}

# ---------------------------------------------------------------------------
# Data (read from the CSVs the other scripts write)
# ---------------------------------------------------------------------------
sleepstudy <- read_checked("sleepstudy.csv",
                           c(Reaction = "numeric", Days = "numeric",
                             Subject = "character"), 180L)
sleepstudy$Subject <- factor(sleepstudy$Subject)

dyestuff <- read_checked("dyestuff.csv",
                         c(Batch = "character", Yield = "numeric"), 30L)
dyestuff$Batch <- factor(dyestuff$Batch)

results_page <- read_results_page()

# ---------------------------------------------------------------------------
# Control. Every fit gets ctrl, the tight control defined in the helpers (the
# symbol `ctrl` is what lands in the fit's call, and bootMer evaluates
# fit@call$control to control its refits).
# ---------------------------------------------------------------------------
fit_info <- function(fit) {
  list(REML = isREML(fit),
       logLik = jnum(as.numeric(logLik(fit))),
       criterion = jnum(if (isREML(fit)) REMLcrit(fit) else deviance(fit)),
       theta = jobj(getME(fit, "theta")),
       sigma = jnum(sigma(fit)),
       fixef = jobj(fixef(fit)),
       isSingular = isSingular(fit))
}

# ---------------------------------------------------------------------------
# 1. anova(m1, m2): likelihood-ratio tests
# ---------------------------------------------------------------------------
anova_table <- function(a) {
  a <- as.data.frame(a)
  cols <- lapply(names(a), function(cn) {
    v <- a[[cn]]
    if (cn %in% c("npar", "Df")) I(ifelse(is.na(v), NA_integer_, as.integer(v)))
    else jarr(v)
  })
  names(cols) <- names(a)
  list(rownames = I(rownames(a)), columns = cols)
}

anova_entry <- function(cap, data_file, f1, f2, fitted_REML, refit, note,
                        models = NULL) {
  show_notes("anova", cap)
  out <- list(data_file = data_file,
              m1_formula = f1, m2_formula = f2,
              fitted_REML = fitted_REML,
              refit = refit,
              note = note,
              table = anova_table(cap$value),
              heading = I(attr(cap$value, "heading")),
              messages = I(cap$messages),
              warnings = I(cap$warnings))
  if (!is.null(models)) out$models <- models
  out
}

f_ss1 <- "Reaction ~ 1 + (Days | Subject)"
f_ss2 <- "Reaction ~ Days + (Days | Subject)"
f_rp1 <- "score ~ hours_studied + (1 | student_id) + (1 | school_id)"
f_rp2 <- "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)"

anova_results <- list()
cat("anova\n")

# sleepstudy, REML fits
m1 <- lmer(Reaction ~ 1 + (Days | Subject), data = sleepstudy, REML = TRUE, control = ctrl)
m2 <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = TRUE, control = ctrl)
# What anova(refit = TRUE) compares: lme4:::refitML(), i.e. bobyqa with its
# default settings started at the REML theta (not the tight control above).
ss_refit_models <- list(m1 = fit_info(refitML(m1)), m2 = fit_info(refitML(m2)))
cap <- capture(anova(m1, m2))
anova_results$sleepstudy_refit <- anova_entry(
  cap, "sleepstudy.csv", f_ss1, f_ss2, TRUE, TRUE,
  paste("anova(m1, m2) with both models fitted REML = TRUE: lme4 refits each with",
        "lme4:::refitML() (optimizer bobyqa at its default settings, started from the",
        "REML theta) and compares ML log-likelihoods; models holds those refits"),
  models = ss_refit_models)
cap <- capture(anova(m1, m2, refit = FALSE))
anova_results$sleepstudy_norefit <- anova_entry(
  cap, "sleepstudy.csv", f_ss1, f_ss2, TRUE, FALSE,
  paste("anova(m1, m2, refit = FALSE) of the REML fits: REML log-likelihoods compared",
        "as lme4 reports them (not a valid LRT for different fixed effects)"),
  models = list(m1 = fit_info(m1), m2 = fit_info(m2)))
# Same test from tight ML fits (the converged ML optimum; differs from the
# refit = TRUE table only by refitML's looser optimizer tolerance).
m1_ml <- lmer(Reaction ~ 1 + (Days | Subject), data = sleepstudy, REML = FALSE, control = ctrl)
m2_ml <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE, control = ctrl)
cap <- capture(anova(m1_ml, m2_ml, model.names = c("m1", "m2")))
anova_results$sleepstudy_ML_tight <- anova_entry(
  cap, "sleepstudy.csv", f_ss1, f_ss2, FALSE, TRUE,
  paste("anova of the same models fitted REML = FALSE with the tight control",
        "(model.names = c('m1', 'm2')); the converged ML reference"),
  models = list(m1 = fit_info(m1_ml), m2 = fit_info(m2_ml)))

# results page, REML fits (singular: a variance component is at 0)
m1 <- lmer(score ~ hours_studied + (1 | student_id) + (1 | school_id),
           data = results_page, REML = TRUE, control = ctrl)
m2 <- lmer(score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id),
           data = results_page, REML = TRUE, control = ctrl)
rp_refit_models <- list(m1 = fit_info(refitML(m1)), m2 = fit_info(refitML(m2)))
cap <- capture(anova(m1, m2))
anova_results$results_page_refit <- anova_entry(
  cap, "results_page.csv", f_rp1, f_rp2, TRUE, TRUE,
  paste("anova(m1, m2) with both models fitted REML = TRUE: lme4 refits each with",
        "lme4:::refitML() (optimizer bobyqa at its default settings, started from the",
        "REML theta) and compares ML log-likelihoods; models holds those refits"),
  models = rp_refit_models)
cap <- capture(anova(m1, m2, refit = FALSE))
anova_results$results_page_norefit <- anova_entry(
  cap, "results_page.csv", f_rp1, f_rp2, TRUE, FALSE,
  paste("anova(m1, m2, refit = FALSE) of the REML fits: REML log-likelihoods compared",
        "as lme4 reports them (not a valid LRT for different fixed effects)"),
  models = list(m1 = fit_info(m1), m2 = fit_info(m2)))
m1_ml <- lmer(score ~ hours_studied + (1 | student_id) + (1 | school_id),
              data = results_page, REML = FALSE, control = ctrl)
m2_ml <- lmer(score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id),
              data = results_page, REML = FALSE, control = ctrl)
cap <- capture(anova(m1_ml, m2_ml, model.names = c("m1", "m2")))
anova_results$results_page_ML_tight <- anova_entry(
  cap, "results_page.csv", f_rp1, f_rp2, FALSE, TRUE,
  paste("anova of the same models fitted REML = FALSE with the tight control",
        "(model.names = c('m1', 'm2')); the converged ML reference"),
  models = list(m1 = fit_info(m1_ml), m2 = fit_info(m2_ml)))

for (k in names(anova_results)) {
  tab <- anova_results[[k]]$table
  cat(sprintf("  %-28s Chisq = %s  Df = %s\n", k,
              as.character(tab$columns$Chisq), paste(tab$columns$Df, collapse = ",")))
}

# ---------------------------------------------------------------------------
# 2. confint: profile and Wald
# ---------------------------------------------------------------------------
ci_entry <- function(ci_cap) {
  ci <- ci_cap$value
  list(rownames = I(rownames(ci)),
       colnames = I(colnames(ci)),
       lower = jarr(ci[, 1]),
       upper = jarr(ci[, 2]),
       warnings = I(ci_cap$warnings),
       messages = I(ci_cap$messages))
}

# The profile itself (as.data.frame(profile)): for each parameter, the focal
# values and signed square-root deviance zeta there; confint interpolates these
# with splines, so comparing zeta at the stored points is tighter than
# comparing the interval ends.
profile_points <- function(pr) {
  d <- as.data.frame(pr)
  pars <- levels(d$.par)
  out <- lapply(pars, function(p) {
    s <- d[d$.par == p, ]
    list(focal = jarr(s$.focal), zeta = jarr(s$.zeta))
  })
  names(out) <- pars
  out
}

ci_specs <- list(
  sleepstudy = list(data_file = "sleepstudy.csv", formula = f_ss2,
                    fit = function(reml) lmer(Reaction ~ Days + (Days | Subject),
                                              data = sleepstudy, REML = reml,
                                              control = ctrl)),
  dyestuff = list(data_file = "dyestuff.csv", formula = "Yield ~ 1 + (1 | Batch)",
                  fit = function(reml) lmer(Yield ~ 1 + (1 | Batch),
                                            data = dyestuff, REML = reml,
                                            control = ctrl))
)

confint_profile <- list()
confint_wald <- list()
cat("confint\n")
for (name in names(ci_specs)) {
  spec <- ci_specs[[name]]
  for (method in c("REML", "ML")) {
    key <- paste0(name, "_", method)
    fit <- spec$fit(method == "REML")
    t0 <- proc.time()[["elapsed"]]
    pr_cap <- capture(profile(fit, signames = FALSE))
    ci_cap <- capture(confint(pr_cap$value, level = 0.95))
    dt <- proc.time()[["elapsed"]] - t0
    # Also the one-call form the brief names, to check it matches.
    ci1_cap <- capture(confint(fit, method = "profile", oldNames = FALSE))
    stopifnot(isTRUE(all.equal(unname(ci1_cap$value), unname(ci_cap$value),
                               tolerance = 0)))
    stopifnot(identical(rownames(ci1_cap$value), rownames(ci_cap$value)))
    show_notes(paste(key, "profile"), pr_cap)
    show_notes(paste(key, "confint"), ci1_cap)
    e <- ci_entry(ci1_cap)
    e$profile_warnings <- I(pr_cap$warnings)
    confint_profile[[key]] <- c(
      list(data_file = spec$data_file, formula = spec$formula, method = method,
           REML = method == "REML", call = "confint(fit, method = 'profile', oldNames = FALSE)"),
      e,
      list(fit = fit_info(fit),
           # profile() always profiles the ML deviance: lme4:::devfun2() starts
           # with refitML(fit) (bobyqa, default tolerances, for a REML fit; the
           # fit itself for an ML fit). profile_base is that ML fit.
           profile_base = fit_info(refitML(fit)),
           profile = profile_points(pr_cap$value),
           seconds = jnum(dt)))
    w_cap <- capture(confint(fit, method = "Wald", oldNames = FALSE))
    show_notes(paste(key, "Wald"), w_cap)
    confint_wald[[key]] <- c(
      list(data_file = spec$data_file, formula = spec$formula, method = method,
           REML = method == "REML", call = "confint(fit, method = 'Wald', oldNames = FALSE)"),
      ci_entry(w_cap),
      fixef_summary(fit)[c("fixef", "fixef_se")])
    ci <- ci1_cap$value
    cat(sprintf("  %-16s profile (%.1f s)\n", key, dt))
    for (i in seq_len(nrow(ci)))
      cat(sprintf("      %-30s %12.6f %12.6f\n", rownames(ci)[i], ci[i, 1], ci[i, 2]))
  }
}

# ---------------------------------------------------------------------------
# 3. Satterthwaite (lmerTest)
# ---------------------------------------------------------------------------
satt_specs <- list(
  sleepstudy = list(data_file = "sleepstudy.csv", formula = f_ss2,
                    fit = function(reml) lmerTest::lmer(Reaction ~ Days + (Days | Subject),
                                                        data = sleepstudy, REML = reml,
                                                        control = ctrl)),
  results_page = list(data_file = "results_page.csv", formula = f_rp2,
                      fit = function(reml) lmerTest::lmer(
                        score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id),
                        data = results_page, REML = reml, control = ctrl))
)
satterthwaite <- list()
cat("satterthwaite\n")
for (name in names(satt_specs)) {
  spec <- satt_specs[[name]]
  for (method in c("REML", "ML")) {
    key <- paste0(name, "_", method)
    fit_cap <- capture(spec$fit(method == "REML"))
    fit <- fit_cap$value
    stopifnot(is(fit, "lmerModLmerTest"))
    sm_cap <- capture(summary(fit))
    show_notes(paste(key, "lmer"), fit_cap)
    show_notes(paste(key, "summary"), sm_cap)
    co <- sm_cap$value$coefficients
    cols <- lapply(colnames(co), function(cn) jobj(setNames(co[, cn], rownames(co))))
    names(cols) <- colnames(co)
    satterthwaite[[key]] <- list(
      data_file = spec$data_file, formula = spec$formula, method = method,
      REML = method == "REML",
      call = "summary(lmerTest::lmer(formula, data, REML = REML, control = ctrl))$coefficients",
      rownames = I(rownames(co)),
      colnames = I(colnames(co)),
      coefficients = cols,
      # lmerTest's asymptotic covariance of (theta, sigma), from a numDeriv Hessian
      vcov_varpar = jmat(structure(fit@vcov_varpar,
                                   dimnames = rep(list(c(names(getME(fit, "theta")), "sigma")), 2))),
      fit = fit_info(fit),
      fit_warnings = I(c(fit_cap$warnings, fit_cap$messages)),
      summary_warnings = I(c(sm_cap$warnings, sm_cap$messages)))
    cat(sprintf("  %-20s\n", key))
    print(signif(co, 8))
  }
}

# ---------------------------------------------------------------------------
# 4. bootMer (parametric bootstrap)
# ---------------------------------------------------------------------------
boot_fun <- function(m) c(fixef(m), sigma = sigma(m), getME(m, "theta"))
nsim <- 1000L
boot_seed <- 101L

summarise_boot <- function(bb, time, label) {
  tt <- bb$t
  n_na <- sum(!stats::complete.cases(tt))
  stats <- lapply(colnames(tt), function(cn) {
    v <- tt[, cn]
    q <- stats::quantile(v, c(0.025, 0.975), na.rm = TRUE, names = FALSE, type = 7)
    list(t0 = jnum(bb$t0[[cn]]),
         mean = jnum(mean(v, na.rm = TRUE)),
         sd = jnum(stats::sd(v, na.rm = TRUE)),
         q025 = jnum(q[1]),
         q975 = jnum(q[2]),
         n_na = sum(is.na(v)))
  })
  names(stats) <- colnames(tt)
  qs <- lapply(colnames(tt), function(cn)
    stats::quantile(tt[, cn], c(0.025, 0.975), na.rm = TRUE, names = FALSE, type = 7))
  names(qs) <- colnames(tt)
  msgs <- attr(bb, "boot.all.msgs")
  tab <- function(x) {
    if (length(x) == 0) return(setNames(list(), character(0)))
    as.list(setNames(as.integer(x), names(x)))
  }
  cat(sprintf("  %-12s elapsed %.2f s, %d NA replicates\n", label,
              time[["elapsed"]], n_na))
  for (cn in colnames(tt))
    cat(sprintf("      %-26s mean %12.6f sd %10.6f  [%12.6f, %12.6f]\n", cn,
                mean(tt[, cn], na.rm = TRUE), stats::sd(tt[, cn], na.rm = TRUE),
                qs[[cn]][1], qs[[cn]][2]))
  list(nsim = bb$R,
       n_na_replicates = n_na,
       n_failed = as.integer(attr(bb, "bootFail")),
       elapsed_seconds = jnum(time[["elapsed"]]),
       user_seconds = jnum(time[["user.self"]]),
       system_seconds = jnum(time[["sys.self"]]),
       statistics = stats,
       refit_messages = list(message = tab(msgs[["factory-message"]]),
                             warning = tab(msgs[["factory-warning"]]),
                             error = tab(msgs[["factory-error"]])))
}

cat("bootMer\n")
# (a) the tight-control REML fit. bootMer evaluates fit@call$control (the
# symbol ctrl, here at top level) and passes it to refit(), so every refit
# uses the same tight nloptwrap settings as the original fit.
fit_boot <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                 REML = TRUE, control = ctrl)
bb_time <- system.time(
  bb_cap <- capture(bootMer(fit_boot, FUN = boot_fun, nsim = nsim,
                            type = "parametric", use.u = FALSE, seed = boot_seed))
)
show_notes("bootMer tight", bb_cap)
bb <- bb_cap$value
boot_tight <- summarise_boot(bb, bb_time, "tight")
boot_tight$refit_control <- paste(
  "the fit's control (tight nloptwrap optCtrl, as in meta.control): bootMer passes",
  "eval(fit@call$control) to refit()")
boot_tight$warnings <- I(bb_cap$warnings)
boot_tight$messages <- I(bb_cap$messages)
boot_tight$fit <- fit_info(fit_boot)
boot_tight$replicates <- list(
  "(Intercept)" = jarr(bb$t[, "(Intercept)"]),
  Days = jarr(bb$t[, "Days"]))

# (b) lme4's default control (what lme4 users see and time): the fit's call
# has no control, so bootMer's refits use lmerControl() defaults too.
fit_boot_default <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                         REML = TRUE)
bbd_time <- system.time(
  bbd_cap <- capture(bootMer(fit_boot_default, FUN = boot_fun, nsim = nsim,
                             type = "parametric", use.u = FALSE, seed = boot_seed))
)
show_notes("bootMer default", bbd_cap)
bbd <- bbd_cap$value
boot_default <- summarise_boot(bbd, bbd_time, "default")
boot_default$refit_control <- paste(
  "lme4 defaults: the fit was made with lmer(..., REML = TRUE) and no control, so",
  "bootMer's refits use lmerControl() (nloptwrap, default tolerances)")
boot_default$warnings <- I(bbd_cap$warnings)
boot_default$messages <- I(bbd_cap$messages)
boot_default$fit <- fit_info(fit_boot_default)
# Timing is noisy (~5 %): time the same default-control bootMer twice more
# and keep all three elapsed times (the first is elapsed_seconds).
extra <- vapply(1:2, function(i) system.time(suppressWarnings(suppressMessages(
  bootMer(fit_boot_default, FUN = boot_fun, nsim = nsim, type = "parametric",
          use.u = FALSE, seed = boot_seed))))[["elapsed"]], 0)
boot_default$elapsed_seconds_repeats <- jarr(c(bbd_time[["elapsed"]], extra))
cat("  default bootMer elapsed, 3 runs:", sprintf("%.2f", c(bbd_time[["elapsed"]], extra)), "s\n")
boot_default$max_abs_diff_fixef_replicates_vs_tight <- jnum(
  max(abs(bbd$t[, c("(Intercept)", "Days")] - bb$t[, c("(Intercept)", "Days")]),
      na.rm = TRUE))

bootmer <- list(
  data_file = "sleepstudy.csv",
  formula = f_ss2,
  method = "REML",
  call = paste("bootMer(fit, FUN = function(m) c(fixef(m), sigma = sigma(m),",
               "getME(m, 'theta')), nsim = 1000, type = 'parametric', use.u = FALSE,",
               "seed = 101)"),
  nsim = nsim,
  seed = boot_seed,
  RNGkind = I(RNGkind()),
  statistic_names = I(colnames(bb$t)),
  quantile_type = 7L,
  tight = boot_tight,
  default_control = boot_default)

# ---------------------------------------------------------------------------
# Write
# ---------------------------------------------------------------------------
si <- sessionInfo()
meta <- c(reference_meta("make_lme4_inference_references.R",
                         packages = c("lme4", "lmerTest", "Matrix", "nloptr",
                                      "numDeriv", "jsonlite")), list(
  machine = list(platform = R.version$platform,
                 cpu_cores = parallel::detectCores(),
                 BLAS = if (is.null(si$BLAS)) "" else si$BLAS,
                 LAPACK = if (is.null(si$LAPACK)) "" else si$LAPACK),
  notes = c(
    paste("every fit uses meta.control unless stated (bootmer.default_control);",
          "Subject, Batch, student_id, school_id are factors"),
    paste("anova.*.table: {rownames, columns: {npar, AIC, BIC, logLik, deviance, Chisq,",
          "Df, Pr(>Chisq)}} with one entry per row (rows sorted by npar as lme4 does;",
          "null for NA in the first row)"),
    paste("anova *_refit: REML fits, refit = TRUE (default): lme4 refits with",
          "lme4:::refitML(), which runs bobyqa at its default tolerances from the REML",
          "theta, so those logLiks are ML maxima only to bobyqa's tolerance;",
          "*_ML_tight holds the same LRT from tight REML = FALSE fits"),
    paste("anova *_norefit: refit = FALSE, REML log-likelihoods compared as lme4 reports",
          "them (a REML LRT between different fixed effects is not a valid test)"),
    paste("confint_profile: confint(fit, method = 'profile', oldNames = FALSE) at level",
          "0.95 with profile() defaults; profile uses the fit's optimizer and optCtrl.",
          "The ends are spline interpolations of the profile's zeta on a grid, so they",
          "carry interpolation error (compare with rtol ~1e-3); profile.{par}: focal",
          "values and zeta (signed sqrt of the deviance/REML-criterion change) from",
          "as.data.frame(profile(fit, signames = FALSE)), tighter to compare"),
    paste("lme4 1.1.31's profile() profiles the ML deviance even for REML fits",
          "(lme4:::devfun2 begins with refitML(fit)), so confint_profile *_REML and *_ML",
          "agree up to refitML's bobyqa tolerance (profile_base is the ML fit profiled);",
          "only the Wald intervals differ between REML and ML"),
    paste("confint rownames with oldNames = FALSE: sd_(Intercept)|Subject,",
          "cor_Days.(Intercept)|Subject, sd_Days|Subject, sigma, then fixed effects;",
          "Wald rows for variance parameters are NA -> null"),
    paste("satterthwaite: summary(lmerTest::lmer(...))$coefficients columns Estimate,",
          "Std. Error, df, t value, Pr(>|t|); lmerTest differentiates the deviance",
          "numerically (numDeriv), so df is accurate to a few significant digits only"),
    paste("bootmer: statistics over replicates: mean, sd (n - 1), 2.5/97.5 % quantiles",
          "(type 7), NA removed; replicates holds every replicate of the two fixed",
          "effects in replicate order; elapsed_seconds is system.time(bootMer(...)) on",
          "meta.machine (single process, parallel = 'no'); simulated responses depend",
          "on the seed and RNGkind only, so tight and default_control see the same",
          "simulated data and differ only through optimizer tolerance")
  )
))

write_reference_json(list(meta = meta,
                          anova = anova_results,
                          confint_profile = confint_profile,
                          confint_wald = confint_wald,
                          satterthwaite = satterthwaite,
                          bootmer = bootmer),
                     "lme4_inference_references.json")
