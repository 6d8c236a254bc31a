# Regenerate the lme4 reference data for Gaussian LMMs fitted with prior
# weights (lmer(weights = )) and with offsets (offset() in the formula, or
# lmer's offset = argument) that interlace's Python tests read. (The tests
# never run R; they read the files this script writes.) Companion of
# tests/data/make_lme4_slope_references.R, with the same conventions (%.17g
# numbers, tight nloptwrap settings, versions in meta), which both take from
# tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (the script sources the shared helpers in
# tests/data/lme4_reference_helpers.R, which must be present):
#   python3 tests/data/make_slope_data.py     # only if crossed_slopes.csv is missing
#   Rscript tests/data/make_lme4_weights_references.R
#
# Reads tests/data/crossed_slopes.csv (made in Python with numpy by
# tests/data/make_slope_data.py, not by this script) and writes, into
# tests/data/:
#   lmm_weights.csv     crossed_slopes.csv plus, with i = row number 1..960,
#                       w = 0.5 + ((i - 1) %% 7) / 4  (prior weights, 0.5 .. 2),
#                       expo = 1 + ((i - 1) %% 5)      (offset log(expo)),
#                       y_far = y + 1e6
#   lme4_weights_references.json  fits of every model below
#
# How lme4 (the version recorded in meta) defines the weighted criteria
# (src/respModule.cpp, lmerResp::Laplace, with d_ldW = sum(log(weights));
# R's devCrit() uses the same formulas when it recomputes one criterion from
# the other):
#   deviance = ldL2 - sum(log(w)) + n * (1 + log(2 * pi * pwrss / n))
#   REMLcrit = ldL2 - sum(log(w)) + ldRX2 + (n - p) * (1 + log(2 * pi * pwrss / (n - p)))
# with n = the number of rows (not sum(w)), p = ncol(X),
# ldL2 = log det(Lambda' Z' W Z Lambda + I), W = diag(w),
# pwrss = sum(w * (y - mu)^2) + |u|^2, mu = offset + X beta + Z Lambda u, and
# sigma^2 = pwrss / n (ML) or pwrss / (n - p) (REML). Row i has residual
# variance sigma^2 / w_i, so the deviance is -2 log N(y; offset + X beta,
# sigma^2 (Z Lambda Lambda' Z' + W^-1)) at the estimates (the -sum(log(w))
# term is the log det of W^-1). Every fit below stores a dense check of this
# (check_dense_minus2loglik for ML fits, check_dense_remlcrit for REML fits,
# the latter adding log det(X' V^-1 X) - p log(2 pi) for the restricted
# likelihood).

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_weights_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, ctrl, meta, output

# ---------------------------------------------------------------------------
# Data file
# ---------------------------------------------------------------------------
crossed <- read_checked("crossed_slopes.csv",
                        c(subject = "character", item = "character",
                          cond = "character", t = "numeric", y = "numeric"), 960L,
                        how = "run python3 tests/data/make_slope_data.py first")
crossed$subject <- factor(crossed$subject)
crossed$item <- factor(crossed$item)
crossed$cond <- factor(crossed$cond, levels = c("a", "b"))

i <- seq_len(nrow(crossed))
wdata <- crossed
wdata$w <- 0.5 + ((i - 1) %% 7) / 4
wdata$expo <- as.double(1 + ((i - 1) %% 5))
wdata$y_far <- wdata$y + 1e6
wdata <- wdata[, c("subject", "item", "cond", "t", "y", "w", "expo", "y_far")]
stopifnot(all(wdata$w >= 0.5 & wdata$w <= 2), all(wdata$expo %in% 1:5))

write_data_files(list(weights = list(df = wdata, file = "lmm_weights.csv")))

# newdata for predict(): the first 10 rows of the data (all levels seen).
nd <- wdata[1:10, ]

# ---------------------------------------------------------------------------
# Fits (all with the tight control ctrl from the helpers)
# ---------------------------------------------------------------------------
f_int <- "y ~ cond + t + (1 | subject) + (1 | item)"
f_slope <- "y ~ cond + t + (1 + t | subject) + (1 | item)"
off_formula <- list(kind = "formula", expression = "log(expo)")
off_argument <- list(kind = "argument", expression = "log(expo)")

models <- list(
  w_int_reml = list(formula = f_int, REML = TRUE, weights = "w"),
  w_int_ml = list(formula = f_int, REML = FALSE, weights = "w"),
  w_slope_reml = list(formula = f_slope, REML = TRUE, weights = "w"),
  w_slope_ml = list(formula = f_slope, REML = FALSE, weights = "w"),
  off_formula_reml = list(formula = "y ~ cond + (1 | subject) + (1 | item) + offset(log(expo))",
                          REML = TRUE, offset = off_formula),
  off_arg_w_ml = list(formula = f_int, REML = FALSE, weights = "w",
                      offset = off_argument),
  w_far_reml = list(formula = "y_far ~ cond + t + (1 | subject) + (1 | item)",
                    REML = TRUE, weights = "w"),
  unweighted_reml = list(formula = f_int, REML = TRUE)
)
for (nm in names(models)) {
  models[[nm]]$data <- wdata
  models[[nm]]$file <- "lmm_weights.csv"
}

