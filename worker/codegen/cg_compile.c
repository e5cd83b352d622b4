/*
 * The driver (see cg_compile.h): plan, weights, reference, files.
 */
#include "worker/codegen/cg_compile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/file.h"
#include "worker/codegen/cg_emit.h"
#include "worker/codegen/cg_emit_ocl.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_sched.h"
#include "worker/codegen/cg_schedfile.h"
#include "worker/codegen/cg_sparse.h"
#include "worker/codegen/cg_tune.h"
#include "worker/codegen/cg_weights.h"
#include "worker/nn/net.h"

#define CG_PATH_MAX 4096

int cg_target_vl(const char *target)
{
    if (strcmp(target, "portable") == 0 || strcmp(target, "opencl") == 0)
        return 0;
    if (strcmp(target, "native") != 0)
        return -1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 8;
#endif
    return 4;
}

/* ---- Files -------------------------------------------------------------- */

typedef enum dp_err cg_writer_fn(FILE *f, const void *ctx, struct dp_errinfo *ei);

/* Writes dir/name through dir/name.tmp and a rename, so a reader never
 * sees half a file. */
static enum dp_err cg_file_write(const char *dir, const char *name, cg_writer_fn *fn,
                                 const void *ctx, struct dp_errinfo *ei)
{
    char path[CG_PATH_MAX], tmp[CG_PATH_MAX + 8];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return dp_errinfo_set(ei, DP_EINVAL, "output path %s/%s is too long", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL)
        return dp_errinfo_set(ei, dp_err_from_errno(errno), "cannot create %s: %s", tmp,
                              strerror(errno));
    enum dp_err err = fn(f, ctx, ei);
    if (fclose(f) != 0 && !err)
        err = dp_errinfo_set(ei, DP_EIO, "writing %s failed: %s", tmp, strerror(errno));
    if (!err && rename(tmp, path) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (err) {
        remove(tmp);
        /* Name the file: the writers' messages do not know the directory. */
        if (ei != NULL && strstr(ei->msg, path) == NULL && strstr(ei->msg, tmp) == NULL) {
            char msg[sizeof(ei->msg)];
            memcpy(msg, ei->msg, sizeof(msg));
            dp_errinfo_set(ei, err, "%s: %s", path, msg);
        }
    }
    return err;
}

struct cg_model_c_ctx {
    const struct cg_plan *p;
    const struct cg_weights *w;
    const struct cg_emit_opts *o;
};

static enum dp_err cg_write_model_c(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    const struct cg_model_c_ctx *c = ctx;
    if (strcmp(c->o->target, "opencl") == 0)
        return cg_ocl_emit_model_c(f, c->p, c->w, c->o, ei);
    return cg_emit_model_c(f, c->p, c->w, c->o, ei);
}

static enum dp_err cg_write_model_h(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    (void)ctx;
    return cg_emit_model_h(f, ei);
}

struct cg_report_ctx {
    const struct cg_plan *p;
    const struct cg_weights *w;
    int vl;
};

static enum dp_err cg_write_report(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    const struct cg_report_ctx *c = ctx;
    return cg_sparse_write_report(f, c->p, c->w, c->vl, ei);
}

static enum dp_err cg_write_bench_c(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    (void)ctx;
    return cg_emit_bench_c(f, ei);
}

static enum dp_err cg_write_makefile(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    const struct cg_emit_opts *o = ctx;
    if (strcmp(o->target, "opencl") == 0)
        return cg_ocl_emit_makefile(f, ei);
    return cg_emit_makefile(f, ctx, ei);
}

struct cg_bytes {
    const unsigned char *data;
    size_t len;
};

static enum dp_err cg_write_bytes(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    const struct cg_bytes *b = ctx;
    if (fwrite(b->data, 1, b->len, f) != b->len)
        return dp_errinfo_set(ei, DP_EIO, "short write");
    return DP_OK;
}

/* ---- Reference ---------------------------------------------------------- */

/* A fixed input value in [-1, 1): a hash of its index (splitmix64), so the
 * reference inputs are the same on every machine. */
static float cg_ref_input(uint64_t i)
{
    uint64_t z = i + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
}

static void cg_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* y (n, of) = the engine's outputs for x (n samples), evaluation mode. */
static enum dp_err cg_reference_engine(struct dp_model *m, const float *x, size_t n, size_t of,
                                       float *y, struct dp_errinfo *ei)
{
    struct nn_net *net = NULL;
    enum dp_err err = nn_net_new(m, (int)n, &net, ei);
    if (err)
        return err;
    if ((size_t)net->n_classes != of) {
        err = dp_errinfo_set(ei, DP_ESHAPE, "the engine's output (%d) is not the plan's (%zu)",
                             net->n_classes, of);
    } else {
        const float *out = nn_net_forward(net, x, (int)n, 0);
        if (out == NULL)
            err =
                dp_errinfo_set(ei, DP_ENOMEM, "the reference forward pass failed (out of memory)");
        else
            memcpy(y, out, n * of * sizeof(float));
    }
    nn_net_free(net);
    return err;
}

/*
 * reference.bin: a 64-byte header (magic "DPCGREF1", uint32 version 1, n,
 * in_floats, out_floats), then n inputs and the engine's n outputs, float32.
 */
static enum dp_err cg_reference(struct dp_model *m, const struct cg_plan *p, cg_ref_fn *ref,
                                void *ref_ctx, unsigned char **out, size_t *out_len,
                                struct dp_errinfo *ei)
{
    const size_t n = CG_REF_SAMPLES, in = p->in_floats, of = p->out_floats;
    const size_t len = 64 + (n * in + n * of) * sizeof(float);
    unsigned char *buf = dp_calloc(1, len);
    float *x = dp_malloc(dp_size_mul(n * in, sizeof(float)));
    enum dp_err err = DP_OK;
    if (buf == NULL || x == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the reference");
        goto out;
    }
    for (size_t i = 0; i < n * in; i++)
        x[i] = cg_ref_input(i);
    float *yo = (float *)(buf + 64 + n * in * sizeof(float));
    if (ref != NULL)
        err = ref(ref_ctx, x, (int)n, yo, ei);
    else
        err = cg_reference_engine(m, x, n, of, yo, ei);
    if (err)
        goto out;
    memcpy(buf, "DPCGREF1", 8);
    cg_put_u32(buf + 8, 1);
    cg_put_u32(buf + 12, (uint32_t)n);
    cg_put_u32(buf + 16, (uint32_t)in);
    cg_put_u32(buf + 20, (uint32_t)of);
    memcpy(buf + 64, x, n * in * sizeof(float));
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    dp_free(x);
    dp_free(buf);
    return err;
}

/* ---- The driver --------------------------------------------------------- */

static enum dp_err cg_write_schedule(FILE *f, const void *ctx, struct dp_errinfo *ei);

/* What one bundle is written from: the plan, the schedule, the reference. */
struct cg_bundle_ctx {
    struct cg_plan *p;
    const struct cg_compile_opts *o;
    const struct cg_schedule *sch;
    const unsigned char *ref;
    size_t ref_len;
    struct cg_weights w; /* packed for sch's layout path by cg_bundle_write */
};

static enum dp_err cg_write_schedule(FILE *f, const void *ctx, struct dp_errinfo *ei)
{
    const struct cg_bundle_ctx *b = ctx;
    return cg_schedfile_write(f, b->p, b->o->target, b->sch, ei);
}

/* Writes the bundle of b->sch into dir: weights for its layout path, then
 * every file. */
static enum dp_err cg_bundle_write(struct cg_bundle_ctx *b, const char *dir, struct dp_errinfo *ei)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dp_errinfo_set(ei, dp_err_from_errno(errno), "cannot create %s: %s", dir,
                              strerror(errno));
    const int ocl = strcmp(b->o->target, "opencl") == 0;
    cg_weights_free(&b->w);
    memset(&b->w, 0, sizeof(b->w));
    if (!ocl) /* OpenCL: the steps carry cg_ocl_sched's kernels, no ISA paths */
        cg_schedule_apply(b->p, b->sch, 0);
    /* OpenCL keeps every array float: its runtime restores no codes. */
    enum dp_err err = cg_weights_build(b->p, !ocl, &b->w, ei);
    if (err)
        return err;
    const struct cg_emit_opts eo = {b->o->name, b->o->source, b->o->target, 0, b->sch};
    const struct cg_model_c_ctx mc = {b->p, &b->w, &eo};
    const struct cg_bytes wb = {b->w.data, b->w.len}, rb = {b->ref, b->ref_len};
    err = cg_file_write(dir, "weights.bin", cg_write_bytes, &wb, ei);
    if (!err)
        err = cg_file_write(dir, "reference.bin", cg_write_bytes, &rb, ei);
    if (!err)
        err = cg_file_write(dir, "model.h", cg_write_model_h, NULL, ei);
    if (!err)
        err = cg_file_write(dir, "model.c", cg_write_model_c, &mc, ei);
    if (!err)
        err = cg_file_write(dir, "bench.c", cg_write_bench_c, NULL, ei);
    if (!err)
        err = cg_file_write(dir, "Makefile", cg_write_makefile, &eo, ei);
    if (!err && !ocl)
        err = cg_file_write(dir, "schedule.json", cg_write_schedule, b, ei);
    const struct cg_report_ctx rc = {b->p, &b->w, cg_target_vl(b->o->target)};
    if (!err)
        err = cg_file_write(dir, "formats.json", cg_write_report, &rc, ei);
    return err;
}

