# Regenerate the lme4 reference data for model diagnostics (hat values, Cook's
# distances, conditional and marginal residuals/fitted values, conditional
# standard deviations of the random effects, exact case- and group-deletion
# influence) that interlace's Python tests read. (The tests never run R; they
# read the file this script writes.) Companion of
# tests/data/make_lme4_references.R, make_lme4_slope_references.R and
# make_lme4_inference_references.R, with the same conventions (%.17g numbers,
# tight nloptwrap settings, versions in meta), which all of them take from
# tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root (the script sources the shared helpers in
# tests/data/lme4_reference_helpers.R, which must be present; takes under a
# minute: it refits the results_page model once per row, twice):
#   Rscript tests/data/make_lme4_diagnostics_references.R
#
# Reads, from tests/data/ (written by the other scripts, not by this one):
#   sleepstudy.csv      (make_lme4_slope_references.R)
#   results_page.csv    (make_results_page_csv.py)
# Writes tests/data/lme4_diagnostics_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_lme4_diagnostics_references.R")
}
source(helpers)  # data_dir, JSON number helpers, capture, data I/O, ctrl, meta, output

# Print the warnings and messages collected by capture().
# (Each distinct one once, with how often it was raised.)
show_notes <- function(label, cap) {
  for (kind in c("warning", "message")) {
    x <- cap[[paste0(kind, "s")]]
    for (u in unique(x))
      cat(sprintf("    [ %s ] %s (x%d): %s\n", label, kind, sum(x == u), u))
  }
}

# ---------------------------------------------------------------------------
# Data (read from the CSVs the other scripts write)
# ---------------------------------------------------------------------------
sleepstudy <- read_checked("sleepstudy.csv",
                           c(Reaction = "numeric", Days = "numeric",
                             Subject = "character"), 180L)
sleepstudy$Subject <- factor(sleepstudy$Subject)

results_page <- read_results_page()

# The first 60 rows of sleepstudy: Subjects 308, 309, 310, 330, 331, 332
# (10 days each), with the unused Subject levels dropped. Row names stay
# "1".."60" (lme4's influence() labels deleted cases by row name).
sleep60 <- droplevels(sleepstudy[1:60, ])
stopifnot(nlevels(sleep60$Subject) == 6L, all(table(sleep60$Subject) == 10L))

# ---------------------------------------------------------------------------
# Fits: all REML with the tight control ctrl from the helpers. The calls are
# written out literally (formula and data symbol in the call) because
# lme4's influence() refits through update(), which re-evaluates the call.
# ---------------------------------------------------------------------------
models <- list(
  sleepstudy = list(
    data = sleepstudy, file = "sleepstudy.csv", rows = "all 180 rows",
    formula = "Reaction ~ Days + (Days | Subject)",
    fit = function() lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                          REML = TRUE, control = ctrl),
    influence_obs = FALSE, influence_groups = NULL),
  results_page = list(
    data = results_page, file = "results_page.csv", rows = "all 300 rows",
    formula = "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)",
    fit = function() lmer(score ~ hours_studied + prior_gpa + (1 | student_id) +
                            (1 | school_id), data = results_page,
                          REML = TRUE, control = ctrl),
    influence_obs = TRUE, influence_groups = NULL),
  small = list(
    data = sleep60, file = "sleepstudy.csv",
    rows = "the first 60 rows (Subjects 308, 309, 310, 330, 331, 332; Days 0-9)",
    formula = "Reaction ~ Days + (1 | Subject)",
    fit = function() lmer(Reaction ~ Days + (1 | Subject), data = sleep60,
                          REML = TRUE, control = ctrl),
    influence_obs = TRUE, influence_groups = "Subject"),
  sleepstudy_first60_slopes = list(
    data = sleep60, file = "sleepstudy.csv",
    rows = "the first 60 rows (Subjects 308, 309, 310, 330, 331, 332; Days 0-9)",
    formula = "Reaction ~ Days + (Days | Subject)",
    fit = function() lmer(Reaction ~ Days + (Days | Subject), data = sleep60,
                          REML = TRUE, control = ctrl),
    influence_obs = TRUE, influence_groups = "Subject")
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# An array of p x p matrices -> nested JSON arrays [case][row][col].
jmat_list <- function(ms) {
  lapply(unname(ms), function(m) {
    m <- as.matrix(m)
    lapply(seq_len(nrow(m)), function(i) jarr(m[i, ]))
  })
}

