/*
 * The constraint registry: every pruning and quantization scheme of the
 * ADMM framework, by the name a job spec uses. Adding a scheme is adding
 * its projection file and one line in constraint.c; the ADMM loop only
 * ever calls through this table (STYLE rule 33).
 */
#ifndef DP_WORKER_COMPRESS_CONSTRAINT_H
#define DP_WORKER_COMPRESS_CONSTRAINT_H

#include "common/err.h"
#include "worker/compress/proj.h"

enum admm_kind {
    ADMM_PRUNE, /* zeros entries; the support becomes the retraining mask */
    ADMM_QUANT, /* moves entries onto levels; re-applied after every retraining step */
};

struct admm_constraint {
    const char *name; /* as in the job spec: "irregular", "filter", "kbit", ... */
    enum admm_kind kind;
    proj_fn project;
    int uses_rate; /* pruning schemes that read proj_params.rate */
    int needs_3x3; /* pattern: applies to 3x3 kernels only */
};

/* The scheme registered under name, or NULL. */
const struct admm_constraint *admm_constraint_find(const char *name);

/* Comma-separated names of all schemes of a kind, for error messages. */
const char *admm_constraint_names(enum admm_kind kind);

#endif
