/*
 * The compiler's plan: what each layer of a model becomes in the generated
 * code (docs/architecture.md, "worker/codegen/: the compiler").
 *
 *   struct cg_plan *p;
 *   err = cg_plan_build(model, &p, &ei);   analyse, fold, fuse, choose formats
 *   for (int i = 0; i < p->n_steps; i++) p->steps[i] ...
 *   cg_plan_free(p);
 *
 * DESIGN: the model IR is walked once in its topological order and every
 * layer either starts a step (a convolution, a linear layer, a pooling,
 * an add, ...), is absorbed into the step before it (a BatchNorm folded
 * into the convolution that feeds it alone, an activation fused into the
 * producer it alone reads), or is an alias (flatten, dropout and reshape
 * keep the memory order of NCHW, so they cost nothing). Which IR op does
 * what is one row per op in cg_plan.c's table; an op without a row is an
 * error naming the layer, never wrong code.
 *
 * A convolution's format comes from its (folded) weights alone: every
 * kxk kernel's non-zero mask is its pattern and an all-zero kernel is
 * pruned by connectivity. A layer whose non-empty kernels use at most
 * CG_MAX_PATTERNS distinct masks and keeps at most CG_FKW_MAX_DENSITY of
 * its weights is stored in FKW and gets one specialised loop per pattern;
 * other sparse layers are "irregular: dense fallback"; the rest dense.
 *
 * A residual add whose one input is a convolution read by nothing else,
 * computed after the add's other input, is fused into that convolution's
 * epilogue (y = act(conv + bias + residual)): one pass over the map and
 * one barrier fewer per residual block.
 *
 * Activations live in a few slots of equal size reused by liveness (a
 * slot is free again once the last step that reads it has run), so the
 * working set stays small; step outputs never share a slot with that
 * step's inputs.
 */
#ifndef DP_WORKER_CODEGEN_CG_PLAN_H
#define DP_WORKER_CODEGEN_CG_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

#define CG_MAX_PATTERNS    32   /* distinct kernel masks of an FKW layer */
#define CG_MAX_TAPS        9    /* kernels up to 3x3 can be FKW (one 16-bit mask) */
#define CG_MAX_DENSE_TAPS  25   /* larger windows have no generated loop (registers) */
#define CG_FKW_MAX_DENSITY 0.75 /* above this, skipping zeros saves too little */
#define CG_IRREG_DENSITY   0.5  /* below this, a non-pattern layer counts as irregular */
#define CG_VALUE_INPUT     (-1) /* the model input as a value */

enum cg_kind {
    CG_K_CONV,    /* conv2d (+ folded BN) (+ activation) */
    CG_K_LINEAR,  /* linear (+ folded BN) (+ activation) */
    CG_K_MAXPOOL, /* max pooling window */
    CG_K_AVGPOOL, /* average pooling window */
    CG_K_GAP,     /* global average pool */
    CG_K_ADD,     /* elementwise add (+ activation) */
    CG_K_BN,      /* per-channel scale and shift (+ activation) */
    CG_K_ACT,     /* a standalone activation */
    CG_K_SOFTMAX, /* softmax over all per-sample values */
    /* Issue 15 (cg_circ.h): block-circulant layers with a power-of-two
     * block run through FFTs; other block sizes are expanded at compile
     * time into CG_K_LINEAR / CG_K_CONV steps. */
    CG_K_CIRC_LINEAR, /* circ_linear (+ activation), FFT kernel */
    CG_K_CIRC_CONV,   /* circ_conv2d (+ activation), FFT kernel */
    CG_K_LSTM,        /* one LSTM layer over the sequence, dense or circulant (FFT) matrices */
    CG_K_GRU,         /* one GRU layer likewise */
    CG_K_SLICE,       /* a range [start, end) of one per-sample axis (the RNN's last step) */
};

enum cg_act {
    CG_ACT_NONE,
    CG_ACT_RELU, /* max(x, 0) */
    CG_ACT_CLIP, /* min(max(x, lo), hi); ReLU6 is lo 0, hi 6 */
};

enum cg_format {
    CG_FMT_NONE,      /* a step without weights */
    CG_FMT_DENSE,     /* dense weights (F, C, KH, KW) or (O, I) */
    CG_FMT_FKW,       /* pattern + connectivity: FKW (cg_fkw.h) */
    CG_FMT_IRREGULAR, /* irregular sparsity stored and run dense */
    CG_FMT_CSR,       /* irregular, past the measured break-even: rows of (offset, weight) */
    CG_FMT_BITMASK,   /* irregular, past the measured break-even: a bit per weight + non-zeros */
    CG_FMT_CIRC,      /* block-circulant: per block its spectrum (k/2 + 1 complex), FFT kernel */
};

/* A step's geometry: input (C, H, W) per sample, output (F, OH, OW), and
 * for windows the kernel, stride and padding (top, left, bottom, right). */
struct cg_geom {
    int C, H, W;
    int F, OH, OW;
    int kh, kw, sh, sw, pt, pl, pb, pr;
    int ceil_mode, count_include_pad; /* pooling */
};

/* How a convolution's generated kernel computes (cg_sched.h chooses). */
enum cg_kern {
    CG_KERN_NONE,    /* not a convolution */
    CG_KERN_SPATIAL, /* filter by filter, a tile of flat output positions in registers (FKW, and
                        dense on the portable target) */
    CG_KERN_PANEL,   /* dense: weights packed in panels of vl output channels; nb panels x r
                        output pixels of accumulators in registers, K-loop over channels x taps */
};

