/*
 * Broadcasting binary ops (see bcast.h). Each operand is addressed through
 * strides that are 0 along its broadcast axes, so one loop nest serves
 * every shape. The loops run over (sample, channel) rows; a gradient is
 * accumulated in parallel only when distinct rows own distinct elements
 * of it (its channel axis is not broadcast), else serially, so results do
 * not depend on the thread count.
 */
#include "worker/nn/bcast.h"

struct bcast_strides {
    size_t n, c, h, w;
};

static struct bcast_strides bcast_strides(const int *s, const int *o)
{
    struct bcast_strides st;
    st.w = s[2] == 1 && o[2] > 1 ? 0 : 1;
    st.h = s[1] == 1 && o[1] > 1 ? 0 : (size_t)s[2];
    st.c = s[0] == 1 && o[0] > 1 ? 0 : (size_t)s[1] * (size_t)s[2];
    st.n = (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
    return st;
}

static inline float bcast_apply(float x, float y, enum nn_bcast_op op)
{
    return op == NN_BCAST_MUL   ? x * y
           : op == NN_BCAST_SUB ? x - y
           : op == NN_BCAST_ADD ? x + y
                                : x / y;
}

void nn_bcast_forward(float *out, const float *a, const float *b, const struct nn_bcast_dims *d,
                      enum nn_bcast_op op)
{
    const struct bcast_strides sa = bcast_strides(d->a, d->o), sb = bcast_strides(d->b, d->o);
    const int C = d->o[0], H = d->o[1], W = d->o[2];
    const long rows = (long)d->n * C;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const size_t n = (size_t)(r / C), c = (size_t)(r % C);
        float *o = out + (size_t)r * H * W;
        const float *pa = a + n * sa.n + c * sa.c, *pb = b + n * sb.n + c * sb.c;
        for (int h = 0; h < H; h++) {
            const float *qa = pa + (size_t)h * sa.h, *qb = pb + (size_t)h * sb.h;
            for (int w = 0; w < W; w++)
                o[(size_t)h * W + w] = bcast_apply(qa[w * sa.w], qb[w * sb.w], op);
        }
    }
}

/*
 * Accumulates one operand's gradient: g[x] += dout * (d out / d x), where
 * x is operand `which` (0: a, 1: b).
 */
static void bcast_grad(float *g, const float *dout, const float *a, const float *b,
                       const struct nn_bcast_dims *d, enum nn_bcast_op op, int which)
{
    const struct bcast_strides sa = bcast_strides(d->a, d->o), sb = bcast_strides(d->b, d->o);
    const struct bcast_strides sg = which == 0 ? sa : sb;
    const int C = d->o[0], H = d->o[1], W = d->o[2];
    const long rows = (long)d->n * C;
    const int parallel = sg.c != 0 || C == 1;
#pragma omp parallel for schedule(static) if (parallel)
    for (long r = 0; r < rows; r++) {
        const size_t n = (size_t)(r / C), c = (size_t)(r % C);
        const float *go = dout + (size_t)r * H * W;
        const float *pa = a + n * sa.n + c * sa.c, *pb = b + n * sb.n + c * sb.c;
        float *pg = g + n * sg.n + c * sg.c;
        for (int h = 0; h < H; h++) {
            const float *qa = pa + (size_t)h * sa.h, *qb = pb + (size_t)h * sb.h;
            float *qg = pg + (size_t)h * sg.h;
            for (int w = 0; w < W; w++) {
                const float t = go[(size_t)h * W + w], x = qa[w * sa.w], y = qb[w * sb.w];
                float v;
                if (op == NN_BCAST_MUL)
                    v = which == 0 ? t * y : t * x;
                else if (op == NN_BCAST_SUB)
                    v = which == 0 ? t : -t;
                else if (op == NN_BCAST_ADD)
                    v = t;
                else
                    v = which == 0 ? t / y : -t * x / (y * y);
                qg[w * sg.w] += v;
            }
        }
    }
}

void nn_bcast_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       const struct nn_bcast_dims *d, enum nn_bcast_op op)
{
    if (da != NULL)
        bcast_grad(da, dout, a, b, d, op, 0);
    if (db != NULL)
        bcast_grad(db, dout, a, b, d, op, 1);
}
