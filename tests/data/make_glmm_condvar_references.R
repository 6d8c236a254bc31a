# Regenerate lme4's conditional variances of a GLMM's random effects
# (ranef(fit, condVar = TRUE), the "postVar" attribute) that
# tests/test_glmm_condvar.py reads. (The tests never run R.)
#
# Dependencies (Debian/Ubuntu packages):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root, after make_glmm_references.R (this script reads
# its data files and the factor level orders it records in glmm_references.json):
#   Rscript tests/data/make_glmm_condvar_references.R
#
# For a GLMM (no residual scale) lme4's condVar is, per level, the diagonal
# block of Lambda (L L')^-1 Lambda', L L' = Lambda' Z' W Z Lambda + I with W the
# IRLS working weights (prior weight x mu_eta^2 / variance) of the fit's last
# PIRLS iterate. The fits use the tight control of make_glmm_references.R.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_condvar_references.R")
}
source(helpers)  # data_dir, JSON number helpers, write_reference_json

gctrl <- glmerControl(optimizer = "bobyqa",
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                      tolPwrss = 1e-12)
refs <- fromJSON(file.path(data_dir, "glmm_references.json"), simplifyVector = FALSE)
levels_of <- refs$meta$factor_levels

read_case <- function(file, key) {
  d <- read.csv(file.path(data_dir, file), colClasses = "character")
  for (col in names(d)) {
    lv <- levels_of[[key]][[col]]
    if (!is.null(lv)) {
      d[[col]] <- factor(d[[col]], levels = unlist(lv))
    } else if (all(grepl("^-?[0-9.eE+-]+$", d[[col]]))) {
      d[[col]] <- as.numeric(d[[col]])
    }
  }
  d
}

cases <- list(
  cbpp_laplace = list(key = "cbpp", nAGQ = 1L, family = binomial()),
  cbpp_probit = list(key = "cbpp", nAGQ = 1L, family = binomial(link = "probit")),
  cbpp_nAGQ0 = list(key = "cbpp", nAGQ = 0L, family = binomial()),
  verbagg_laplace = list(key = "verbagg", nAGQ = 1L, family = binomial()),
  binary_slope_laplace = list(key = "glmm_binary_slope", nAGQ = 1L, family = binomial()),
  poisson_offset_laplace = list(key = "glmm_poisson_offset", nAGQ = 1L, family = poisson())
)

out <- list()
for (name in names(cases)) {
  spec <- cases[[name]]
  ref <- refs$fits[[name]]
  d <- read_case(ref$data_file, spec$key)
  fit <- glmer(as.formula(ref$formula), data = d, family = spec$family,
               nAGQ = spec$nAGQ, control = gctrl)
  re <- ranef(fit, condVar = TRUE)
  terms <- list()
  for (g in names(re)) {
    pv <- attr(re[[g]], "postVar")  # (k, k, levels)
    k <- dim(pv)[1]
    terms[[g]] <- list(
      levels = I(rownames(re[[g]])),
      columns = I(colnames(re[[g]])),
      # per level, the k x k block row-major
      postvar = lapply(seq_len(dim(pv)[3]), function(l) jarr(t(pv[, , l]))),
      modes = lapply(seq_len(nrow(re[[g]])), function(l) jarr(unlist(re[[g]][l, ])))
    )
  }
  out[[name]] <- list(data_file = ref$data_file, formula = ref$formula,
                      family = spec$family$family, link = spec$family$link,
                      nAGQ = spec$nAGQ, m2ll = jnum(-2 * as.numeric(logLik(fit))),
                      terms = terms)
  cat(name, "done\n")
}
meta <- reference_meta("make_glmm_condvar_references.R",
                       packages = c("lme4", "Matrix", "minqa", "jsonlite"))
meta$control <- list(optimizer = "bobyqa", optCtrl = list(rhoend = jnum(1e-10), maxfun = jnum(1e5)),
                     tolPwrss = jnum(1e-12))
write_reference_json(list(meta = meta, fits = out), "glmm_condvar_references.json")
