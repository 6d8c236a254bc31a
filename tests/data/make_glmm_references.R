# Regenerate the lme4 GLMM reference data (glmer / glmer.nb) that interlace's
# Python tests read. (The tests never run R; they read the files this script
# writes.) Same conventions as tests/data/make_lme4_slope_references.R (%.17g
# numbers, versions in meta), sharing tests/data/lme4_reference_helpers.R.
#
# Dependencies (Debian/Ubuntu packages; minqa and MASS come in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
#   python3 tests/data/make_glmm_data.py   # only if the glmm_*.csv files are missing
#   Rscript tests/data/make_glmm_references.R
# (about 2 minutes: every fit is timed three times, and checked -- see exact_check.)
#
# Writes, into tests/data/:
#   cbpp.csv         lme4::cbpp        (herd, incidence, size, period)
#   grouseticks.csv  lme4::grouseticks (INDEX, TICKS, BROOD, HEIGHT, YEAR, LOCATION, cHEIGHT)
#   verbagg.csv      lme4::VerbAgg     (Anger, Gender, item, resp, id, btype, situ, mode, r2)
#                    with r2 written as 0/1 (1 = "Y"), all factors as their labels
#   glmm_references.json
# and reads glmm_binary_slope.csv, glmm_poisson_offset.csv and glmm_negbin.csv,
# which tests/data/make_glmm_data.py makes in Python with numpy.
#
# Every fit uses the data frame that the CSV holds (checked to round-trip
# exactly), with factors rebuilt with the level orders below. Python must use
# the same level orders (the first level is the reference level of a
# treatment contrast; ranef lists levels in this order):
#   cbpp:        herd "1".."15" (numeric order); period "1","2","3","4"
#   grouseticks: YEAR "95","96","97"; INDEX "1".."403"; LOCATION "1".."63"
#                (numeric order); BROOD "501".."743" (numeric order, 118 levels)
#   VerbAgg:     Gender "F","M"; btype "curse","scold","shout";
#                situ "other","self"; mode "want","do" (NOT alphabetical);
#                resp "no","perhaps","yes"; id "1".."316" (numeric order);
#                item in lme4's order, NOT alphabetical: S1WantCurse,
#                S1WantScold, S1WantShout, S2Want*, S3Want*, S4wantCurse (sic,
#                lower-case w), S4WantScold, S4WantShout, then S1DoCurse ..
#                S4DoShout (same pattern)
#   simulated:   every grouping factor and treat sorted alphabetically (the
#                zero-padded labels make that numeric order); treat "ctrl","stim"
#
# Control: glmerControl(optimizer = "bobyqa",
#   optCtrl = list(rhoend = 1e-10, maxfun = 1e5), tolPwrss = 1e-12)
# for both glmer stages (nAGQ = 0 stage over theta, then over (theta, beta)),
# except one model:
#   grouseticks_laplace uses tolPwrss = 1e-13. With 1e-12 glmer warns
#   "unable to evaluate scaled gradient" and "Model failed to converge:
#   degenerate Hessian with 1 (or 2) negative eigenvalues" and stops at a
#   point whose deviance (-2 logLik) is 1e-3 to 4e-3 above the optimum (and
#   which varies from run to run): lme4's PIRLS stops on the relative change
#   of the penalised deviance, and its log det(L L') is taken at the
#   penultimate iterate, so the objective it returns carries an error of
#   order sqrt(tolPwrss * pdev); on grouseticks (observation-level INDEX
#   effect) that noise reaches ~5e-5 at 1e-12 and trapped bobyqa. At 1e-13
#   no warning, and the optimum agrees with an independent evaluation of the
#   exact Laplace objective polished with bobyqa (see exact_check). With the
#   default 1e-7 it also reaches the optimum but its objective is off by
#   ~5e-5 there; 1e-15 makes PIRLS fail ("step-halvings failed") on VerbAgg.
# No other model errors or warns at 1e-12.
#
# glmer.nb: lme4 1.1-31's glmer.nb() cannot take a tighter `tol` (it passes
# `tol` on to glmer(), which rejects it: "unused argument (tol = ...)"), so
# the NB model is fitted with glmer.nb() at its default tol = 5e-5 and theta
# (the NB size) is then re-optimised with lme4:::optTheta() -- the same
# function glmer.nb() ends with -- at tol = 1e-10 over log(theta0) +- 0.5.
# The recorded fit is the refined one; the default-tol theta is kept too.
#
# How lme4 (1.1-31) defines the GLMM likelihood quantities (read from
# logLik.merMod, devCrit, deviance.merMod, npar.merMod, mkMerMod and the C++
# glmerLaplace / glmerAGQ; checked numerically below, numbers in the JSON's
# notes and in each fit's loglik_check):
#   logLik(fit)  = -cmp["dev"] / 2, where cmp["dev"] = opt$fval is the
#                  objective the optimiser minimised (devCrit with REML FALSE).
#   nAGQ = 0, 1: objective = aic + ussq + ldL2, where
#                  aic  = family$aic(y, n, mu, wt), i.e. -2 * the full
#                         conditional log-likelihood (binomial: with the
#                         log choose(n, k) term; NB: dnbinom at the NB size)
#                  ussq = ||u||^2 (spherical random effects at the mode)
#                  ldL2 = log det(L L'), L L' = Lambda' Z' W Z Lambda + I
#                no ldRX2 term and no 2*pi constant. For nAGQ = 1 the mode u
#                is at the given beta; for nAGQ = 0 (theta only) PIRLS finds
#                u and beta jointly and beta is that joint mode.
#   nAGQ > 1 (one scalar random-effect term only):
#                objective = sum_g devc0_g + ldL2 - 2 * sum_g log(M_g),
#                  devc_g(u) = u_g^2 + sum_{i in g} devres_i(u)
#                             (deviance residuals, NOT family aic),
#                  devc0_g = devc_g at the conditional mode u0,
#                  sd_g = 1 / L_gg,
#                  M_g = sum_k w_k exp(z_k^2/2 - (devc_g(u0 + z_k sd_g) - devc0_g)/2)
#                  (z_k, w_k: GHrule(nAGQ) nodes and weights for the standard
#                  normal density).
#                So for the binomial it omits the saturated/binomial-coefficient
#                part that the Laplace objective includes, and nAGQ = 25 logLik
#                is not on the same scale as nAGQ = 1 for cbpp.
#   df (attr of logLik) = length(beta) + length(theta) (+ 1 for glmer.nb's
#                NB size); no scale parameter for binomial/Poisson/NB.
#   AIC = -2 logLik + 2 df, BIC = -2 logLik + log(nobs) df (stats defaults).
#   deviance(fit) = sum(residuals(fit, "deviance")^2) (the conditional GLM
#                deviance at the conditional modes, = cmp["drsum"]); it is NOT
#                -2 logLik. summary()'s "deviance" column is -2 logLik.
#   df.residual = nobs - df.
#   vcov(fit) for nAGQ >= 1 is, by default, from the finite-difference
#                Hessian of the objective over (theta, beta) (use.hessian =
#                TRUE whenever optinfo$derivs$Hessian exists): 2 * [H^-1]_beta,beta.
#                vcov(fit, use.hessian = FALSE) is the RX-based
#                (X' W X - ...)^-1 = unsc() at the mode; both are recorded
#                (vcov / vcov_rx). summary()'s z and p use vcov(fit).
#                nAGQ = 0 has no beta Hessian, so both are the RX-based one.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, capture, write_reference_json