/* A convolution's schedule on its target (cg_sched.h). */
struct cg_sched {
    enum cg_kern kern;
    int vl;       /* floats per vector (output channels per panel for CG_KERN_PANEL) */
    int nb;       /* CG_KERN_PANEL: panels per register block */
    int r;        /* CG_KERN_PANEL: output pixels per register block */
    int rows;     /* CG_KERN_PANEL: 0, tiles of r consecutive flat positions (rows of the padded
                     width, padding columns computed and dropped); else tiles of `rows` whole
                     output rows (r = rows * OW, no padding column computed) */
    int prefetch; /* CG_KERN_PANEL: the weights stream from memory, prefetched ahead */
    int packed;   /* CG_KERN_SPATIAL, FKW with 4-tap patterns on a 2x2 output map and
                     16-float vectors: per (pattern, channel) one vector of its 4 taps x 4
                     pixels, so a kernel is one FMA (weights expanded x4 in registers) */
    int shift;    /* CG_KERN_SPATIAL: input as kw column-shifted copies of each row phase,
                     (C, sh * kw, PHq, OW), so flat outputs have no padding column; 0: the
                     polyphase planes of the padded input, (C, sh * sw, PHq, PWq) */
    int gw;       /* CG_KERN_PANEL: floats per weight group of the packed layout, shared by
                     every ISA path of a bundle (the layout path's nb * vl); a path's block of
                     nb panels of vl runs gw / (nb * vl) times per group */
    int nv;       /* CG_KERN_SPATIAL on vectors: vectors of flat outputs per tile */
    int sets;     /* CG_KERN_SPATIAL on vectors: accumulator sets a kernel's taps spread over */
    int unroll;   /* CG_KERN_SPATIAL on vectors: kernels interleaved per iteration (1 or 2) */
    int sparse;   /* hook for the sparse kernels: 1 = an irregular layer runs its sparse
                     (CSR/bitmask) kernel, 0 = dense; the tuner times both where
                     cg_sched_candidates offers both */
};

struct cg_step {
    enum cg_kind kind;
    int layer;       /* the IR layer that names the step */
    int out_value;   /* the IR layer whose output the step produces (after fused layers) */
    int n_in;        /* 1, or 2 for add */
    int in_value[2]; /* values read: IR layers or CG_VALUE_INPUT */
    int bn_layer;    /* the folded or applied BN, -1 when none */
    int act_layer;   /* the fused activation's layer, -1 when none */
    int add_layer;   /* conv: a residual add fused into the epilogue (its layer), -1 when none;
                        in_value[1] is then the residual, added before the activation */
    enum cg_act act;
    float lo, hi; /* CG_ACT_CLIP bounds */
    enum cg_format fmt;
    struct cg_geom g;
    float *w; /* conv (F, C, kh, kw), linear (F, C*H*W), BN scale (C); owned, BN folded in */
    float *b; /* (F) bias with BN folded in, BN shift (C); owned; NULL otherwise */
    /* Weight analysis (conv and linear). */
    int n_patterns;                     /* FKW: distinct non-zero kernel masks, sorted */
    uint16_t patterns[CG_MAX_PATTERNS]; /* bit ky*kw+kx = tap (ky, kx) kept */
    size_t n_kernels, n_kernels_kept;   /* F*C kernels, and those not all zero */
    size_t n_weights, n_nonzero;
    long long macs_dense, macs_nonzero; /* per sample */
    struct cg_sched sched;              /* conv only; set by cg_sched_choose for the target */
    /* Memory: slots of the activation block (see the file comment). */
    int in_slot[2], out_slot; /* -1: the model input (in) */
    char why[160];            /* conv and linear: why this format (cg_sparse.h), for formats.json */
    /* Block-circulant and recurrent steps (cg_circ.h). */
    int block;       /* the IR layer's circulant block size k (0: none, dense RNN) */
    int hidden;      /* CG_K_LSTM / CG_K_GRU: hidden size H (= g.OW) */
    int axis, start; /* CG_K_SLICE: the axis (1 = C, 2 = H, 3 = W) and the range's start */
    long long flops; /* per sample: the FLOPs of the kernel that runs (FFT form for
                        CG_FMT_CIRC; 2 * MACs otherwise), for reports */
};

struct cg_plan {
    const struct dp_model *m; /* borrowed */
    int n_steps;
    struct cg_step *steps;
    int *value_slot; /* per IR layer: its slot once computed (aliases share), -2 none */
    int n_slots;
    size_t slot_floats;           /* per sample, the largest activation */
    size_t in_floats, out_floats; /* per sample */
    long long macs_dense, macs_nonzero;
};

/*
 * Builds the plan for m (finalized; borrowed, must outlive the plan). BN
 * layers are folded into copies of the weights, m is not changed.
 * DP_EUNSUPPORTED naming the layer for an op or attribute the compiler
 * cannot generate code for (a grouped or dilated convolution, concat);
 * DP_ENOMEM. *out is released with cg_plan_free.
 */
enum dp_err cg_plan_build(const struct dp_model *m, struct cg_plan **out, struct dp_errinfo *ei);

/* Releases p and everything it owns. NULL is a no-op. */
void cg_plan_free(struct cg_plan *p);

/* "dense", "fkw", "irregular: dense fallback", "" for steps without weights. */
const char *cg_format_name(enum cg_format f);

/* The name of a step kind ("conv", "maxpool", ...). */
const char *cg_kind_name(enum cg_kind k);

#endif