# lmer(<formula>, data = wdata, REML = , control = ctrl[, weights = <column>]
# [, offset = <expression>]), built as a call so that weights/offset are
# evaluated in the data as in an interactive call.
fit_spec <- function(spec) {
  cl <- call("lmer", formula = str2lang(spec$formula), data = quote(wdata),
             REML = spec$REML, control = quote(ctrl))
  if (!is.null(spec$weights)) cl$weights <- as.name(spec$weights)
  if (!is.null(spec$offset) && spec$offset$kind == "argument")
    cl$offset <- str2lang(spec$offset$expression)
  capture(eval(cl, envir = globalenv()))
}

# Independent dense computation of the criterion at the fit's estimates:
# y ~ N(offset + X beta, V), V = sigma^2 (Z Lambda Lambda' Z' + W^-1).
dense_check <- function(fit) {
  X <- getME(fit, "X")
  Z <- as.matrix(getME(fit, "Z"))
  Lambda <- as.matrix(getME(fit, "Lambda"))
  y <- getME(fit, "y")
  off <- fit@resp$offset
  w <- fit@resp$weights
  n <- length(y)
  p <- ncol(X)
  ZL <- Z %*% Lambda
  V <- sigma(fit)^2 * (tcrossprod(ZL) + diag(1 / w, n))
  R <- chol(V)                                   # V = R'R
  r <- y - off - drop(X %*% fixef(fit))
  z <- backsolve(R, r, transpose = TRUE)
  m2ll <- n * log(2 * pi) + 2 * sum(log(diag(R))) + sum(z^2)
  if (isREML(fit)) {
    RiX <- backsolve(R, X, transpose = TRUE)     # R'^-1 X
    XtViX <- crossprod(RiX)
    dense <- m2ll - p * log(2 * pi) +
      as.numeric(determinant(XtViX, logarithm = TRUE)$modulus)
    lme4_value <- REMLcrit(fit)
    list(REMLcrit = jnum(lme4_value), dense_remlcrit = jnum(dense),
         difference = jnum(lme4_value - dense))
  } else {
    lme4_value <- deviance(fit)
    list(deviance = jnum(lme4_value), dense_minus2loglik = jnum(m2ll),
         difference = jnum(lme4_value - m2ll))
  }
}

summarise_fit <- function(name, spec, fit, fit_warnings) {
  method <- if (spec$REML) "REML" else "ML"
  vcdf <- as.data.frame(VarCorr(fit))
  pred <- predict(fit, newdata = nd)
  pred_fixed <- predict(fit, newdata = nd, re.form = NA)
  cmp <- getME(fit, "devcomp")$cmp
  oi <- fit@optinfo
  check <- dense_check(fit)
  out <- c(
    fit_header(name, spec, method, fit),
    list(
      weights = spec$weights,                    # NULL -> null
      offset = spec$offset,                      # NULL -> null
      sum_log_w = jnum(sum(log(fit@resp$weights))),
      theta = jobj(getME(fit, "theta")),
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
      residuals_response = jarr(unname(residuals(fit))),
      residuals_pearson = jarr(unname(residuals(fit, type = "pearson"))),
      predict_new = list(rows = I(0:(nrow(nd) - 1L)),
                         values = jarr(unname(pred)),
                         values_re_form_NA = jarr(unname(pred_fixed))),
      devcomp = jobj(cmp[is.finite(cmp)]),
      optinfo = list(optimizer = oi$optimizer,
                     feval = oi$feval,
                     conv = oi$conv$opt,
                     messages = I(as.character(unlist(oi$conv$lme4$messages))),
                     warnings = I(as.character(unlist(oi$warnings))),
                     fit_warnings = I(as.character(fit_warnings))))
  )
  if (spec$REML) out$check_dense_remlcrit <- check
  else out$check_dense_minus2loglik <- check
  out
}

fits <- list()
fitted_models <- list()
for (name in names(models)) {
  spec <- models[[name]]
  t0 <- proc.time()[["elapsed"]]
  fit_cap <- fit_spec(spec)
  dt <- proc.time()[["elapsed"]] - t0
  fit <- fit_cap$value
  fitted_models[[name]] <- fit
  fits[[name]] <- summarise_fit(name, spec, fit, fit_cap$all)
  chk <- if (spec$REML) fits[[name]]$check_dense_remlcrit else fits[[name]]$check_dense_minus2loglik
  cat(sprintf("%-18s %-8s = %.10f  dense diff = %s  (%.1f s)\n", name,
              fits[[name]]$criterion_name,
              if (spec$REML) REMLcrit(fit) else deviance(fit),
              chk$difference, dt))
  for (w in unique(c(fit_cap$all, unlist(fit@optinfo$conv$lme4$messages))))
    cat("    note:", w, "\n")
}