# Dense diagnostics: V = Var(y)/sigma^2 = I + Z Lambda Lambda' Z',
# H1 = X (X' V^-1 X)^-1 X' V^-1 (marginal hat matrix of the GLS fit),
# H = H1 + Z Lambda Lambda' Z' V^-1 (I - H1) (conditional hat matrix:
# fitted = H y).
dense_diagnostics <- function(fit) {
  X <- as.matrix(getME(fit, "X"))
  Z <- as.matrix(getME(fit, "Z"))
  Lambda <- as.matrix(getME(fit, "Lambda"))
  y <- getME(fit, "y")
  n <- nrow(X)
  s2 <- sigma(fit)^2
  ZL <- Z %*% Lambda
  G <- ZL %*% t(ZL)                     # Z Lambda Lambda' Z'
  V <- diag(n) + G
  Vinv <- solve(V)
  XtViX <- t(X) %*% Vinv %*% X
  XtViX_inv <- solve(XtViX)
  H1 <- X %*% XtViX_inv %*% t(X) %*% Vinv
  H <- H1 + G %*% Vinv %*% (diag(n) - H1)
  list(hat_fixef = diag(H1),
       marginal_resid_var = s2 * diag(V - X %*% XtViX_inv %*% t(X)),
       hat_dense = diag(H),
       fitted_dense = as.vector(H %*% y),
       vcov_dense = s2 * XtViX_inv,
       y = y)
}

summarise_ranef_condsd <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  out <- lapply(names(re), function(g) {
    d <- re[[g]]
    pv <- attr(d, "postVar")            # q x q x nlevels
    q <- ncol(d)
    stopifnot(identical(dim(pv), c(q, q, nrow(d))))
    sds <- t(vapply(seq_len(nrow(d)), function(k) sqrt(diag(matrix(pv[, , k], q, q))),
                          numeric(q)))
    if (q == 1L) sds <- matrix(sds, ncol = 1L)
    dimnames(sds) <- dimnames(d)
    list(levels = I(rownames(d)),
         columns = I(colnames(d)),
         blup = lapply(seq_len(nrow(d)), function(i) jarr(unlist(d[i, ]))),
         condsd = lapply(seq_len(nrow(sds)), function(i) jarr(sds[i, ])))
  })
  names(out) <- names(re)
  out
}

# The variance-covariance parameters in influence.merMod's order:
# sigma^2, then per grouping factor the lower triangle (column-major, diagonal
# included) of its VarCorr covariance matrix.
# Names as influence.merMod gives them: "sigma^2", "v[col]" for a variance,
# "C[row,col]" for a covariance, prefixed with "factor:" when there are
# several grouping factors.
var_cov_comps <- function(fit) {
  Vs <- VarCorr(fit)
  nms <- if (length(Vs) == 1L) "" else paste0(names(Vs), ":")
  vc <- c("sigma^2" = sigma(fit)^2)
  for (i in seq_along(Vs)) {
    V <- Vs[[i]]
    cn <- colnames(V)
    e <- outer(cn, cn, function(a, b) paste0("C[", a, ",", b, "]"))
    diag(e) <- paste0("v[", cn, "]")
    vc <- c(vc, setNames(V[lower.tri(V, diag = TRUE)],
                         paste0(nms[i], e[lower.tri(e, diag = TRUE)])))
  }
  vc
}

# Unique warnings/messages with how often each was raised.
tally <- function(x) {
  if (length(x) == 0) return(setNames(list(), character(0)))
  tb <- table(x)
  as.list(setNames(as.integer(tb), names(tb)))
}