# ---------------------------------------------------------------------------
# Control (glmer). Named gctrl: the helpers' `ctrl` is the lmer one.
# ---------------------------------------------------------------------------
gopt_ctrl <- list(rhoend = 1e-10, maxfun = 1e5)
default_tolPwrss <- 1e-12
gctrl_for <- function(spec) {
  tp <- if (is.null(spec$tolPwrss)) default_tolPwrss else spec$tolPwrss
  glmerControl(optimizer = "bobyqa", optCtrl = gopt_ctrl, tolPwrss = tp)
}
nb_refine_tol <- 1e-10
n_timing <- 3L

# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------
cbpp <- lme4::cbpp[, c("herd", "incidence", "size", "period")]
grouseticks <- lme4::grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR",
                                     "LOCATION", "cHEIGHT")]
verbagg <- lme4::VerbAgg[, c("Anger", "Gender", "item", "resp", "id", "btype",
                             "situ", "mode", "r2")]
stopifnot(identical(levels(verbagg$r2), c("N", "Y")))
verbagg$r2 <- as.integer(verbagg$r2 == "Y")
verbagg$resp <- factor(as.character(verbagg$resp), levels = levels(lme4::VerbAgg$resp))

write_data_files(list(
  cbpp = list(df = cbpp, file = "cbpp.csv"),
  grouseticks = list(df = grouseticks, file = "grouseticks.csv"),
  verbagg = list(df = verbagg, file = "verbagg.csv")
))

# Read a CSV back and rebuild the factors with the given level orders (NULL:
# sorted, which is what factor() does).
read_with_levels <- function(file, colClasses, nrow_expected, levels, how) {
  df <- read_checked(file, colClasses, nrow_expected, how = how)
  for (nm in names(levels)) {
    lv <- levels[[nm]]
    df[[nm]] <- if (is.null(lv)) factor(df[[nm]]) else factor(df[[nm]], levels = lv)
    stopifnot(!anyNA(df[[nm]]))
  }
  df
}

lv <- function(df, nms) setNames(lapply(nms, function(n) levels(df[[n]])), nms)
how_r <- "run Rscript tests/data/make_glmm_references.R (it writes it)"
cbpp_d <- read_with_levels("cbpp.csv",
  c(herd = "character", incidence = "numeric", size = "numeric", period = "character"),
  56L, lv(cbpp, c("herd", "period")), how_r)
grouse_d <- read_with_levels("grouseticks.csv",
  c(INDEX = "character", TICKS = "numeric", BROOD = "character", HEIGHT = "numeric",
    YEAR = "character", LOCATION = "character", cHEIGHT = "numeric"),
  403L, lv(grouseticks, c("INDEX", "BROOD", "YEAR", "LOCATION")), how_r)
verbagg_d <- read_with_levels("verbagg.csv",
  c(Anger = "integer", Gender = "character", item = "character", resp = "character",
    id = "character", btype = "character", situ = "character", mode = "character",
    r2 = "integer"),
  7584L, lv(verbagg, c("Gender", "item", "resp", "id", "btype", "situ", "mode")), how_r)