# ---------------------------------------------------------------------------
# Likelihood-ratio test of cond + t vs cond (both weighted, ML)
# ---------------------------------------------------------------------------
reduced_spec <- list(formula = "y ~ cond + (1 | subject) + (1 | item)",
                     REML = FALSE, weights = "w")
m_w_int_ml_2 <- fit_spec(reduced_spec)$value
m_w_int_ml <- fitted_models[["w_int_ml"]]
av <- anova(m_w_int_ml_2, m_w_int_ml)
av_row <- function(i, model, formula) {
  list(model = model, formula = formula,
       npar = as.integer(av$npar[i]), AIC = jnum(av$AIC[i]), BIC = jnum(av$BIC[i]),
       logLik = jnum(av$logLik[i]), deviance = jnum(av$deviance[i]))
}
anova_w_int <- list(
  call = "anova(m_w_int_ml_2, m_w_int_ml)",
  models = list(av_row(1L, "m_w_int_ml_2", reduced_spec$formula),
                av_row(2L, "w_int_ml", models$w_int_ml$formula)),
  deviance_reduced = jnum(deviance(m_w_int_ml_2)),
  deviance_full = jnum(deviance(m_w_int_ml)),
  Chisq = jnum(av$Chisq[2]),
  Df = as.integer(av$Df[2]),
  p_value = jnum(av[["Pr(>Chisq)"]][2])
)
cat(sprintf("anova: Chisq = %.10f  Df = %d  p = %.6g\n",
            av$Chisq[2], as.integer(av$Df[2]), av[["Pr(>Chisq)"]][2]))

meta <- c(reference_meta("make_lme4_weights_references.R"), list(
  notes = c(
    "all models are fitted to lmm_weights.csv (crossed_slopes.csv plus w, expo, y_far)",
    "criterion is REMLcrit(fit) for REML fits and deviance(fit) for ML fits",
    paste("weights is the data column given as lmer(weights = ) or null; offset is null,",
          "{kind: 'formula'} for offset(<expression>) in the formula, or {kind: 'argument'}",
          "for lmer(offset = <expression>); sum_log_w is sum(log(prior weights))"),
    paste("lme4's weighted criteria: deviance = ldL2 - sum(log(w)) + n*(1 + log(2*pi*pwrss/n)),",
          "REMLcrit = ldL2 - sum(log(w)) + ldRX2 + (n-p)*(1 + log(2*pi*pwrss/(n-p))), n = number",
          "of rows; sigma is the residual sd at weight 1 (row i has variance sigma^2 / w_i)"),
    paste("check_dense_minus2loglik (ML) / check_dense_remlcrit (REML) compare lme4's criterion",
          "with a dense computation of -2 log N(y; offset + X beta, sigma^2 (Z Lambda Lambda' Z' + W^-1))",
          "(REML: plus log det(X' V^-1 X) - p log(2 pi)) at the fit's estimates"),
    "vcov and every matrix {rownames, colnames, values} are row-major: values[i][j] = M[rownames[i], colnames[j]]; rownames/colnames are always arrays",
    "theta is getME(fit, 'theta') with lme4's names and order",
    paste("varcorr is VarCorr(fit) (cov, stddev, correlation per grouping factor);",
          "varcorr_df is as.data.frame(VarCorr(fit)) as records (var2 present on covariance rows only)"),
    "ranef holds the conditional modes per grouping factor, {column: {level: value}}",
    paste("fitted, residuals_response (residuals(fit), y - fitted) and residuals_pearson",
          "(residuals(fit, type = 'pearson')) cover every row in file order; fitted includes",
          "the offset; lme4's pearson residuals for an LMM are sqrt(w) * (y - fitted),",
          "not divided by sigma"),
    paste("predict_new.values is predict(fit, newdata) and predict_new.values_re_form_NA is",
          "predict(fit, newdata, re.form = NA), for newdata = the data rows predict_new.rows",
          "(0-based, i.e. the first 10 rows). predict() with newdata evaluates offset() terms",
          "of the formula in newdata but ignores lmer's offset = argument, so for",
          "off_arg_w_ml these predictions exclude log(expo) (fitted includes it)"),
    paste("anova_w_int is anova(m_w_int_ml_2, m_w_int_ml): y ~ cond + (1|subject) + (1|item)",
          "vs w_int_ml, both with weights = w and ML"),
    "devcomp is getME(fit, 'devcomp')$cmp (finite entries only)",
    paste("optinfo.fit_warnings holds warnings/messages raised by lmer(); optinfo.messages are",
          "lme4's convergence-check messages"),
    paste("reruns reproduce criterion/logLik to ~1e-15 relative but parameters only to ~1e-7;",
          "compare estimates with rtol ~1e-6, or evaluate your criterion at the stored theta")
  ),
  data = data_meta(models)
))

write_reference_json(list(meta = meta, fits = fits, anova_w_int = anova_w_int),
                     "lme4_weights_references.json")
