# lme4's anova() between two nested binomial GLMMs on cbpp (likelihood-ratio test),
# at the tight settings of make_glmm_references.R. Writes glmm_anova_reference.json,
# read by tests/test_glmm_anova.py. Run from tests/data: Rscript make_glmm_anova_reference.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
cbpp <- read.csv("cbpp.csv")
cbpp$herd <- factor(cbpp$herd, levels = as.character(1:15))
cbpp$period <- factor(cbpp$period, levels = as.character(1:4))
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                     tolPwrss = 1e-12)
small <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial,
               control = ctrl)
large <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
               control = ctrl)
a <- as.data.frame(anova(small, large))
out <- list(
  small = "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
  large = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
  npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, deviance = a$deviance,
  Chisq = a$Chisq[2], Df = a$Df[2], p = a[["Pr(>Chisq)"]][2],
  lme4_version = as.character(packageVersion("lme4"))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "glmm_anova_reference.json")
