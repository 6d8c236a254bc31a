# Regenerate glmer's fits of the rows-and-messages cases of
# tests/test_glmm_input_rows.py (the tests never run R): rows with a missing cbind
# count, weight or offset dropped (na.action), a factor response whose first level
# occurs only in a dropped row, nAGQ = 5, and an I(y > 0) response.
#
# Dependencies (Debian/Ubuntu packages):
#   apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
#       r-base-core r-cran-lme4 r-cran-jsonlite
#
# Run from the repository root:
#   Rscript tests/data/make_glmm_input_rows_references.R
# It reads tests/data/glmm_input_rows.csv (tests/test_glmm_input_rows.py's make(),
# written with float_format "%.17g") and writes glmm_input_rows_references.json:
# per case, fixef, theta and nobs of the tight fit below.

helpers <- file.path("tests", "data", "lme4_reference_helpers.R")
if (!file.exists(helpers)) {
  stop("run this script from the repository root: Rscript tests/data/make_glmm_input_rows_references.R")
}
source(helpers)  # data_dir, JSON number helpers, write_reference_json

ctl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                    tolPwrss = 1e-12)
d <- read.csv(file.path(data_dir, "glmm_input_rows.csv"))
d$g <- factor(d$g)
fits <- list()
a <- d; a$s[6] <- NA  # row 5 (0-based)
fits$cbind_na <- glmer(cbind(s, f) ~ x + (1 | g), a, binomial, control = ctl)
a <- d; a$x[1] <- NA
a$yc <- factor(ifelse(a$y == 1, "yes", "no"), levels = c("aa", "no", "yes")); a$yc[1] <- "aa"
fits$unused_level <- glmer(yc ~ x + (1 | g), a, binomial, control = ctl)
a <- d; a$wt <- 1; a$wt[4] <- NA
fits$weight_na <- glmer(y ~ x + (1 | g), a, binomial, weights = wt, control = ctl)
a <- d; a$h[4] <- NA
fits$offset_na <- glmer(c ~ x + offset(log(h)) + (1 | g), a, poisson, control = ctl)
fits$nagq5 <- glmer(y ~ x + (1 | g), d, binomial, nAGQ = 5, control = ctl)
fits$full <- glmer(I(y > 0) ~ x + (1 | g), d, binomial, control = ctl)

out <- lapply(fits, function(m) list(fixef = jarr(fixef(m)), theta = jarr(getME(m, "theta")),
                                     nobs = nobs(m)))
meta <- reference_meta("make_glmm_input_rows_references.R",
                       packages = c("lme4", "Matrix", "minqa", "jsonlite"))
meta$control <- list(optimizer = "bobyqa", optCtrl = list(rhoend = jnum(1e-10), maxfun = jnum(1e5)),
                     tolPwrss = jnum(1e-12))
write_reference_json(list(meta = meta, fits = out), "glmm_input_rows_references.json")
