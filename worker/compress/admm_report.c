/*
 * The compression report and the IR metadata of an ADMM or magnitude run
 * (format in docs/job-spec.md, "The report").
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/model_io.h"
#include "worker/compress/admm_int.h"

static unsigned admm_bits_for(uint64_t n);

/* Bits per stored weight: enough for the quantizer's levels (binary 1,
 * ternary 2, k-bit and pow2 `bits`, pow2sum its larger level set), 32 when
 * the tensor is not quantized. */
unsigned admm_value_bits(const struct admm_target *t)
{
    if (t->rule->circ != NULL)
        return t->rule->params.spectrum_bits > 0 ? (unsigned)t->rule->params.spectrum_bits : 32;
    if (t->rule->quant == NULL)
        return 32;
    const char *q = t->rule->quant->name;
    if (strcmp(q, "binary") == 0)
        return 1;
    if (strcmp(q, "ternary") == 0)
        return 2;
    if (strcmp(q, "pow2sum") == 0) {
        /* positive levels: 2^-j and 2^-j + 2^-k for j <= k < J */
        const uint64_t J = ((uint64_t)1 << (t->p.bits - 1)) - 1;
        return admm_bits_for(2 * (J + J * (J + 1) / 2) + 1);
    }
    return (unsigned)t->p.bits;
}

/* Writes each constrained layer's compression metadata into the IR, so that
 * checkpoints, the exporter and the code generator know what was done. The
 * quantizers do not report their scale yet, so scale stays 0. */
void admm_record_metadata(struct admm_ctx *c)
{
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        struct dp_layer_compress *lc = &c->m->layers[t->layer].comp;
        memset(lc, 0, sizeof(*lc));
        if (t->rule->circ != NULL) {
            /* lstm and gru: both matrices share the rule, so one record. */
            snprintf(lc->scheme, sizeof(lc->scheme), "%s", t->rule->circ->name);
            lc->target_rate = (float)t->cd.k;
            lc->bits = t->rule->params.spectrum_bits;
            continue;
        }
        const char *name = t->rule->prune != NULL ? t->rule->prune->name : t->rule->quant->name;
        int n =
            snprintf(lc->scheme, sizeof(lc->scheme), "%s%s%s", name,
                     t->rule->prune != NULL && t->rule->quant != NULL ? "+" : "",
                     t->rule->prune != NULL && t->rule->quant != NULL ? t->rule->quant->name : "");
        if (n < 0 || (size_t)n >= sizeof(lc->scheme))
            snprintf(lc->scheme, sizeof(lc->scheme), "%s", name);
        lc->target_rate = t->rule->prune != NULL ? (float)t->p.rate : 0.0f;
        if (t->rule->quant != NULL)
            lc->bits = (int)admm_value_bits(t);
    }
}

static unsigned admm_bits_for(uint64_t n)
{
    unsigned b = 1;
    while (b < 63 && ((uint64_t)1 << b) < n)
        b++;
    return b;
}