for (p in list(list(cbpp, cbpp_d), list(grouseticks, grouse_d), list(verbagg, verbagg_d))) {
  a <- p[[1]]; b <- p[[2]]
  rownames(a) <- NULL; rownames(b) <- NULL
  stopifnot(isTRUE(all.equal(a, b, tolerance = 0, check.attributes = TRUE)))
}

how_py <- "run python3 tests/data/make_glmm_data.py first"
binslope_d <- read_with_levels("glmm_binary_slope.csv",
  c(subject = "character", item = "character", x = "numeric", y = "integer"),
  3000L, list(subject = NULL, item = NULL), how_py)
poisoff_d <- read_with_levels("glmm_poisson_offset.csv",
  c(site = "character", year = "character", observer = "character",
    cover = "numeric", hours = "numeric", count = "integer"),
  2000L, list(site = NULL, year = NULL, observer = NULL), how_py)
negbin_d <- read_with_levels("glmm_negbin.csv",
  c(cell = "character", donor = "character", batch = "character",
    treat = "character", count = "integer"),
  1500L, list(donor = NULL, batch = NULL, treat = c("ctrl", "stim")), how_py)

factor_levels <- list(
  cbpp = lv(cbpp_d, c("herd", "period")),
  grouseticks = lv(grouse_d, c("YEAR", "BROOD", "LOCATION")),
  verbagg = lv(verbagg_d, c("Gender", "btype", "situ", "mode", "resp", "item")),
  glmm_binary_slope = lv(binslope_d, c("subject", "item")),
  glmm_poisson_offset = lv(poisoff_d, c("site", "year", "observer")),
  glmm_negbin = lv(negbin_d, c("donor", "batch", "treat"))
)
factor_levels <- lapply(factor_levels, function(l) lapply(l, I))

# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
cbpp_f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
models <- list(
  cbpp_nAGQ0 = list(data = cbpp_d, file = "cbpp.csv", formula = cbpp_f,
                    family = binomial(), nAGQ = 0L),
  cbpp_laplace = list(data = cbpp_d, file = "cbpp.csv", formula = cbpp_f,
                      family = binomial(), nAGQ = 1L),
  cbpp_nAGQ25 = list(data = cbpp_d, file = "cbpp.csv", formula = cbpp_f,
                     family = binomial(), nAGQ = 25L),
  cbpp_prop_weights = list(data = cbpp_d, file = "cbpp.csv",
                           formula = "incidence/size ~ period + (1 | herd)",
                           weights = "size", family = binomial(), nAGQ = 1L),
  cbpp_probit = list(data = cbpp_d, file = "cbpp.csv", formula = cbpp_f,
                     family = binomial(link = "probit"), nAGQ = 1L),
  cbpp_cloglog = list(data = cbpp_d, file = "cbpp.csv", formula = cbpp_f,
                      family = binomial(link = "cloglog"), nAGQ = 1L),
  grouseticks_nAGQ0 = list(data = grouse_d, file = "grouseticks.csv",
                           formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                           family = poisson(), nAGQ = 0L),
  # tolPwrss 1e-13: see the header (1e-12 warns and stops short of the optimum)
  grouseticks_laplace = list(data = grouse_d, file = "grouseticks.csv",
                             formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                             family = poisson(), nAGQ = 1L, tolPwrss = 1e-13),
  verbagg_nAGQ0 = list(data = verbagg_d, file = "verbagg.csv",
                       formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                       family = binomial(), nAGQ = 0L),
  verbagg_laplace = list(data = verbagg_d, file = "verbagg.csv",
                         formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                         family = binomial(), nAGQ = 1L),
  binary_slope_laplace = list(data = binslope_d, file = "glmm_binary_slope.csv",
                              formula = "y ~ x + (1 + x | subject) + (1 | item)",
                              family = binomial(), nAGQ = 1L),
  poisson_offset_nAGQ0 = list(data = poisoff_d, file = "glmm_poisson_offset.csv",
                              formula = "count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)",
                              family = poisson(), nAGQ = 0L),
  poisson_offset_laplace = list(data = poisoff_d, file = "glmm_poisson_offset.csv",
                                formula = "count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)",
                                family = poisson(), nAGQ = 1L),
  negbin_laplace = list(data = negbin_d, file = "glmm_negbin.csv",
                        formula = "count ~ treat + (1 | donor) + (1 | batch)",
                        family = NULL, nb = TRUE, nAGQ = 1L)
)

# One fit (glmer, or glmer.nb + theta refinement). dat/f/fam are local so the
# calls lme4 stores and re-evaluates (glmer.nb's match.call) resolve here.
fit_once <- function(spec, devFunOnly = FALSE) {
  gctrl <- gctrl_for(spec)
  dat <- spec$data
  f <- as.formula(spec$formula)
  fam <- spec$family
  q <- spec$nAGQ
  if (isTRUE(spec$nb)) {
    stopifnot(!devFunOnly)
    fit0 <- glmer.nb(f, data = dat, control = gctrl)
    th0 <- getME(fit0, "glmer.nb.theta")
    fit <- lme4:::optTheta(fit0, interval = log(th0) + c(-0.5, 0.5),
                           tol = nb_refine_tol, control = gctrl)
    attr(fit, "theta_default_tol") <- th0
    return(fit)
  }
  if (!is.null(spec$weights)) {
    stopifnot(identical(spec$weights, "size"))
    return(glmer(f, data = dat, family = fam, weights = size, nAGQ = q,
                 control = gctrl, devFunOnly = devFunOnly))
  }
  glmer(f, data = dat, family = fam, nAGQ = q, control = gctrl,
        devFunOnly = devFunOnly)
}

# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------
summarise_ranef <- function(fit) {
  re <- ranef(fit)
  out <- lapply(re, function(d) {
    cols <- lapply(colnames(d), function(cn) jarr(d[[cn]]))
    names(cols) <- colnames(d)
    list(levels = I(rownames(d)), values = cols)
  })
  names(out) <- names(re)
  out
}

varcorr_records <- function(fit) {
  vcdf <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vcdf)), function(i) {
    list(grp = vcdf$grp[i],
         var1 = if (is.na(vcdf$var1[i])) NULL else vcdf$var1[i],
         var2 = if (is.na(vcdf$var2[i])) NULL else vcdf$var2[i],
         vcov = jnum(vcdf$vcov[i]), sdcor = jnum(vcdf$sdcor[i]))
  })
}

# Recompute the minimised objective from its parts (see the header comment).
loglik_check <- function(fit, spec) {
  cmp <- fit@devcomp$cmp
  fam_aic <- fit@resp$aic()
  laplace_form <- fam_aic + cmp[["ussq"]] + cmp[["ldL2"]]
  out <- list(family_aic = jnum(fam_aic),
              drsum = jnum(cmp[["drsum"]]),
              ussq = jnum(cmp[["ussq"]]),
              ldL2 = jnum(cmp[["ldL2"]]),
              aic_plus_ussq_plus_ldL2 = jnum(laplace_form),
              minus2logLik = jnum(-2 * as.numeric(logLik(fit))))
  if (spec$nAGQ <= 1L) {
    out$formula <- "-2 logLik = cmp$dev = family_aic + ussq + ldL2"
    out$rel_error <- jnum(abs(laplace_form - cmp[["dev"]]) / abs(cmp[["dev"]]))
    stopifnot(abs(laplace_form - cmp[["dev"]]) < 1e-10 * abs(cmp[["dev"]]))
  } else {
    # AGQ for one scalar term: rebuild from the conditional modes.
    stopifnot(length(fit@flist) == 1L, length(fit@cnms[[1]]) == 1L)
    g <- as.integer(fit@flist[[1]])
    th <- getME(fit, "theta")[[1]]
    u0 <- getME(fit, "u")
    fam <- family(fit)
    y <- fit@resp$y; wt <- fit@resp$weights
    eta_fix <- drop(getME(fit, "X") %*% fixef(fit)) + fit@resp$offset
    devc <- function(u) {
      mu <- fam$linkinv(eta_fix + th * u[g])
      u^2 + tapply(fam$dev.resids(y, mu, wt), g, sum)
    }
    devc0 <- devc(u0)
    mu0 <- fam$linkinv(eta_fix + th * u0[g])
    eta0 <- eta_fix + th * u0[g]
    w <- wt * fam$mu.eta(eta0)^2 / fam$variance(mu0)   # GLM working weights
    Ldiag2 <- 1 + th^2 * tapply(w, g, sum)            # L_gg^2
    sd <- 1 / sqrt(Ldiag2)
    gh <- GHrule(spec$nAGQ)
    M <- 0
    for (k in seq_len(nrow(gh))) {
      z <- gh[k, "z"]
      M <- M + gh[k, "w"] * exp(z^2 / 2 - (devc(u0 + z * sd) - devc0) / 2)
    }
    agq <- sum(devc0) + sum(log(Ldiag2)) - 2 * sum(log(M))
    out$formula <- paste("-2 logLik = cmp$dev = sum_g devc0_g + ldL2 - 2 sum_g log M_g",
                         "(deviance residuals, not family aic; see notes)")
    out$sum_devc0 <- jnum(sum(devc0))
    out$ldL2_recomputed <- jnum(sum(log(Ldiag2)))
    out$minus2_sum_log_M <- jnum(-2 * sum(log(M)))
    out$agq_recomputed <- jnum(agq)
    out$rel_error <- jnum(abs(agq - cmp[["dev"]]) / abs(cmp[["dev"]]))
    stopifnot(abs(agq - cmp[["dev"]]) < 1e-8 * abs(cmp[["dev"]]))
  }
  out
}

