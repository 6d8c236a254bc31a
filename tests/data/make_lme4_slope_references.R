# Regenerate the lme4 reference data for random slopes and nested factors
# that interlace's Python tests read. (The tests never run R; they read the
# files this script writes.) Companion of tests/data/make_lme4_references.R,
# with the same conventions (%.17g numbers, tight nloptwrap settings, versions
# in meta), which both take from tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (the script sources the shared helpers in
# tests/data/lme4_reference_helpers.R, which must be present):
#   python3 tests/data/make_slope_data.py     # only if crossed_slopes.csv is missing
#   Rscript tests/data/make_lme4_slope_references.R
#
# Writes, into tests/data/:
#   sleepstudy.csv      lme4::sleepstudy (Reaction, Days, Subject)
#   pastes.csv          lme4::Pastes     (strength, batch, cask, sample)
#   lme4_slope_references.json  fits of every model below, REML and ML
# and reads tests/data/crossed_slopes.csv, which is made in Python with numpy
# by tests/data/make_slope_data.py (not by this script).

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_slope_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, ctrl, meta, output

# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------
sleepstudy <- lme4::sleepstudy[, c("Reaction", "Days", "Subject")]
pastes <- lme4::Pastes[, c("strength", "batch", "cask", "sample")]

files <- list(
  sleepstudy = list(df = sleepstudy, file = "sleepstudy.csv"),
  pastes = list(df = pastes, file = "pastes.csv")
)
write_data_files(files)

crossed <- read_checked("crossed_slopes.csv",
                        c(subject = "character", item = "character",
                          cond = "character", t = "numeric", y = "numeric"), 960L,
                        how = "run python3 tests/data/make_slope_data.py first")
crossed$subject <- factor(crossed$subject)
crossed$item <- factor(crossed$item)
crossed$cond <- factor(crossed$cond, levels = c("a", "b"))

# ---------------------------------------------------------------------------
# New data for predict(): 4 rows per model, with one seen and one unseen level
# of every grouping factor (unseen levels get random effect 0 under
# allow.new.levels = TRUE). Grouping columns are character here; rows are
# stored in the JSON as records so Python can rebuild the frame.
# ---------------------------------------------------------------------------
nd_sleepstudy <- data.frame(
  Days = c(0, 4.5, 2, 12),
  Subject = c("308", "308", "999", "999"),
  stringsAsFactors = FALSE
)
# Grouping factors are batch and cask:batch. Rows: batch & cask:batch seen;
# batch seen, cask:batch unseen (cask "d" is not a level of Pastes$cask);
# both unseen; both seen.
nd_pastes <- data.frame(
  batch = c("A", "A", "Z", "J"),
  cask = c("a", "d", "a", "c"),
  stringsAsFactors = FALSE
)
# All four seen/unseen combinations of (subject, item).
nd_crossed <- data.frame(
  subject = c("S01", "S01", "S99", "S99"),
  item = c("I01", "I99", "I01", "I99"),
  cond = c("a", "b", "b", "a"),
  t = c(0, 0.25, 0.5, 1),
  stringsAsFactors = FALSE
)

# ---------------------------------------------------------------------------
# Fits (all with the tight control ctrl from the helpers)
# ---------------------------------------------------------------------------
models <- list(
  sleepstudy_corr = list(data = sleepstudy, file = "sleepstudy.csv",
                         formula = "Reaction ~ Days + (Days | Subject)",
                         newdata = nd_sleepstudy,
                         methods = c("REML", "ML")),
  sleepstudy_uncorr = list(data = sleepstudy, file = "sleepstudy.csv",
                           formula = "Reaction ~ Days + (Days || Subject)",
                           newdata = nd_sleepstudy,
                           methods = c("REML", "ML")),
  sleepstudy_slope_only = list(data = sleepstudy, file = "sleepstudy.csv",
                               formula = "Reaction ~ Days + (0 + Days | Subject)",
                               newdata = nd_sleepstudy,
                               methods = c("REML", "ML")),
  pastes_nested = list(data = pastes, file = "pastes.csv",
                       formula = "strength ~ 1 + (1 | batch/cask)",
                       newdata = nd_pastes,
                       methods = c("REML", "ML")),
  crossed_slopes = list(data = crossed, file = "crossed_slopes.csv",
                        formula = "y ~ t + cond + (1 + t | subject) + (1 | item)",
                        newdata = nd_crossed,
                        methods = c("REML", "ML")),
  crossed_cond_slope = list(data = crossed, file = "crossed_slopes.csv",
                            formula = "y ~ cond + (1 + cond | subject) + (1 | item)",
                            newdata = nd_crossed,
                            methods = c("REML", "ML"))
)