# lme4's influence object (case or group deletion) -> JSON fields.
summarise_influence <- function(infl, seconds, call_text) {
  nm <- names(infl)
  sub <- function(prefix) infl[[nm[startsWith(nm, paste0(prefix, "[-"))]]]
  deleted <- as.character(infl[["deleted"]])
  fe_del <- sub("fixed.effects")
  vc_del <- sub("var.cov.comps")
  vcov_del <- sub("vcov")
  cd <- cooks.distance(infl)
  stopifnot(length(cd) == length(deleted), nrow(fe_del) == length(deleted))
  list(call = call_text,
       names = I(nm),
       groups = infl[["groups"]],
       deleted = I(deleted),
       n_deleted = length(deleted),
       seconds = jnum(seconds),
       cooks_deletion = jarr(cd),
       fixef = jobj(infl[["fixed.effects"]]),
       fixef_deleted = jmat(fe_del),
       dfbeta = jmat(dfbeta(infl)),
       dfbetas = jmat(dfbetas(infl)),
       sigma_deleted = jarr(sqrt(vc_del[, "sigma^2"])),
       var_cov_comps = jobj(infl[["var.cov.comps"]]),
       var_cov_comps_names = I(names(infl[["var.cov.comps"]])),
       var_cov_comps_deleted = jmat(vc_del),
       vcov = jmat(infl[["vcov"]]),
       vcov_deleted = list(colnames = I(colnames(infl[["vcov"]])),
                           values = jmat_list(vcov_del)),
       converged = I(as.logical(infl[["converged"]])),
       function_evals = I(as.integer(infl[["function.evals"]])))
}

# The same deletions refitted with the tight control ctrl (influence() refits
# with nloptwrap's default tolerances, see meta.notes), started, as lme4 does,
# from the full fit's theta. masks: list of logical row masks (TRUE = kept),
# one per deleted unit.
tight_deletion <- function(fit, dat, masks, labels) {
  fml <- formula(fit)
  theta0 <- getME(fit, "theta")
  fe <- fixef(fit)
  V0 <- as.matrix(vcov(fit))
  t0 <- proc.time()[["elapsed"]]
  caps <- lapply(masks, function(keep)
    capture(lmer(fml, data = dat[keep, , drop = FALSE], REML = TRUE,
                 control = ctrl, start = list(theta = theta0))))
  secs <- proc.time()[["elapsed"]] - t0
  fits <- lapply(caps, `[[`, "value")
  notes <- list(warnings = unlist(lapply(caps, `[[`, "warnings")),
                messages = unlist(lapply(caps, `[[`, "messages")))
  show_notes("tight refits", notes)
  stopifnot(all(vapply(seq_along(masks), function(k)
    nobs(fits[[k]]) == sum(masks[[k]]), TRUE)))
  fe_del <- t(vapply(fits, fixef, fe))
  dimnames(fe_del) <- list(labels, names(fe))
  vc_del <- t(vapply(fits, var_cov_comps, var_cov_comps(fit)))
  rownames(vc_del) <- labels
  th_del <- t(vapply(fits, function(m) getME(m, "theta"), theta0))
  if (length(theta0) == 1L) th_del <- matrix(th_del, ncol = 1L)
  dimnames(th_del) <- list(labels, names(theta0))
  db <- fe_del - matrix(fe, nrow(fe_del), length(fe), byrow = TRUE)
  nn <- nrow(db)
  p <- ncol(db)
  Vi <- (nn - p) / (nn * p) * solve(V0)
  cd <- vapply(seq_len(nn), function(i) as.numeric(db[i, ] %*% Vi %*% db[i, ]), 0)
  list(control = "meta.control (tight), start = list(theta = full-fit theta)",
       seconds = jnum(secs),
       deleted = I(labels),
       cooks_deletion = jarr(cd),
       fixef_deleted = jmat(fe_del),
       sigma_deleted = jarr(vapply(fits, sigma, 0)),
       theta_deleted = jmat(th_del),
       var_cov_comps_deleted = jmat(vc_del),
       vcov_deleted = list(colnames = I(names(fe)),
                           values = jmat_list(lapply(fits, function(m)
                             as.matrix(vcov(m))))),
       REMLcrit_deleted = jarr(vapply(fits, REMLcrit, 0)),
       isSingular_deleted = I(vapply(fits, isSingular, TRUE)),
       warnings = tally(notes$warnings),
       messages = tally(notes$messages))
}