/* The tuner's way to write a candidate bundle (cg_tune.h). */
static enum dp_err cg_tune_build(void *ctx, const struct cg_schedule *sch, const char *dir,
                                 struct dp_errinfo *ei)
{
    struct cg_bundle_ctx *b = ctx;
    const struct cg_schedule *keep = b->sch;
    b->sch = sch;
    enum dp_err err = cg_bundle_write(b, dir, ei);
    b->sch = keep;
    return err;
}

/* The schedule to compile with: o->schedule's file, else the cost model's;
 * tuned when o->tune_s > 0. */
static enum dp_err cg_schedule_get(struct cg_bundle_ctx *b, struct cg_schedule *sch,
                                   struct cg_tune_report *rep, struct dp_errinfo *ei)
{
    const struct cg_compile_opts *o = b->o;
    enum dp_err err;
    if (o->schedule != NULL) {
        unsigned char *text = NULL;
        size_t len = 0;
        err = dp_file_read(o->schedule, o->schedule, CG_SCHEDFILE_MAX, &text, &len, ei);
        if (err)
            return err;
        err = cg_schedfile_parse((const char *)text, len, b->p, o->target, sch, ei);
        dp_free(text);
        if (err) {
            char msg[sizeof(ei->msg)];
            memcpy(msg, ei->msg, sizeof(msg));
            return dp_errinfo_set(ei, err, "%s: %s", o->schedule, msg);
        }
    } else {
        err = cg_schedule_default(b->p, o->target, o->threads, sch, ei);
        if (err)
            return err;
    }
    if (o->tune_s > 0.0) {
        b->sch = sch;
        err = cg_tune(b->p, o->tune_s, cg_tune_build, b, sch, rep, ei);
    }
    return err;
}