# Independent check of the Laplace objective (nAGQ 0 and 1): an inner loop
# written here (Fisher scoring with step halving, run to max|step| < 1e-13)
# finds the conditional mode -- u given beta (nAGQ 1), or u and beta jointly
# (nAGQ 0) -- and the objective is family_aic + |u|^2 + log det(A W A' + I),
# A = Lambda' Z', W the GLM working weights at the mode. Then minqa::bobyqa
# polishes the optimum on this exact objective from lme4's estimate (rhobeg
# 1e-3, rhoend 1e-10). Guards against lme4's PIRLS stopping short (its test
# is on the relative change of the penalised deviance), which moves the
# optimum: see grouseticks below.
exact_setup <- function(fit, joint) {
  fam <- family(fit)
  list(Zt = getME(fit, "Zt"), Lt = getME(fit, "Lambdat"), Lind = getME(fit, "Lind"),
       X = getME(fit, "X"), fam = fam, y = fit@resp$y, wt = fit@resp$weights,
       off = fit@resp$offset, u0 = getME(fit, "u"), b0 = unname(fixef(fit)),
       joint = joint, nth = length(getME(fit, "theta")))
}
exact_objective <- function(S, theta, beta = NULL) {
  Lt <- S$Lt
  Lt@x <- as.numeric(theta)[S$Lind]
  A <- Lt %*% S$Zt
  q <- nrow(A); p <- ncol(S$X)
  fam <- S$fam; y <- S$y; wt <- S$wt
  M <- if (S$joint) rbind(A, t(S$X)) else A
  pen <- c(rep(1, q), rep(0, if (S$joint) p else 0))
  par <- if (S$joint) c(S$u0, S$b0) else S$u0
  lin <- function(par) {
    fixed <- if (S$joint) S$off else S$off + drop(S$X %*% beta)
    fixed + drop(crossprod(M, par))
  }
  pdev <- function(par) {
    mu <- fam$linkinv(lin(par))
    sum(fam$dev.resids(y, mu, wt)) + sum(par[seq_len(q)]^2)
  }
  cur <- pdev(par)
  for (it in 1:200) {
    eta <- lin(par); mu <- fam$linkinv(eta)
    me <- fam$mu.eta(eta); v <- fam$variance(mu)
    w <- wt * me^2 / v
    g <- -drop(M %*% (wt * (y - mu) * me / v)) + pen * par
    H <- tcrossprod(M %*% Diagonal(x = sqrt(w))) + Diagonal(x = pen)
    step <- drop(solve(H, g))
    for (k in 0:30) {
      cand <- par - step / 2^k
      new <- pdev(cand)
      if (is.finite(new) && new <= cur + 1e-9 * abs(cur)) break
    }
    par <- cand; cur <- new
    if (max(abs(step / 2^k)) < 1e-13) break
  }
  eta <- lin(par); mu <- fam$linkinv(eta)
  w <- wt * fam$mu.eta(eta)^2 / fam$variance(mu)
  ldL2 <- as.numeric(determinant(tcrossprod(A %*% Diagonal(x = sqrt(w))) + Diagonal(q),
                                 logarithm = TRUE)$modulus)
  u <- par[seq_len(q)]
  fam$aic(y, rep(1, length(y)), mu, wt, 0) + sum(u^2) + ldL2
}
exact_check <- function(fit, spec) {
  if (spec$nAGQ > 1L) return(NULL)
  joint <- spec$nAGQ == 0L
  S <- exact_setup(fit, joint)
  th <- getME(fit, "theta"); be <- fixef(fit)
  f <- if (joint) function(p) exact_objective(S, p)
       else function(p) exact_objective(S, p[seq_len(S$nth)], p[-seq_len(S$nth)])
  p0 <- if (joint) th else c(th, be)
  lower <- c(getME(fit, "lower")[seq_along(th)], rep(-Inf, length(p0) - length(th)))
  at_opt <- f(p0)
  pol <- minqa::bobyqa(p0, f, lower = lower,
                       control = list(rhobeg = 1e-3, rhoend = 1e-10, maxfun = 1e4))
  names(pol$par) <- names(p0)
  list(objective_lme4 = jnum(fit@devcomp$cmp[["dev"]]),
       objective_exact_at_lme4_optimum = jnum(at_opt),
       objective_exact_polished = jnum(pol$fval),
       pars_polished = jobj(pol$par),
       max_abs_par_change = jnum(max(abs(pol$par - p0))),
       polish_feval = as.integer(pol$feval))
}

# Deviance function values at fixed parameter points. nAGQ = 0: dd(theta);
# nAGQ >= 1: dd(c(theta, beta)). The parts are read from the devfun's
# environment right after each call.
devfun_points <- function(spec, points) {
  dd <- fit_once(spec, devFunOnly = TRUE)
  env <- environment(dd)
  lapply(points, function(p) {
    val <- dd(p$pars)
    out <- list(label = p$label,
                pars = jobj(p$pars),
                value = jnum(val),
                ldL2 = jnum(env$pp$ldL2()),
                ussq = jnum(env$pp$sqrL(1)),
                family_aic = jnum(env$resp$aic()),
                drsum = jnum(env$resp$resDev()))
    if (spec$nAGQ == 0L) out$beta_at_mode <- jobj(setNames(env$pp$beta(1), colnames(env$pp$X)))
    out
  })
}