# How far lme4's influence() refits (default tolerances) are from the tight
# ones: max absolute differences.
diff_vs_lme4 <- function(infl, tight) {
  nm <- names(infl)
  sub <- function(prefix) infl[[nm[startsWith(nm, paste0(prefix, "[-"))]]]
  num <- function(x) as.numeric(unlist(lapply(x$values, function(v) fromJSON(unclass(v)))))
  tight_fe <- matrix(num(tight$fixef_deleted), ncol = ncol(sub("fixed.effects")), byrow = TRUE)
  tight_vc <- matrix(num(tight$var_cov_comps_deleted), ncol = ncol(sub("var.cov.comps")),
                     byrow = TRUE)
  tight_cd <- fromJSON(unclass(tight$cooks_deletion))
  list(fixef_deleted = jnum(max(abs(sub("fixed.effects") - tight_fe))),
       var_cov_comps_deleted = jnum(max(abs(sub("var.cov.comps") - tight_vc))),
       cooks_deletion = jnum(max(abs(cooks.distance(infl) - tight_cd))),
       cooks_deletion_relative_to_max = jnum(max(abs(cooks.distance(infl) - tight_cd)) /
                                               max(abs(tight_cd))))
}

# ---------------------------------------------------------------------------
# Diagnostics per model
# ---------------------------------------------------------------------------
out_models <- list()
timing <- NULL
max_timing_seconds <- 600