enum dp_err cg_compile(struct dp_model *m, const char *dir, const struct cg_compile_opts *o,
                       struct cg_compile_summary *summary, struct dp_errinfo *ei)
{
    return cg_compile_ref(m, dir, o, NULL, NULL, summary, ei);
}

enum dp_err cg_compile_ref(struct dp_model *m, const char *dir, const struct cg_compile_opts *o,
                           cg_ref_fn *ref_fn, void *ref_ctx, struct cg_compile_summary *summary,
                           struct dp_errinfo *ei)
{
    struct cg_plan *p = NULL;
    struct cg_schedule sch = {0};
    struct cg_bundle_ctx b = {0};
    unsigned char *ref = NULL;
    size_t ref_len = 0;
    enum dp_err err = DP_OK;
    const int vl = cg_target_vl(o->target);
    if (vl < 0)
        return dp_errinfo_set(ei, DP_EINVAL, "unknown target '%s' (native, portable or opencl)",
                              o->target);
    const int ocl = strcmp(o->target, "opencl") == 0;
    if (ocl && (o->tune_s > 0.0 || o->schedule != NULL))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "tuning and schedule files are for the native and portable targets; "
                              "opencl has one schedule (its work-items) and no schedule.json");
    int sparse = cg_sparse_mode_parse(o->sparse != NULL ? o->sparse : "auto");
    if (sparse < 0)
        return dp_errinfo_set(ei, DP_EINVAL, "unknown sparse mode '%s' (auto, dense, csr, bitmask)",
                              o->sparse);
    /* OpenCL has no sparse kernels: auto keeps irregular layers dense
     * there; csr or bitmask asked for is refused by cg_ocl_check naming
     * the layer. */
    if (ocl && sparse == CG_SPARSE_AUTO)
        sparse = CG_SPARSE_DENSE;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dp_errinfo_set(ei, dp_err_from_errno(errno), "cannot create %s: %s", dir,
                              strerror(errno));
    err = cg_plan_build(m, &p, ei);
    if (!err) /* formats before schedules: a CSR or bitmask layer has its own */
        cg_sparse_choose(p, vl, (enum cg_sparse_mode)sparse);
    if (!err)
        err = cg_reference(m, p, ref_fn, ref_ctx, &ref, &ref_len, ei);
    if (err)
        goto out;
    b.p = p;
    b.o = o;
    b.ref = ref;
    b.ref_len = ref_len;
    struct cg_tune_report rep = {0};
    if (ocl) {
        cg_ocl_sched(p); /* before the weights: their layout follows the schedule */
        err = cg_ocl_check(p, ei);
        sch.n_steps = p->n_steps;
        sch.threads = o->threads; /* the host runner's default (cg_emit_ocl.h) */
        sch.prefer = -1;
    } else
        err = cg_schedule_get(&b, &sch, &rep, ei);
    if (err)
        goto out;
    b.sch = &sch;
    err = cg_bundle_write(&b, dir, ei);
    if (err || summary == NULL)
        goto out;
    memset(summary, 0, sizeof(*summary));
    summary->n_steps = p->n_steps;
    for (int k = 0; k < p->n_steps; k++) {
        summary->n_fkw += p->steps[k].fmt == CG_FMT_FKW;
        summary->n_dense += p->steps[k].fmt == CG_FMT_DENSE;
        summary->n_irregular += p->steps[k].fmt == CG_FMT_IRREGULAR;
        summary->n_csr += p->steps[k].fmt == CG_FMT_CSR;
        summary->n_bitmask += p->steps[k].fmt == CG_FMT_BITMASK;
    }
    summary->weights_bytes = b.w.len;
    summary->n_quantized = b.w.n_q;
    summary->macs_dense = p->macs_dense;
    summary->macs_nonzero = p->macs_nonzero;
    summary->vl = vl;
    summary->threads = sch.threads;
    summary->isa = sch.prefer >= 0 ? sch.path[sch.prefer].isa : NULL;
    summary->tune = rep;
out:
    dp_free(ref);
    cg_weights_free(&b.w);
    cg_schedule_free(&sch);
    cg_plan_free(p);
    return err;
}
