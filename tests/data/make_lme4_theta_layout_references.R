# Regenerate the lme4 reference data for the layout of theta (the order of the
# random-effect terms) that tests/test_theta_layout.py reads. (The tests never run
# R; they read the file this script writes.) Same conventions as
# tests/data/make_lme4_references.R (%.17g numbers, tight nloptwrap settings,
# versions in meta), from tests/data/lme4_reference_helpers.R.
#
# lme4 does not keep the formula's order of random-effect terms: mkReTrms
# (lme4 R/utilities.R; reformulas::mkReTrms in newer versions) computes the
# number of levels nl of each term's grouping factor and, if any(diff(nl) > 0),
# reorders the terms by ord <- rev(order(nl)): decreasing number of levels, and
# terms with the same number of levels in REVERSE formula order (order() is
# stable, rev() reverses it); when nl is already non-increasing nothing moves.
# getME(fit, "theta") is in that order. Every model below is written so that
# this order differs from the formula's (except the last, a control).
#
# Dependencies (Debian/Ubuntu packages; nloptr comes in with lme4):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
#   Rscript tests/data/make_lme4_theta_layout_references.R
#
# Reads tests/data/penicillin.csv, pastes.csv, crossed_slopes.csv (written by
# make_lme4_references.R, make_lme4_slope_references.R and make_slope_data.py);
# writes tests/data/lme4_theta_layout_references.json.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: ",
       "Rscript tests/data/make_lme4_theta_layout_references.R")
}
source(helpers)  # data_dir, JSON number helpers, data I/O, ctrl, meta, output

penicillin <- read_checked("penicillin.csv",
                           c(diameter = "numeric", plate = "character",
                             sample = "character"), 144L)
pastes <- read_checked("pastes.csv",
                       c(strength = "numeric", batch = "character",
                         cask = "character", sample = "character"), 60L)
crossed <- read_checked("crossed_slopes.csv",
                        c(subject = "character", item = "character",
                          cond = "character", t = "numeric", y = "numeric"), 960L,
                        how = "run python3 tests/data/make_slope_data.py first")
for (nm in c("plate", "sample")) penicillin[[nm]] <- factor(penicillin[[nm]])
for (nm in c("batch", "cask", "sample")) pastes[[nm]] <- factor(pastes[[nm]])
crossed$subject <- factor(crossed$subject)
crossed$item <- factor(crossed$item)
crossed$cond <- factor(crossed$cond, levels = c("a", "b"))

models <- list(
  # 6 samples before 24 plates: lme4 puts plate first
  penicillin_sample_first = list(
    data = penicillin, file = "penicillin.csv",
    formula = "diameter ~ 1 + (1 | sample) + (1 | plate)"),
  # (1 | batch/cask) is (1 | cask:batch) + (1 | batch) in lme4 (30 and 10 levels)
  pastes_nested = list(
    data = pastes, file = "pastes.csv",
    formula = "strength ~ 1 + (1 | batch/cask)"),
  # 24 items before 40 subjects, with a correlated slope (a 3-entry block)
  crossed_item_first = list(
    data = crossed, file = "crossed_slopes.csv",
    formula = "y ~ t + cond + (1 | item) + (1 + t | subject)"),
  # ties: the two subject terms of (1 + t || subject) come out as t, (Intercept)
  crossed_uncorr_item_first = list(
    data = crossed, file = "crossed_slopes.csv",
    formula = "y ~ t + (1 | item) + (1 + t || subject)"),
  # control: nl = (40, 40, 24) is non-increasing, so lme4 keeps the formula order
  crossed_uncorr_subject_first = list(
    data = crossed, file = "crossed_slopes.csv",
    formula = "y ~ t + (1 + t || subject) + (1 | item)")
)

fits <- list()
for (name in names(models)) {
  spec <- models[[name]]
  fit <- lmer(as.formula(spec$formula), data = spec$data, REML = TRUE, control = ctrl)
  re <- lFormula(as.formula(spec$formula), data = spec$data)$reTrms
  theta <- getME(fit, "theta")
  fits[[name]] <- list(
    model = name,
    data_file = spec$file,
    formula = spec$formula,
    method = "REML",
    REML = TRUE,
    criterion_name = "REMLcrit",
    criterion = jnum(REMLcrit(fit)),
    # getME(fit, "theta"), in its order: values and names as two arrays
    theta = jarr(unname(theta)),
    theta_names = I(names(theta)),
    # the terms in lme4's order: grouping factor, columns, number of levels
    term_factors = I(names(re$cnms)),
    term_columns = lapply(unname(re$cnms), I),
    term_nlevels = I(as.integer(re$nl))
  )
  cat(sprintf("%-30s REMLcrit = %.10f  theta = %s\n", name, REMLcrit(fit),
              paste(sprintf("%s=%.6f", names(theta), theta), collapse = " ")))
}

meta <- c(reference_meta("make_lme4_theta_layout_references.R"), list(
  notes = c(
    "theta is getME(fit, 'theta') in lme4's term order, theta_names its names",
    "term_factors/term_columns/term_nlevels: names(reTrms$cnms), reTrms$cnms, reTrms$nl",
    "criterion is REMLcrit(fit)"
  ),
  data = data_meta(models)
))

write_reference_json(list(meta = meta, fits = fits), "lme4_theta_layout_references.json")
