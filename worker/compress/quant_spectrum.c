/*
 * Frequency-domain quantization of block-circulant vectors (see proj.h).
 *
 * A direct DFT in double with an exact twiddle table (index f * t mod k),
 * not FFTW: k is at most 256, the work per vector is O(k^2) next to a
 * training step's O(k log k) per sample and vector, and the result is then
 * the same on every machine. The scale is chosen over the whole tensor
 * first (one pass), then every vector is quantized and written back
 * (a second pass), so no spectrum is stored.
 */
#include <math.h>
#include <stdint.h>

#include "common/assert.h"
#include "worker/compress/proj.h"

#define QS_PI 3.14159265358979323846

/* The twiddles cos, sin (2 pi j / k), j < k, into tw (2k doubles). */
static void qs_twiddles(double *tw, int k)
{
    for (int j = 0; j < k; j++) {
        const double a = 2.0 * QS_PI * (double)j / (double)k;
        tw[2 * j] = cos(a);
        tw[2 * j + 1] = sin(a);
    }
}

/* spec (2 * (k/2 + 1) doubles: re, im) = real DFT of c. The imaginary
 * parts of C[0] and, for even k, C[k/2] are exactly 0. */
static void qs_dft(double *spec, const float *c, int k, const double *tw)
{
    for (int f = 0; f <= k / 2; f++) {
        double re = 0.0, im = 0.0;
        for (int t = 0; t < k; t++) {
            const int j = (int)(((int64_t)f * t) % k);
            re += (double)c[t] * tw[2 * j];
            im -= (double)c[t] * tw[2 * j + 1];
        }
        const int real_only = f == 0 || 2 * f == k;
        spec[2 * f] = re;
        spec[2 * f + 1] = real_only ? 0.0 : im;
    }
}

/* c = inverse real DFT of spec (Hermitian symmetry implied). */
static void qs_idft(float *c, const double *spec, int k, const double *tw)
{
    for (int t = 0; t < k; t++) {
        double acc = spec[0];
        for (int f = 1; 2 * f < k; f++) {
            const int j = (int)(((int64_t)f * t) % k);
            acc += 2.0 * (spec[2 * f] * tw[2 * j] - spec[2 * f + 1] * tw[2 * j + 1]);
        }
        if (k % 2 == 0)
            acc += (t % 2 == 0 ? 1.0 : -1.0) * spec[k];
        c[t] = (float)(acc / (double)k);
    }
}

static int qs_finite(const float *z, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(z[i]))
            return 0;
    return 1;
}

double quant_spectrum_scale(const float *z, const struct proj_shape *s, const struct proj_params *p,
                            void *scratch)
{
    const int k = (int)s->i;
    DP_ASSERT(k >= 1 && k <= 4096 && p->bits >= 2 && p->bits <= 16 && s->kh * s->kw == 1);
    const size_t n_vec = (size_t)s->o;
    if (!qs_finite(z, n_vec * (size_t)k))
        return 0.0;
    double *tw = scratch, *spec = tw + 2 * k;
    qs_twiddles(tw, k);
    double amax = 0.0;
    for (size_t v = 0; v < n_vec; v++) {
        qs_dft(spec, z + v * (size_t)k, k, tw);
        for (int j = 0; j < 2 * (k / 2 + 1); j++)
            amax = fmax(amax, fabs(spec[j]));
    }
    const double levels = (double)((1 << (p->bits - 1)) - 1);
    return amax > 0.0 ? amax / levels : 0.0;
}

void quant_spectrum(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch)
{
    const int k = (int)s->i;
    const double a = quant_spectrum_scale(z, s, p, scratch);
    if (!(a > 0.0))
        return;
    const double levels = (double)((1 << (p->bits - 1)) - 1);
    double *tw = scratch, *spec = tw + 2 * k;
    for (size_t v = 0; v < (size_t)s->o; v++) {
        float *c = z + v * (size_t)k;
        qs_dft(spec, c, k, tw);
        for (int j = 0; j < 2 * (k / 2 + 1); j++) {
            /* round() sends halves away from zero, as kbit does. */
            const double q = fmin(levels, fmax(-levels, round(spec[j] / a)));
            spec[j] = q * a;
        }
        qs_idft(c, spec, k, tw);
    }
}