summarise_fit <- function(name, spec, fit, fit_warnings, times) {
  ll <- logLik(fit)
  fam <- family(fit)
  v_cap <- capture(as.matrix(vcov(fit)))
  V <- v_cap$value
  vrx_cap <- capture(as.matrix(vcov(fit, use.hessian = FALSE)))
  Vrx <- vrx_cap$value
  coefs <- suppressWarnings(summary(fit))$coefficients  # same warning as vcov(fit)
  fe <- fixef(fit)
  stopifnot(identical(rownames(coefs), names(fe)))
  theta <- getME(fit, "theta")
  lower <- getME(fit, "lower")[seq_along(theta)]
  names(lower) <- names(theta)
  cmp <- fit@devcomp$cmp
  oi <- fit@optinfo
  hess_avail <- !is.null(oi$derivs$Hessian) && nrow(oi$derivs$Hessian) > length(theta)
  hess_used <- hess_avail && !any(grepl("falling back", v_cap$warnings))
  out <- list(
    model = name,
    data_file = spec$file,
    formula = spec$formula,
    weights = if (is.null(spec$weights)) NULL else spec$weights,
    family = fam$family,
    link = fam$link,
    nAGQ = spec$nAGQ,
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    logLik = jnum(as.numeric(ll)),
    df = as.integer(attr(ll, "df")),
    minus2logLik = jnum(-2 * as.numeric(ll)),
    AIC = jnum(AIC(fit)),
    BIC = jnum(BIC(fit)),
    deviance = jnum(deviance(fit)),
    df_residual = as.integer(df.residual(fit)),
    objective = jnum(cmp[["dev"]]),
    devcomp = jobj(cmp[is.finite(cmp)]),
    fixef = jobj(fe),
    fixef_se = jobj(setNames(sqrt(diag(V)), names(fe))),
    vcov = jmat(V),
    vcov_source = if (hess_used) "hessian" else if (hess_avail) "rx_fallback" else "rx",
    fixef_se_rx = jobj(setNames(sqrt(diag(Vrx)), names(fe))),
    vcov_rx = jmat(Vrx),
    zvalue = jobj(setNames(coefs[, "z value"], names(fe))),
    pvalue = jobj(setNames(coefs[, "Pr(>|z|)"], names(fe))),
    theta = jobj(theta),
    theta_lower = jobj(lower),
    varcorr_df = varcorr_records(fit),
    isSingular = isSingular(fit),
    ranef = summarise_ranef(fit),
    fitted_head = jarr(unname(fitted(fit))[1:10]),
    linpred_head = jarr(unname(predict(fit, type = "link"))[1:10]),
    sum_deviance_resid2 = jnum(sum(residuals(fit, type = "deviance")^2)),
    sum_pearson_resid2 = jnum(sum(residuals(fit, type = "pearson")^2)),
    loglik_check = loglik_check(fit, spec),
    exact_check = exact_check(fit, spec),
    tolPwrss = jnum(fit@devcomp$cmp[["tolPwrss"]])
  )
  if (isTRUE(spec$nb)) {
    out$nb_theta <- jnum(getME(fit, "glmer.nb.theta"))
    out$nb_theta_default_tol <- jnum(attr(fit, "theta_default_tol"))
    out$nb_theta_fit <- "glmer.nb(..., control = gctrl), then lme4:::optTheta(tol = 1e-10)"
    out$nb_theta_evals <- as.integer(attr(fit, "nevals"))
  }
  out$optinfo <- list(optimizer = oi$optimizer,
                      feval = oi$feval,
                      conv = oi$conv$opt,
                      message = if (is.null(oi$message)) NULL else as.character(oi$message),
                      messages = I(as.character(unlist(oi$conv$lme4$messages))),
                      warnings = I(as.character(unlist(oi$warnings))),
                      fit_warnings = I(as.character(fit_warnings)),
                      vcov_warnings = I(as.character(v_cap$all)),
                      vcov_rx_warnings = I(as.character(vrx_cap$all)))
  out$elapsed_s <- list(runs = jarr(times), median = jnum(median(times)))
  out
}

# ---------------------------------------------------------------------------
# Fit everything (each fit timed n_timing times; the first fit is recorded)
# ---------------------------------------------------------------------------
fits <- list()
fitted_models <- list()
for (name in names(models)) {
  spec <- models[[name]]
  times <- numeric(0)
  fit <- NULL
  for (r in seq_len(n_timing)) {
    t0 <- proc.time()[["elapsed"]]
    cap <- capture(fit_once(spec))
    times <- c(times, proc.time()[["elapsed"]] - t0)
    if (r == 1L) { fit <- cap$value; fit_warnings <- cap$all }
  }
  fitted_models[[name]] <- fit
  fits[[name]] <- summarise_fit(name, spec, fit, fit_warnings, times)
  cat(sprintf("%-24s logLik = %.10f  singular = %-5s  (median %.2f s)\n", name,
              as.numeric(logLik(fit)), isSingular(fit), median(times)))
  for (w in unique(c(fit_warnings, unlist(fit@optinfo$conv$lme4$messages))))
    cat("    note:", w, "\n")
}

# cbind and proportion/weights forms are the same model.
stopifnot(isTRUE(all.equal(as.numeric(logLik(fitted_models$cbpp_laplace)),
                           as.numeric(logLik(fitted_models$cbpp_prop_weights)),
                           tolerance = 1e-10)))