for (name in names(models)) {
  spec <- models[[name]]
  cat(name, "\n")
  fit_cap <- capture(spec$fit())
  show_notes(paste(name, "lmer"), fit_cap)
  fit <- fit_cap$value
  stopifnot(isREML(fit))

  X <- getME(fit, "X")
  p_rank <- as.integer(Matrix::rankMatrix(X))
  hv <- hatvalues(fit)
  dd <- dense_diagnostics(fit)
  err_hat <- max(abs(dd$hat_dense - hv))
  err_fit <- max(abs(dd$fitted_dense - fitted(fit)))
  err_vcov <- max(abs(dd$vcov_dense - as.matrix(vcov(fit))))
  cat(sprintf("  max|hat_dense - hatvalues| = %.3g, max|H y - fitted| = %.3g, max|vcov_dense - vcov| = %.3g\n",
              err_hat, err_fit, err_vcov))
  if (!(err_hat < 1e-8)) stop(name, ": dense hat diagonal disagrees with hatvalues(): ", err_hat)
  if (!(err_fit < 1e-8 * max(1, max(abs(dd$y)))))
    stop(name, ": H y disagrees with fitted(): ", err_fit)
  if (!(err_vcov < 1e-8 * max(1, max(abs(as.matrix(vcov(fit)))))))
    stop(name, ": dense vcov disagrees with vcov(): ", err_vcov)

  cd1 <- cooks.distance(fit)
  # lme4's one-step formula, reproduced (checks the reading of the source).
  r <- residuals(fit, type = "pearson")
  stopifnot(isTRUE(all.equal(unname(cd1),
                             unname((r / (1 - hv))^2 * hv / (sigma(fit)^2 * p_rank)),
                             tolerance = 1e-12)))
  stopifnot(isTRUE(all.equal(unname(r), unname(residuals(fit)), tolerance = 0)))

  entry <- list(
    data_file = spec$file,
    rows = spec$rows,
    formula = spec$formula,
    method = "REML",
    REML = TRUE,
    nobs = nobs(fit),
    p_rank = p_rank,
    REMLcrit = jnum(REMLcrit(fit)),
    theta = jobj(getME(fit, "theta")),
    var_cov_comps = jobj(var_cov_comps(fit)),
    sigma = jnum(sigma(fit)),
    fixef = jobj(fixef(fit)),
    vcov = jmat(as.matrix(vcov(fit))),
    isSingular = isSingular(fit),
    fit_warnings = I(c(fit_cap$warnings, fit_cap$messages)),
    y = jarr(dd$y),
    hatvalues = jarr(hv),
    hat_dense = jarr(dd$hat_dense),
    hat_fixef = jarr(dd$hat_fixef),
    marginal_resid_var = jarr(dd$marginal_resid_var),
    cooks_one_step = jarr(cd1),
    resid = jarr(residuals(fit)),
    fitted = jarr(fitted(fit)),
    fitted_marginal = jarr(as.vector(as.matrix(X) %*% fixef(fit))),
    ranef_condsd = summarise_ranef_condsd(fit)
  )

  if (isTRUE(spec$influence_obs)) {
    # influence.merMod has no `obs` argument (case deletion is the default
    # when `groups` is missing); influence(fit, obs = TRUE) would only add a
    # "disregarded additional arguments" warning. data is passed explicitly.
    dat <- spec$data
    t0 <- proc.time()[["elapsed"]]
    infl_cap <- tryCatch(capture(influence(fit, data = dat)),
                         error = function(e) e)
    secs <- proc.time()[["elapsed"]] - t0
    if (inherits(infl_cap, "error")) {
      cat("  influence() failed:", conditionMessage(infl_cap), "\n")
      entry$influence_obs <- list(error = conditionMessage(infl_cap))
    } else {
      show_notes(paste(name, "influence"), infl_cap)
      infl <- infl_cap$value
      entry$influence_obs <- summarise_influence(
        infl, secs, "influence(fit, data = <the model's data>)  (case deletion)")
      entry$influence_obs$warnings <- tally(infl_cap$warnings)
      entry$influence_obs$messages <- tally(infl_cap$messages)
      stopifnot(identical(names(infl[["var.cov.comps"]]), names(var_cov_comps(fit))),
                isTRUE(all.equal(unname(infl[["var.cov.comps"]]),
                                 unname(var_cov_comps(fit)), tolerance = 1e-14)))
      stopifnot(identical(as.character(infl[["deleted"]]), rownames(dat)))
      n <- nrow(dat)
      masks <- lapply(seq_len(n), function(i) seq_len(n) != i)
      entry$influence_obs_tight <- tight_deletion(fit, dat, masks, rownames(dat))
      entry$influence_obs_tight$max_abs_diff_vs_lme4 <- diff_vs_lme4(
        infl, entry$influence_obs_tight)
      cat(sprintf("  influence (case deletion, %d refits): %.2f s; max cooks %.6g\n",
                  n, secs, max(cooks.distance(infl))))
      if (name == "results_page") {
        timing_seconds <- secs
        timing <- list(model = name, call = "influence(fit, data = results_page)",
                       influence_obs_seconds = jnum(secs), nrow = n,
                       refits = length(infl[["deleted"]]),
                       tight_refits_seconds = entry$influence_obs_tight$seconds)
      }
    }
  }
  if (!is.null(spec$influence_groups)) {
    g <- spec$influence_groups
    dat <- spec$data
    t0 <- proc.time()[["elapsed"]]
    ig_cap <- tryCatch(capture(influence(fit, groups = g, data = dat)),
                       error = function(e) e)
    secs <- proc.time()[["elapsed"]] - t0
    if (inherits(ig_cap, "error")) {
      cat("  influence(groups) failed:", conditionMessage(ig_cap), "\n")
      entry$influence_groups <- list(error = conditionMessage(ig_cap))
    } else {
      show_notes(paste(name, "influence groups"), ig_cap)
      ig <- ig_cap$value
      entry$influence_groups <- summarise_influence(
        ig, secs, sprintf("influence(fit, groups = \"%s\", data = <the model's data>)", g))
      entry$influence_groups$warnings <- tally(ig_cap$warnings)
      entry$influence_groups$messages <- tally(ig_cap$messages)
      labs <- as.character(ig[["deleted"]])
      masks <- lapply(labs, function(l) as.character(dat[[g]]) != l)
      entry$influence_groups_tight <- tight_deletion(fit, dat, masks, labs)
      entry$influence_groups_tight$max_abs_diff_vs_lme4 <- diff_vs_lme4(
        ig, entry$influence_groups_tight)
      cat(sprintf("  influence (groups = %s, %d refits): %.2f s\n", g, length(labs), secs))
    }
  }
  out_models[[name]] <- entry
}

if (is.null(timing)) {
  timing <- list(model = "results_page", note = "influence() on results_page was not run")
} else if (timing_seconds > max_timing_seconds) {
  timing$note <- "over 10 minutes"
}