static json_t *admm_layer_report(const struct admm_ctx *c, const struct admm_target *t, double *tot)
{
    const struct dp_model *m = c->m;
    const struct dp_layer *l = &m->layers[t->layer];
    const float *w = admm_w(c, t);
    const int64_t O = t->shape.o, I = t->shape.i, KK = t->shape.kh * t->shape.kw;
    const uint64_t n = (uint64_t)admm_numel(c, t);
    uint64_t nnz = 0, zero_f = 0, zero_c = 0, zero_col = 0, kernels = 0;
    for (uint64_t i = 0; i < n; i++)
        nnz += w[i] != 0.0f;
    for (int64_t o = 0; o < O; o++) {
        int any = 0;
        for (int64_t j = 0; j < I * KK && !any; j++)
            any = w[o * I * KK + j] != 0.0f;
        zero_f += !any;
        for (int64_t i = 0; i < I; i++) {
            int k_any = 0;
            for (int64_t k = 0; k < KK && !k_any; k++)
                k_any = w[(o * I + i) * KK + k] != 0.0f;
            kernels += k_any;
        }
    }
    for (int64_t i = 0; i < I; i++) {
        int any = 0;
        for (int64_t o = 0; o < O && !any; o++)
            for (int64_t k = 0; k < KK && !any; k++)
                any = w[(o * I + i) * KK + k] != 0.0f;
        zero_c += !any;
    }
    for (int64_t j = 0; j < I * KK; j++) {
        int any = 0;
        for (int64_t o = 0; o < O && !any; o++)
            any = w[o * I * KK + j] != 0.0f;
        zero_col += !any;
    }
    const unsigned vbits = admm_value_bits(t);
    /* Pattern histogram of 3x3 kernels (9-bit tap masks) and the compact
     * filter-kernel-weight format of PatDNN: per kept kernel its input
     * channel and pattern id, a 32-bit offset per filter, then the values. */
    json_t *hist = NULL;
    double fkw = -1.0;
    if (KK == 9) {
        uint32_t counts[512];
        memset(counts, 0, sizeof(counts));
        for (int64_t k = 0; k < O * I; k++) {
            unsigned mk = 0;
            for (int j = 0; j < 9; j++)
                mk |= (w[k * 9 + j] != 0.0f ? 1u : 0u) << j;
            if (mk != 0)
                counts[mk]++;
        }
        hist = json_object();
        uint64_t distinct = 0;
        for (unsigned mk = 1; mk < 512; mk++) {
            if (counts[mk] == 0)
                continue;
            distinct++;
            if (distinct <= 64) {
                char key[8];
                snprintf(key, sizeof(key), "%03x", mk);
                json_object_set_new(hist, key, json_integer((json_int_t)counts[mk]));
            }
        }
        fkw = (double)kernels *
                  (admm_bits_for((uint64_t)I) + admm_bits_for(distinct ? distinct : 1)) +
              32.0 * (double)O + (double)nnz * vbits;
    }
    /* Index overhead counted: CSR stores a column index per non-zero
     * (ceil(log2(columns)) bits) and a 32-bit row pointer per row plus one;
     * the bitmask stores one bit per weight. */
    const double dense = 32.0 * (double)n;
    const double csr =
        (double)nnz * (vbits + admm_bits_for((uint64_t)(I * KK))) + 32.0 * (double)(O + 1);
    const double bitmask = (double)n + (double)nnz * vbits;
    /* The smallest of the three: sparse formats lose to plain packed values
     * when little is pruned. */
    const double packed = (double)n * vbits;
    double quantized = csr < bitmask ? csr : bitmask;
    quantized = packed < quantized ? packed : quantized;
    size_t uses = (size_t)l->out_h * (size_t)l->out_w; /* MACs per weight per image */
    tot[0] += (double)n;
    tot[1] += (double)nnz;
    tot[2] += dense;
    tot[3] += quantized;
    tot[4] += (double)n * (double)uses;
    tot[5] += (double)nnz * (double)uses;
    json_t *shape = json_pack("[IIII]", (json_int_t)O, (json_int_t)I, (json_int_t)t->shape.kh,
                              (json_int_t)t->shape.kw);
    json_t *lr = json_pack(
        "{s:s, s:s, s:o, s:I, s:I, s:f, s:s, s:s?, s:i, s:{s:I, s:I, s:I, s:I, "
        "s:I}, s:{s:f, s:f, s:f, s:f}, s:{s:f, s:f}, s:f}",
        "name", l->name, "param", m->params[t->param].name, "shape", shape, "params", (json_int_t)n,
        "nonzeros", (json_int_t)nnz, "rate", nnz ? (double)n / (double)nnz : 0.0, "prune",
        t->rule->prune ? t->rule->prune->name : "none", "quant",
        t->rule->quant ? t->rule->quant->name : NULL, "bits", (int)vbits, "structure",
        "zero_filters", (json_int_t)zero_f, "zero_channels", (json_int_t)zero_c, "zero_columns",
        (json_int_t)zero_col, "kernels", (json_int_t)(O * I), "kernels_kept", (json_int_t)kernels,
        "storage_bytes", "dense", dense / 8, "csr", csr / 8, "bitmask", bitmask / 8, "quantized",
        quantized / 8, "flops", "dense", 2.0 * (double)n * (double)uses, "effective",
        2.0 * (double)nnz * (double)uses, "rho", t->rho);
    if (lr != NULL && hist != NULL) {
        json_object_set_new(lr, "pattern_histogram", hist);
        json_object_set_new(json_object_get(lr, "storage_bytes"), "fkw", json_real(fkw / 8));
    } else {
        json_decref(hist);
    }
    if (lr != NULL && t->conn_rate > 1.0)
        json_object_set_new(lr, "connectivity_rate", json_real(t->conn_rate));
    return lr;
}