# ---------------------------------------------------------------------------
# Deviance-function values at fixed points
# ---------------------------------------------------------------------------
pars_at <- function(fit, theta = getME(fit, "theta"), beta = fixef(fit)) {
  names(theta) <- names(getME(fit, "theta"))
  c(theta, beta)
}
fc1 <- fitted_models$cbpp_laplace
fc0 <- fitted_models$cbpp_nAGQ0
fc25 <- fitted_models$cbpp_nAGQ25
fv1 <- fitted_models$verbagg_laplace
th_only <- function(fit, theta = getME(fit, "theta")) {
  names(theta) <- names(getME(fit, "theta")); theta
}
devfun <- list(
  cbpp_laplace = list(
    model = "cbpp_laplace",
    signature = "dd(c(theta, beta)); Laplace objective with beta fixed, u at its conditional mode",
    points = devfun_points(models$cbpp_laplace, list(
      list(label = "optimum", pars = pars_at(fc1)),
      list(label = "theta=0.5, beta=fixef", pars = pars_at(fc1, theta = 0.5)),
      list(label = "theta=1.0, beta=fixef", pars = pars_at(fc1, theta = 1.0)),
      list(label = "theta=optimum, beta=fixef+c(0.1,-0.1,0.1,-0.1)",
           pars = pars_at(fc1, beta = fixef(fc1) + c(0.1, -0.1, 0.1, -0.1)))))),
  cbpp_nAGQ0 = list(
    model = "cbpp_nAGQ0",
    signature = "dd(theta); PIRLS over u and beta jointly (beta_at_mode is that beta)",
    points = devfun_points(models$cbpp_nAGQ0, list(
      list(label = "optimum", pars = th_only(fc0)),
      list(label = "theta=0.5", pars = th_only(fc0, 0.5)),
      list(label = "theta=1.0", pars = th_only(fc0, 1.0))))),
  cbpp_nAGQ25 = list(
    model = "cbpp_nAGQ25",
    signature = "dd(c(theta, beta)); 25-point adaptive Gauss-Hermite objective",
    points = devfun_points(models$cbpp_nAGQ25, list(
      list(label = "optimum", pars = pars_at(fc25)),
      list(label = "theta=0.5, beta=fixef", pars = pars_at(fc25, theta = 0.5))))),
  verbagg_laplace = list(
    model = "verbagg_laplace",
    signature = "dd(c(theta, beta)); Laplace objective with beta fixed",
    points = devfun_points(models$verbagg_laplace, list(
      list(label = "optimum", pars = pars_at(fv1)),
      list(label = "theta=c(1.0, 0.5), beta=fixef", pars = pars_at(fv1, theta = c(1.0, 0.5))))))
)
# The devfun at the optimum reproduces the fitted objective.
for (k in names(devfun)) {
  fit <- fitted_models[[devfun[[k]]$model]]
  v <- as.numeric(devfun[[k]]$points[[1]]$value)
  stopifnot(abs(v - fit@devcomp$cmp[["dev"]]) < 1e-8 * abs(v))
}

# ---------------------------------------------------------------------------
# The logLik relation, with numbers, for notes
# ---------------------------------------------------------------------------
num <- function(x) sprintf("%.12f", x)
lc <- function(nm) fits[[nm]]$loglik_check
cb1 <- lc("cbpp_laplace"); cb0 <- lc("cbpp_nAGQ0"); cb25 <- lc("cbpp_nAGQ25")
g <- function(x) as.numeric(x)
loglik_notes <- c(
  paste("logLik(fit) = -cmp$dev/2 where cmp$dev (= fit@devcomp$cmp['dev'] = objective) is the",
        "value the optimiser minimised; df = length(beta) + length(theta) (+1 for glmer.nb);",
        "AIC = -2 logLik + 2 df; BIC = -2 logLik + log(nobs) df; df_residual = nobs - df"),
  paste("nAGQ 0 and 1: objective = family_aic + ussq + ldL2, with family_aic = family$aic(...) =",
        "-2 * sum of the full conditional log-likelihood (binomial: log dbinom(k, n, mu) incl. the",
        "binomial coefficient, weights = trials; Poisson: log dpois; NB: log dnbinom(size = nb_theta)),",
        "ussq = |u|^2 at the conditional mode, ldL2 = log det(Lambda'Z'WZLambda + I) with W the GLM",
        "working weights at the mode; no ldRX2, no 2*pi constant. nAGQ = 0 optimises theta only,",
        "with (u, beta) the joint PIRLS mode; nAGQ = 1 optimises (theta, beta), u the mode given beta"),
  paste0("cbpp nAGQ=1 check: family_aic ", num(g(cb1$family_aic)), " + ussq ", num(g(cb1$ussq)),
         " + ldL2 ", num(g(cb1$ldL2)), " = ", num(g(cb1$aic_plus_ussq_plus_ldL2)),
         " ; -2 logLik = ", num(g(cb1$minus2logLik)),
         " (rel. error ", sprintf("%.2g", g(cb1$rel_error)), ")"),
  paste0("cbpp nAGQ=0 check: family_aic ", num(g(cb0$family_aic)), " + ussq ", num(g(cb0$ussq)),
         " + ldL2 ", num(g(cb0$ldL2)), " = ", num(g(cb0$aic_plus_ussq_plus_ldL2)),
         " ; -2 logLik = ", num(g(cb0$minus2logLik))),
  paste("nAGQ > 1 (single scalar term): objective = sum_g devc0_g + ldL2 - 2 sum_g log M_g,",
        "devc_g(u) = u_g^2 + sum_{i in g} dev.resids_i (deviance residuals, NOT family aic),",
        "devc0_g at the conditional mode u0 (given beta), sd_g = 1/L_gg (L_gg^2 = 1 + theta^2",
        "sum_{i in g} w_i), M_g = sum_k w_k exp(z_k^2/2 - (devc_g(u0 + z_k sd_g) - devc0_g)/2),",
        "(z_k, w_k) = GHrule(nAGQ) (standard-normal nodes/weights). For binomial this drops the",
        "saturated log-likelihood (binomial-coefficient) part, so nAGQ=25 logLik is ~ -50 where",
        "nAGQ=1 is ~ -92 on cbpp; they are on different scales"),
  paste0("cbpp nAGQ=25 check: sum devc0 ", num(g(cb25$sum_devc0)), " + ldL2 ", num(g(cb25$ldL2)),
         " - 2 sum log M ", num(g(cb25$minus2_sum_log_M)), " = ", num(g(cb25$agq_recomputed)),
         " ; -2 logLik = ", num(g(cb25$minus2logLik)),
         " (family_aic + ussq + ldL2 would be ", num(g(cb25$aic_plus_ussq_plus_ldL2)), ")"),
  paste("deviance(fit) = sum(residuals(fit, 'deviance')^2) = cmp$drsum, the conditional GLM",
        "deviance at the modes -- NOT -2 logLik (summary()'s 'deviance' column is -2 logLik)")
)

