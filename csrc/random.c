/*
 * Random numbers, reproducing the reference's streams exactly: a minimal
 * standard (Park-Miller) multiplicative congruential generator behind a
 * 32-entry Bays-Durham shuffle table, plus the samplers built on it.  All the
 * state lives in a pb_rng owned by the caller.
 *
 * The samplers work in single precision on purpose: the reference's Poisson
 * sampler accepts or rejects by comparing floats, so each operation below is
 * written with the same float/double types, and this file is compiled without
 * contraction into fused multiply-adds.
 */
#include "internal.h"

#define MCG_A 16807L
#define MCG_M 2147483647L
#define MCG_Q 127773L /* M / A */
#define MCG_R 2836L   /* M % A */
#define SHUFFLE_N 32
#define SHUFFLE_DIV (1 + (MCG_M - 1) / SHUFFLE_N)
#define UNIFORM_MAX (1.0 - 1.2e-7)
/* the Poisson sampler: Gaussian approximation above this mean, multiplied
   uniforms below the other, a Lorentzian rejection in between */
#define PB_POISSON_GAUSS_MEAN 1.0e6f
#define PB_POISSON_DIRECT_MEAN 12.0f
#define PB_POISSON_ENVELOPE 0.9 /* scale of the Lorentzian envelope */

void rng_seed(pb_rng *r, long user_seed)
{
    r->idum = -user_seed;
    r->iy = 0;
    r->gauss_ready = 0;
    r->gauss_spare = 0.0f;
    for (int i = 0; i < SHUFFLE_N; ++i) r->iv[i] = 0;
}

/* one step of the congruential generator, Schrage's method (no overflow) */
static long mcg_next(long x)
{
    long hi = x / MCG_Q;
    x = MCG_A * (x - hi * MCG_Q) - MCG_R * hi;
    if (x < 0) x += MCG_M;
    return x;
}

float rng_uniform(pb_rng *r)
{
    if (r->idum <= 0 || r->iy == 0) {
        /* (re)load the shuffle table; never start from zero */
        r->idum = (-(r->idum) < 1) ? 1 : -(r->idum);
        for (int j = SHUFFLE_N + 7; j >= 0; --j) {
            r->idum = mcg_next(r->idum);
            if (j < SHUFFLE_N) r->iv[j] = r->idum;
        }
        r->iy = r->iv[0];
    }
    r->idum = mcg_next(r->idum);
    int slot = (int)(r->iy / SHUFFLE_DIV);
    r->iy = r->iv[slot];
    r->iv[slot] = r->idum;
    float u = (float)((1.0 / MCG_M) * r->iy);
    if (u > UNIFORM_MAX) return (float)UNIFORM_MAX;
    return u;
}

float rng_gauss(pb_rng *r)
{
    if (r->gauss_ready) {
        r->gauss_ready = 0;
        return r->gauss_spare;
    }
    float v1, v2, rsq;
    do {
        v1 = (float)(2.0 * rng_uniform(r) - 1.0);
        v2 = (float)(2.0 * rng_uniform(r) - 1.0);
        rsq = v1 * v1 + v2 * v2;
    } while (rsq >= 1.0f || rsq == 0.0f);
    float fac = (float)sqrt(-2.0 * log(rsq) / rsq);
    r->gauss_spare = v1 * fac;
    r->gauss_ready = 1;
    return v2 * fac;
}

/* log Gamma(x) by the Lanczos series the reference uses (float in, float out) */
static float log_gamma(float xx)
{
    static const double coef[6] = {76.18009172947146, -86.50532032941677, 24.01409824083091,
                                   -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5};
    double x = xx, y = xx;
    double tmp = x + 5.5;
    tmp -= (x + 0.5) * log(tmp);
    double series = 1.000000000190015;
    for (int j = 0; j < 6; ++j) {
        y += 1.0;
        series += coef[j] / y;
    }
    return (float)(-tmp + log(2.5066282746310005 * series / x));
}

float rng_poisson(pb_rng *r, float mean)
{
    if (mean > PB_POISSON_GAUSS_MEAN) {
        /* Gaussian approximation for very large means */
        return (float)(mean + sqrt(mean) * rng_gauss(r));
    }
    float k, t;
    if (mean < PB_POISSON_DIRECT_MEAN) {
        /* multiply uniforms until the product drops below exp(-mean) */
        float limit = (float)exp(-mean);
        k = -1.0f;
        t = 1.0f;
        do {
            k += 1.0f;
            t *= rng_uniform(r);
        } while (t > limit);
        return k;
    }
    /* rejection from a Lorentzian envelope */
    float width = (float)sqrt(2.0 * mean);
    float log_mean = (float)log(mean);
    float norm = mean * log_mean - log_gamma((float)(mean + 1.0));
    float y;
    do {
        do {
            y = (float)tan(M_PI * rng_uniform(r));
            k = width * y + mean;
        } while (k < 0.0f);
        k = (float)floor(k);
        float y2 = y * y;
        float lg = log_gamma((float)(k + 1.0));
        float expo = k * log_mean - lg - norm;
        t = (float)(PB_POISSON_ENVELOPE * (1.0 + y2) * exp(expo));
    } while (rng_uniform(r) > t);
    return k;
}

void rng_cap_rotation(pb_rng *r, float spread, double U[9])
{
    double r1 = (double)2.0 * rng_uniform(r) - 1.0;
    double r2 = (double)2.0 * rng_uniform(r) - 1.0;
    double r3 = (double)2.0 * rng_uniform(r) - 1.0;

    /* random axis on the unit sphere and a random angle within the cap */
    double ring = sqrt(1.0 - r2 * r2);
    double angle = spread * powf((float)(1.0 - r3 * r3), (float)(1.0 / 3.0));
    double ux = ring * sin(M_PI * r1);
    double uy = ring * cos(M_PI * r1);
    double uz = r2;

    rotation_from_axis_angle(ux, uy, uz, angle, U);
}

int pb_random_uniform(long seed, int n, float *out, pb_error *err)
{
    if (n < 0) return pb_set_error(err, PB_ERR_INVALID, "cannot draw %d deviates", n);
    if (n > 0 && out == NULL) return pb_set_error(err, PB_ERR_INVALID, "no output buffer for %d deviates", n);
    pb_rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; ++i) out[i] = rng_uniform(&r);
    return PB_OK;
}