summarise_fit <- function(name, spec, method, fit, fit_warnings) {
  vcdf <- as.data.frame(VarCorr(fit))
  theta <- getME(fit, "theta")
  lower <- getME(fit, "lower")
  stopifnot(length(lower) == length(theta))
  names(lower) <- names(theta)
  pred <- predict(fit, newdata = spec$newdata, allow.new.levels = TRUE)
  cmp <- getME(fit, "devcomp")$cmp
  oi <- fit@optinfo
  c(
    fit_header(name, spec, method, fit),
    list(
      theta = jobj(theta),
      theta_lower = jobj(lower),
      sigma = jnum(sigma(fit)),
      sigma2 = jnum(sigma(fit)^2),
      varcorr = summarise_varcorr(fit),
      varcorr_df = lapply(seq_len(nrow(vcdf)), function(i) {
        list(grp = vcdf$grp[i],
             var1 = if (is.na(vcdf$var1[i])) NULL else vcdf$var1[i],
             var2 = if (is.na(vcdf$var2[i])) NULL else vcdf$var2[i],
             vcov = jnum(vcdf$vcov[i]), sdcor = jnum(vcdf$sdcor[i]))
      })),
    fixef_summary(fit),
    list(
      isSingular = isSingular(fit),
      ngrps = as.list(ngrps(fit)),
      ranef = summarise_ranef(fit),
      fitted = jarr(unname(fitted(fit))),
      predict_new = list(newdata = records(spec$newdata),
                         values = jarr(unname(pred))),
      devcomp = jobj(cmp[is.finite(cmp)]),
      optinfo = list(optimizer = oi$optimizer,
                     feval = oi$feval,
                     conv = oi$conv$opt,
                     messages = I(as.character(unlist(oi$conv$lme4$messages))),
                     warnings = I(as.character(unlist(oi$warnings))),
                     fit_warnings = I(as.character(fit_warnings))))
  )
}

fits <- list()
for (name in names(models)) {
  spec <- models[[name]]
  for (method in spec$methods) {
    key <- paste0(name, "_", method)
    t0 <- proc.time()[["elapsed"]]
    fit_cap <- capture(lmer(as.formula(spec$formula), data = spec$data,
                            REML = (method == "REML"), control = ctrl))
    dt <- proc.time()[["elapsed"]] - t0
    fit <- fit_cap$value
    fit_warnings <- fit_cap$all  # warnings and messages, in the order raised
    fits[[key]] <- summarise_fit(name, spec, method, fit, fit_warnings)
    cat(sprintf("%-30s logLik = %.10f  singular = %-5s  (%.1f s)\n", key,
                as.numeric(logLik(fit)), isSingular(fit), dt))
    for (w in unique(c(fit_warnings, unlist(fit@optinfo$conv$lme4$messages))))
      cat("    note:", w, "\n")
  }
}

meta <- c(reference_meta("make_lme4_slope_references.R"), list(
  notes = c(
    "criterion is REMLcrit(fit) for REML fits and deviance(fit) for ML fits",
    "vcov and every matrix {rownames, colnames, values} are row-major: values[i][j] = M[rownames[i], colnames[j]]; rownames/colnames are always arrays",
    paste("theta is getME(fit, 'theta') in lme4's order: random-effect terms sorted by decreasing",
          "number of levels of their grouping factor (ties keep formula order), and within a term",
          "the lower triangle of its relative Cholesky factor column by column",
          "(e.g. Subject.(Intercept), Subject.Days.(Intercept), Subject.Days);",
          "theta_lower is getME(fit, 'lower') (0 for diagonal entries, -Inf -> null for off-diagonal)"),
    paste("varcorr is VarCorr(fit), keyed by its element names (a || term gives one element per",
          "column, e.g. Subject and Subject.1): cov (covariance matrix, absolute scale),",
          "stddev and correlation; the residual sd is sigma"),
    "varcorr_df is as.data.frame(VarCorr(fit)) as records (var2 present on covariance rows only)",
    paste("ranef holds the conditional modes per grouping factor as ranef(fit) names them,",
          "{column: {level: value}}; ranef merges the terms of (Days || Subject) into one",
          "factor Subject with both columns"),
    "fitted holds fitted(fit) for every row of the data file, in file order",
    paste("predict_new.values is predict(fit, newdata, allow.new.levels = TRUE) for the rows in",
          "predict_new.newdata (grouping columns are strings; unseen levels get random effect 0)"),
    "devcomp is getME(fit, 'devcomp')$cmp (finite entries only)",
    paste("optinfo.fit_warnings holds warnings/messages raised by lmer() (e.g. 'boundary (singular)",
          "fit'); optinfo.messages are lme4's convergence-check messages"),
    paste("reruns reproduce criterion/logLik to ~1e-15 relative but parameters only to ~1e-7:",
          "the profiled criterion is flat at double precision and lme4's numerics round",
          "differently with memory alignment (ASLR); compare estimates with rtol ~1e-6, or",
          "evaluate your criterion at the stored theta")
  ),
  data = data_meta(models)
))

write_reference_json(list(meta = meta, fits = fits), "lme4_slope_references.json")