meta <- list(
  R_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  Matrix_version = as.character(packageVersion("Matrix")),
  minqa_version = as.character(packageVersion("minqa")),
  MASS_version = as.character(packageVersion("MASS")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = paste("Rscript", file.path(data_dir, "make_glmm_references.R")),
  control = list(call = paste("glmerControl(optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-10,",
                              "maxfun = 1e5), tolPwrss = 1e-12)"),
                 optimizer = "bobyqa",
                 optCtrl = lapply(gopt_ctrl, jnum),
                 tolPwrss = jnum(default_tolPwrss),
                 tolPwrss_overrides = list(grouseticks_laplace = jnum(1e-13)),
                 nb_theta_refine_tol = jnum(nb_refine_tol)),
  factor_levels = factor_levels,
  notes = c(
    loglik_notes,
    paste("vcov/fixef_se/zvalue/pvalue are lme4's defaults: for nAGQ >= 1 from the",
          "finite-difference Hessian of the objective over (theta, beta) (2 * inverse Hessian,",
          "beta block), so reproducible only to ~1e-4 relative; vcov_rx/fixef_se_rx are",
          "vcov(fit, use.hessian = FALSE) = the RX-based inverse at the mode, exactly",
          "reproducible. nAGQ = 0 has no beta Hessian: both are RX-based"),
    paste("theta is getME(fit, 'theta'), terms ordered by decreasing number of levels of their",
          "grouping factor (ties keep formula order); ranef is {factor: {levels, values: {column:",
          "[...]}}} in level order; varcorr_df is as.data.frame(VarCorr(fit)) as records"),
    paste("fitted_head / linpred_head: first 10 rows of fitted(fit) (response scale) and",
          "predict(fit, type = 'link') (includes the offset)"),
    paste("negbin_laplace: glmer.nb() at default tol, then lme4:::optTheta(tol = 1e-10) (glmer.nb in",
          "lme4 1.1-31 cannot pass tol); nb_theta = getME(fit, 'glmer.nb.theta') is the NB size;",
          "given nb_theta the fit is an ordinary glmer(family = MASS::negative.binomial(nb_theta))"),
    paste("devfun: values of glmer(..., devFunOnly = TRUE) at fixed points (pars named theta",
          "then beta); ldL2/ussq/family_aic/drsum are the parts at that point"),
    paste("cbpp_prop_weights (incidence/size, weights = size) is the same model as cbpp_laplace:",
          "equal to optimiser precision"),
    paste("exact_check (nAGQ 0/1): objective_exact_at_lme4_optimum is the Laplace objective at",
          "lme4's (theta, beta) with the conditional mode found to max|step| < 1e-13 by this",
          "script's own loop (nAGQ 0: u and beta jointly at lme4's theta); objective_exact_polished /",
          "pars_polished: minqa::bobyqa on that exact objective from lme4's estimate. lme4's own",
          "objective (cmp$dev, hence logLik) takes log det(L L') at the penultimate PIRLS iterate, so",
          "it differs from the exact value by up to ~1e-6 absolute (~1e-10 relative) here; an",
          "implementation with a fully converged inner loop should match the exact value"),
    "fit tolPwrss is recorded per fit (1e-12, except grouseticks_laplace at 1e-13: see the R script header)",
    "elapsed_s: proc.time elapsed of each of 3 fits on the generating machine (rough reference only)",
    paste("the optima are flat: parameters move by up to ~2e-5 (VerbAgg) between lme4 and the",
          "polished exact optimum while the objective moves by < 2e-8; nb_theta is determined to",
          "~1e-6 relative (the profile over theta inherits lme4's objective noise). Compare",
          "parameters with rtol ~1e-4, objectives/logLik with rtol ~1e-9, or evaluate the objective",
          "at the stored parameters (devfun, exact_check)")
  ),
  data = lapply(models, function(s) list(file = s$file, nrow = nrow(s$data)))
)

write_reference_json(list(meta = meta, fits = fits, devfun = devfun), "glmm_references.json")