/*
 * A block-circulant matrix in the report: its blocks and padding, what it
 * stores against the dense matrix, and the FLOPs of its FFT form against
 * the dense product, per sample. FFT form (the engine's, worker/circulant):
 * q forward real FFTs per input position and p inverse ones per output
 * position, of size k at 2.5 k log2 k FLOPs each, plus taps * p * q *
 * (k/2 + 1) complex multiply-accumulates at 8 FLOPs per output position
 * (a conv2d transforms each input pixel once for all its taps and sums
 * the taps before one inverse per output pixel; a linear layer has one
 * position, an lstm or gru one per time step); dense: 2 * rows * cols *
 * taps per output position. Stored: p * q * k * taps values of 32 bits,
 * or spectrum_bits each plus one 32-bit scale (the quantized spectra: k
 * real numbers per vector). tot as admm_layer_report's: params are the
 * dense matrix's, "nonzeros" the stored values, so the totals' rate is the
 * parameter reduction; circ sums the circulant matrices alone.
 */
static json_t *admm_circ_layer_report(const struct admm_ctx *c, const struct admm_target *t,
                                      double *tot, double *circ)
{
    const struct dp_model *m = c->m;
    const struct dp_layer *l = &m->layers[t->layer];
    const struct circ_dims *d = &t->cd;
    const double k = (double)d->k, taps = (double)t->taps;
    const double dense = (double)d->rows * (double)d->cols * taps;
    const double stored = (double)circ_dims_numel(d) * taps;
    const unsigned vbits = admm_value_bits(t);
    const double bits = vbits == 32 ? 32.0 * stored : (double)vbits * stored + 32.0;
    /* Positions: a conv2d's input and output pixels, an lstm/gru's steps. */
    double uses = 1.0, in_uses = 1.0;
    if (l->op == DP_OP_LSTM || l->op == DP_OP_GRU) {
        uses = in_uses = (double)l->out_h;
    } else if (l->op == DP_OP_CONV2D || l->op == DP_OP_CIRC_CONV2D) {
        const int src = l->inputs[0];
        uses = (double)l->out_h * l->out_w;
        in_uses = src == DP_MODEL_INPUT ? (double)m->in_h * m->in_w
                                        : (double)m->layers[src].out_h * m->layers[src].out_w;
    }
    const double one_fft = 2.5 * k * log2(k);
    const double fft = ((double)d->q * in_uses + (double)d->p * uses) * one_fft +
                       uses * taps * (double)d->p * (double)d->q * (floor(k / 2.0) + 1.0) * 8.0;
    const double flops_dense = 2.0 * dense * uses;
    const int pad_r = d->p * d->k - d->rows, pad_c = d->q * d->k - d->cols;
    char note[160];
    if (pad_r == 0 && pad_c == 0)
        snprintf(note, sizeof(note), "no padding: %d x %d is %d x %d blocks of %d", d->rows,
                 d->cols, d->p, d->q, d->k);
    else
        snprintf(note, sizeof(note),
                 "padded: rows %d -> %d, columns %d -> %d (%d x %d blocks of %d)", d->rows,
                 d->p * d->k, d->cols, d->q * d->k, d->p, d->q, d->k);
    tot[0] += dense;
    tot[1] += stored;
    tot[2] += 32.0 * dense;
    tot[3] += bits;
    tot[4] += dense * uses;
    tot[5] += fft / 2.0; /* the totals double it: FLOPs, not MACs */
    circ[0] += dense;
    circ[1] += stored;
    circ[2] += bits;
    circ[3] += flops_dense;
    circ[4] += fft;
    json_t *lr = json_pack(
        "{s:s, s:s, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:s}, s:f, s:f, s:f, "
        "s:s, s:i, s:{s:f, s:f}, s:{s:f, s:f}, s:f}",
        "name", l->name, "param", m->params[t->param].name, "op", dp_op_name(l->op), "circulant",
        "block", d->k, "rows", d->rows, "cols", d->cols, "taps", t->taps, "block_rows", d->p,
        "block_cols", d->q, "padded_rows", pad_r, "padded_cols", pad_c, "padding",
        pad_r > 0 || pad_c > 0, "note", note, "params", dense, "stored_values", stored, "rate",
        stored > 0 ? dense / stored : 0.0, "prune", "none", "bits", (int)vbits, "storage_bytes",
        "dense", 4.0 * dense, "stored", bits / 8.0, "flops", "dense", flops_dense, "fft", fft,
        "rho", t->rho);
    if (lr != NULL && t->quant != NULL) {
        const double a = quant_spectrum_scale(admm_w(c, t), &t->shape, &t->p, c->scratch);
        json_object_set_new(lr, "spectrum",
                            json_pack("{s:i, s:f, s:i}", "bits", t->p.bits, "scale", a, "levels",
                                      (1 << t->p.bits) - 1));
    }
    return lr;
}