# ---------------------------------------------------------------------------
# Write
# ---------------------------------------------------------------------------
si <- sessionInfo()
meta <- c(reference_meta("make_lme4_diagnostics_references.R"), list(
  machine = list(platform = R.version$platform,
                 cpu_cores = parallel::detectCores(),
                 BLAS = if (is.null(si$BLAS)) "" else si$BLAS,
                 LAPACK = if (is.null(si$LAPACK)) "" else si$LAPACK),
  data = lapply(models, function(s) list(file = s$file, rows = s$rows,
                                         nrow = nrow(s$data))),
  notes = c(
    paste("every model is REML with meta.control; Subject, student_id, school_id are",
          "factors; per-row arrays are in data order (model 'small' and",
          "'sleepstudy_first60_slopes' use the first 60 rows of sleepstudy.csv, unused",
          "Subject levels dropped)"),
    paste("hatvalues: lme4 hatvalues(fit), the diagonal of the conditional hat matrix",
          "H (fitted = H y); hat_dense: diag(H) computed densely as",
          "H = H1 + Z Lambda Lambda' Z' V^-1 (I - H1), with V = I + Z Lambda Lambda' Z'",
          "(Var(y)/sigma^2) and H1 = X (X' V^-1 X)^-1 X' V^-1 (checked against",
          "hatvalues to 1e-8 absolute); hat_fixef: diag(H1); marginal_resid_var:",
          "diag(sigma^2 (V - X (X' V^-1 X)^-1 X')), the variance of y - X beta_hat"),
    paste("cooks_one_step: lme4 cooks.distance(fit) =",
          "(r_i / (1 - h_i))^2 h_i / (p sigma^2) with r = residuals(fit, 'pearson')",
          "(= response residuals y - fitted, conditional, for an unweighted LMM),",
          "h = hatvalues(fit), p = rankMatrix(X), sigma = sigma(fit)"),
    paste("resid, fitted: conditional (residuals(fit), fitted(fit));",
          "fitted_marginal = X fixef(fit); y: the response"),
    paste("ranef_condsd.{factor}: blup and condsd matrices (levels x columns, rows in",
          "'levels' order); condsd = sqrt of the diagonal of",
          "attr(ranef(fit, condVar = TRUE)[[factor]], 'postVar') for each level"),
    paste("influence_obs / influence_groups: lme4:::influence.merMod (case deletion:",
          "groups missing, deleted = row names; group deletion: groups = 'Subject').",
          "Each deletion is refit by update(model, data, subset = .groups != del,",
          "start = list(theta = full-fit theta), control = lmerControl(optCtrl =",
          "list(maxfun = 1000))): REML as the original, nloptwrap with its default",
          "tolerances (xtol_abs = ftol_abs = 1e-8; maxfun is not an nloptr option and is",
          "ignored), NOT meta.control, warnings suppressed. So these carry optimizer",
          "error; influence_*_tight repeats the same deletions with meta.control and the",
          "same start (compare with those at tight tolerance; max_abs_diff_vs_lme4 says",
          "how far lme4's own refits are from them)"),
    paste("cooks_deletion: lme4 cooks.distance(influence object) =",
          "(n - p)/(n p) * dfbeta_i' vcov(fit)^-1 dfbeta_i, with dfbeta_i = fixef",
          "without unit i - fixef(fit), n = number of deleted units (rows, or groups for",
          "group deletion), p = number of fixed effects, vcov(fit) of the full fit;",
          "influence_*_tight.cooks_deletion applies the same formula to the tight refits"),
    paste("var_cov_comps (lme4 'var.cov.comps'): sigma^2, then per grouping factor the",
          "lower triangle, column-major with the diagonal, of its VarCorr covariance",
          "matrix: names v[col] (variance) and C[row,col] (covariance), prefixed with",
          "'factor:' when there is more than one factor; sigma_deleted =",
          "sqrt(var_cov_comps_deleted[, 'sigma^2']); dfbetas = dfbeta / sqrt(diag of",
          "the deleted fit's vcov)"),
    paste("vcov_deleted.values: [unit][row][col]; matrices as {rownames, colnames,",
          "values (row-major)}"),
    paste("timing: elapsed seconds of influence(fit) (the case deletion: one refit per",
          "row, single process) on meta.machine")
  ),
  timing = timing
))

write_reference_json(c(list(meta = meta), out_models),
                     "lme4_diagnostics_references.json")