json_t *admm_report(const struct admm_ctx *c, double final_acc, double final_val, double seconds)
{
    double tot[6] = {0}, circ[5] = {0};
    json_t *layers = json_array();
    for (int k = 0; k < c->n_t; k++)
        json_array_append_new(layers, c->t[k].rule->circ != NULL
                                          ? admm_circ_layer_report(c, &c->t[k], tot, circ)
                                          : admm_layer_report(c, &c->t[k], tot));
    static const char *const phase[] = {"all", "admm", "retrain"};
    const enum admm_phase ph = c->cb != NULL ? c->cb->phase : ADMM_PHASE_ALL;
    json_t *r = json_pack(
        "{s:i, s:s, s:s, s:f, s:f, s:i, s:f, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
        "s:f}, s:O, s:O}",
        "version", 1, "method", c->spec->method == DP_SPEC_ADMM ? "admm" : "magnitude", "phase",
        phase[ph], "dense_test_accuracy", c->dense_acc, "final_test_accuracy", final_acc, "epochs",
        c->epochs_done, "wall_seconds", seconds, "layers", layers, "totals", "params", tot[0],
        "nonzeros", tot[1], "rate", tot[1] > 0 ? tot[0] / tot[1] : 0.0, "storage_dense_bytes",
        tot[2] / 8, "storage_bytes", tot[3] / 8, "storage_rate", tot[3] > 0 ? tot[2] / tot[3] : 0.0,
        "flops_dense", 2 * tot[4], "flops_effective", 2 * tot[5], "trace", c->trace, "stages",
        c->stages);
    if (r != NULL) {
        json_object_set_new(r, "dense_val_accuracy", json_real(c->dense_val_acc));
        json_object_set_new(r, "final_val_accuracy", json_real(final_val));
        json_object_set_new(r, "budget_epochs", json_integer(c->epochs_planned));
        json_object_set_new(r, "spare_epochs", json_integer(c->spare_epochs));
        if (c->spec->distill_weight > 0.0)
            json_object_set_new(
                r, "distill",
                json_pack("{s:f, s:f, s:b}", "temperature", c->spec->distill_temperature, "weight",
                          c->spec->distill_weight, "applied", c->teacher.data != NULL));
        json_object_set_new(r, "validation",
                            json_pack("{s:f, s:I, s:i, s:i}", "fraction", c->spec->val_fraction,
                                      "seed", (json_int_t)c->spec->val_seed, "images", c->val->n,
                                      "train_images", c->train->n));
    }
    if (r != NULL && c->spec->circ_from != DP_SPEC_CIRC_NONE)
        json_object_set_new(
            r, "circulant",
            json_pack("{s:s, s:b, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "from",
                      c->spec->circ_from == DP_SPEC_CIRC_ADMM ? "admm" : "scratch", "converted",
                      c->converted, "matrices", c->n_t, "epochs", c->epochs_done, "dense_params",
                      circ[0], "stored_values", circ[1], "param_reduction",
                      circ[1] > 0 ? circ[0] / circ[1] : 0.0, "storage_bytes_dense", 4.0 * circ[0],
                      "storage_bytes", circ[2] / 8.0, "flops_dense", circ[3], "flops_fft", circ[4],
                      "flops_formula",
                      "per sample: q real FFTs of size k per input position and p per "
                      "output position at 2.5 k log2 k each, + taps*p*q*(k/2+1) complex MACs "
                      "at 8 per output position; dense 2*rows*cols*taps per output position"));
    if (r != NULL && c->spec->stages > 1)
        json_object_set_new(r, "kept_stage", json_integer(c->best_stage + 1));
    if (r != NULL && c->auto_info != NULL)
        json_object_set(r, "auto", c->auto_info);
    /* The input normalisation every evaluation above used, which the
     * model carries on (checkpoint, ONNX): what a deployment must apply. */
    json_t *norm = r != NULL ? dp_model_norm_to_json(c->m) : NULL;
    if (norm != NULL) {
        json_object_set_new(norm, "input", json_string("pixels scaled to [0, 1]"));
        json_object_set_new(r, "normalization", norm);
    }
    return r;
}
