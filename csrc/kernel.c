/*
 * The pixel kernel: for every pixel, sum the scattered intensity over sensor
 * layers, sub-pixels, sources, phi steps and mosaic domains, then scale it to
 * photons.  Everything that does not depend on the pixel was prepared in the
 * plan (sources, rotated crystal axes per phi step and domain).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Round to the nearest whole number (ties to even) for |x| < 2^51, without a
   library call: adding and subtracting 1.5 * 2^52 drops the fraction in the
   default rounding mode (IEEE semantics forbid folding it away; the engine is
   never built with -ffast-math).  The result equals rint(x). */
#define PB_ROUND_SHIFTER 6755399441055744.0 /* 1.5 * 2^52 */
PB_ALWAYS_INLINE static inline double round_whole(double x)
{
    return (x + PB_ROUND_SHIFTER) - PB_ROUND_SHIFTER;
}

/* ceil(x) for |x| < 2^51 */
PB_ALWAYS_INLINE static inline double ceil_whole(double x)
{
    double r = round_whole(x);
    return r < x ? r + 1.0 : r;
}

/* sin(pi r) for |r| <= 1/2: Taylor series through r^21 (error < 1e-17),
   branch-free so that the compiler can keep it in registers */
static inline double sinpi_half(double r)
{
    double z = M_PI * r, z2 = z * z;
    double p = -1.0 / 51090942171709440000.0; /* -1/21! */
    p = p * z2 + 1.0 / 121645100408832000.0;
    p = p * z2 - 1.0 / 355687428096000.0;
    p = p * z2 + 1.0 / 1307674368000.0;
    p = p * z2 - 1.0 / 6227020800.0;
    p = p * z2 + 1.0 / 39916800.0;
    p = p * z2 - 1.0 / 362880.0;
    p = p * z2 + 1.0 / 5040.0;
    p = p * z2 - 1.0 / 120.0;
    p = p * z2 + 1.0 / 6.0;
    return z - z * z2 * p;
}

/* sin(pi r) for |r| <= 1/2: r p(r^2) with p of degree 5, the polynomial of least largest
   relative error on [0, 1/2] (Remez exchange in 40-digit arithmetic, coefficients rounded to
   double once): below 2.2e-11 (docs/performance.md: then a pixel's relative error is below
   2.7e-10).  Every step adds a constant (a memory operand). */
PB_ALWAYS_INLINE static inline double sinpi_short(double r)
{
    const double r2 = r * r;
    double q = -0.007022163448719427;
    q = r2 * q + 0.08204647878054365;
    q = r2 * q - 0.5992513300950485;
    q = r2 * q + 2.550163240316513;
    q = r2 * q - 5.167712762115752;
    q = r2 * q + 3.1415926535233454;
    return r * q;
}

/* Fourier transform of a row of N unit cells at fractional index x,
   sin(pi N x) / sin(pi x), for a whole number N > 1.  Both sines are reduced
   to |argument| <= pi/2 exactly (x = n + d, N d = m + e), so it stays accurate
   for large indices and needs no general-purpose sin.  n_even_N: N is even. */
static inline double grating_pi(double x, double N, int N_even)
{
    double n = round_whole(x);
    double d = x - n;
    /* sign of the reductions: (-1)^(n (N-1)) (-1)^m */
    long long flips = N_even ? (long long)n : 0;
    if (d == 0.0) return (flips & 1) ? -N : N;
    double Nd = N * d;
    double m = round_whole(Nd);
    double v = sinpi_half(Nd - m) / sinpi_half(d);
    flips += (long long)m;
    return (flips & 1) ? -v : v;
}

/* Fourier transform of a sphere, 3 (sin x - x cos x) / x^3.  Near x = 0 the
   difference cancels (the reference then returns noise, or 1 at exactly 0): a
   series takes over below x = 0.01, where it is exact to double precision. */
#define PB_SPHERE_SERIES_BELOW 0.01
static inline double sphere_transform(double x)
{
    if (fabs(x) < PB_SPHERE_SERIES_BELOW) {
        double x2 = x * x;
        return 1.0 - x2 / 10.0 + x2 * x2 / 280.0;
    }
    return 3.0 * (sin(x) / x - cos(x)) / (x * x);
}

/* cubic Lagrange interpolation through (x0..x0+3, y[0..3]) at x */
static inline double lagrange4(const double xs[4], const double y[4], double x)
{
    double d0 = x - xs[0], d1 = x - xs[1], d2 = x - xs[2], d3 = x - xs[3];
    double t0 = d1 * d2 * d3 * y[0] / ((xs[0] - xs[1]) * (xs[0] - xs[2]) * (xs[0] - xs[3]));
    double t1 = d0 * d2 * d3 * y[1] / ((xs[1] - xs[0]) * (xs[1] - xs[2]) * (xs[1] - xs[3]));
    double t2 = d0 * d1 * d3 * y[2] / ((xs[2] - xs[0]) * (xs[2] - xs[1]) * (xs[2] - xs[3]));
    double t3 = d0 * d1 * d2 * y[3] / ((xs[3] - xs[0]) * (xs[3] - xs[1]) * (xs[3] - xs[2]));
    return t0 + t1 + t2 + t3;
}

/* orientations evaluated together in the vectorized part of the kernel */
#define PB_BATCH 32
/* the fast path evaluates whole vectors of this many orientations (a divisor of PB_BATCH) */
#define PB_LANES 4

typedef struct sf_table {
    const double *F;
    int h_min, k_min, l_min, nh, nk, nl;
    int present;
    double default_F;
} sf_table;

static inline double sf_nearest(const sf_table *t, int h0, int k0, int l0)
{
    if (t->present && h0 >= t->h_min && h0 < t->h_min + t->nh && k0 >= t->k_min && k0 < t->k_min + t->nk &&
        l0 >= t->l_min && l0 < t->l_min + t->nl)
        return t->F[((size_t)(h0 - t->h_min) * t->nk + (size_t)(k0 - t->k_min)) * t->nl + (size_t)(l0 - t->l_min)];
    return t->default_F;
}

/* tricubic interpolation over the 4x4x4 neighbourhood; returns 0 when the
   neighbourhood leaves the table (the caller then uses the nearest value) */
static inline int sf_tricubic(const sf_table *t, double h, double k, double l, double *F)
{
    if (h - t->h_min + 3 > t->nh || h - 2 < t->h_min || k - t->k_min + 3 > t->nk || k - 2 < t->k_min ||
        l - t->l_min + 3 > t->nl || l - 2 < t->l_min)
        return 0;
    int hf = (int)floor(h), kf = (int)floor(k), lf = (int)floor(l);
    double hs[4], ks[4], ls[4];
    for (int i = 0; i < 4; ++i) {
        hs[i] = hf - 1 + i;
        ks[i] = kf - 1 + i;
        ls[i] = lf - 1 + i;
    }
    double along_h[4];
    for (int i = 0; i < 4; ++i) {
        double along_k[4];
        for (int j = 0; j < 4; ++j) {
            const double *row = t->F + ((size_t)(hf - 1 + i - t->h_min) * t->nk + (size_t)(kf - 1 + j - t->k_min)) * t->nl +
                                (size_t)(lf - 1 - t->l_min);
            along_k[j] = lagrange4(ls, row, l);
        }
        along_h[i] = lagrange4(ks, along_k, k);
    }
    *F = lagrange4(hs, along_h, h);
    return 1;
}

/* Functions that the compiler vectorizes get an AVX2 twin on x86-64, picked at
   load time (the default twin runs everywhere). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(PYBRAGG_NO_CLONES)
#define PB_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PB_VECTOR_CLONES
#endif

/* Multiply out[i] by the grating factor of N cells at fractional indices x[i]:
   grating_pi without branches, so that a batch of orientations vectorizes. */
PB_VECTOR_CLONES
static void grating_batch(int n, const double *restrict x, double N, int N_even, double *restrict out)
{
    for (int i = 0; i < n; ++i) {
        double whole = round_whole(x[i]);
        double d = x[i] - whole;
        double Nd = N * d;
        double m = round_whole(Nd);
        double ratio = sinpi_half(Nd - m) / sinpi_half(d);
        double v = d == 0.0 ? N : ratio;
        /* parity of n (N-1) + m, as an exact whole number */
        double flips = (N_even ? whole : 0.0) + (d == 0.0 ? 0.0 : m);
        double half = 0.5 * flips;
        out[i] *= half != round_whole(half) ? -v : v;
    }
}

/* ---- the fast path: square crystals, nearest structure factors, no trace ----
   One call evaluates a batch of crystal orientations at one scattering vector:
   the Miller indices, the squared lattice factor (its sign does not matter once
   squared) with a single division, and the flat index of the nearest reflection
   in the table (-1 outside it; a double, so that every array has the same
   number of lanes per vector).  The loop is branch-free, so the compiler
   vectorizes it; it is compiled once for any processor and once for AVX2, and
   pb_render picks one per call.  The engine is compiled as ISO C without
   contraction into fused multiply-adds, so every path rounds every operation the
   same way and gives the same image. */
typedef struct fast_lattice {
    double N[3];           /* cells along a, b, c (1 where N <= 1: a factor of 1) */
    double lo[3], hi[3];   /* nearest index h0 is in the table when lo <= h0 < hi */
    double nk, nl;         /* table strides */
    /* the longest a, b, c over the orientations, and how far |h| may reach with every nearest
       index inside the table (negative without a table): |h| <= axis_max |S| <= cover */
    double axis_max[3], cover[3];
} fast_lattice;

/* numerator and denominator of sin(pi N x) / sin(pi x), both reduced exactly */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void grating_parts_reduced(double d, double N, double *num, double *den)
{
    double Nd = N * d;
    double e = Nd - round_whole(Nd);
    double s = sinpi_short(e), t = sinpi_short(d);
    *num *= d == 0.0 ? N : s;
    *den *= d == 0.0 ? 1.0 : t;
}

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void grating_parts(double x, double N, double *num, double *den)
{
    grating_parts_reduced(x - round_whole(x), N, num, den);
}

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void orient_body(int n, const double *restrict ax, size_t stride, const double S[3],
                               const fast_lattice *fl, double *restrict F2, double *restrict idx)
{
    const double S0 = S[0], S1 = S[1], S2 = S[2];
    const double *restrict a0 = ax, *restrict a1 = ax + stride, *restrict a2 = ax + 2 * stride;
    const double *restrict b0 = ax + 3 * stride, *restrict b1 = ax + 4 * stride, *restrict b2 = ax + 5 * stride;
    const double *restrict c0 = ax + 6 * stride, *restrict c1 = ax + 7 * stride, *restrict c2 = ax + 8 * stride;
    const double Na = fl->N[0], Nb = fl->N[1], Nc = fl->N[2];
    const double lo0 = fl->lo[0], lo1 = fl->lo[1], lo2 = fl->lo[2];
    const double hi0 = fl->hi[0], hi1 = fl->hi[1], hi2 = fl->hi[2];
    const double nk = fl->nk, nl = fl->nl;
    for (int i = 0; i < n; ++i) {
        double h = a0[i] * S0 + a1[i] * S1 + a2[i] * S2;
        double k = b0[i] * S0 + b1[i] * S1 + b2[i] * S2;
        double l = c0[i] * S0 + c1[i] * S1 + c2[i] * S2;
        double num = 1.0, den = 1.0;
        grating_parts(h, Na, &num, &den);
        grating_parts(k, Nb, &num, &den);
        grating_parts(l, Nc, &num, &den);
        double F = num / den;
        F2[i] = F * F;
        double h0 = ceil_whole(h - 0.5), k0 = ceil_whole(k - 0.5), l0 = ceil_whole(l - 0.5);
        int inside = (h0 >= lo0) & (h0 < hi0) & (k0 >= lo1) & (k0 < hi1) & (l0 >= lo2) & (l0 < hi2);
        double flat = ((h0 - lo0) * nk + (k0 - lo1)) * nl + (l0 - lo2);
        idx[i] = inside ? flat : -1.0;
    }
}

typedef void (*orient_fn)(int n, const double *restrict ax, size_t stride, const double S[3],
                          const fast_lattice *fl, double *restrict F2, double *restrict idx);

static void orient_portable(int n, const double *restrict ax, size_t stride, const double S[3],
                            const fast_lattice *fl, double *restrict F2, double *restrict idx)
{
    orient_body(n, ax, stride, S, fl, F2, idx);
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(PYBRAGG_NO_CLONES)
#define PB_HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static void orient_avx2(int n, const double *restrict ax, size_t stride,
                                                        const double S[3], const fast_lattice *fl,
                                                        double *restrict F2, double *restrict idx)
{
    orient_body(n, ax, stride, S, fl, F2, idx);
}
#else
#define PB_HAVE_AVX2_PATH 0
#endif

int pb_code_path_supported(int path)
{
    if (path == PB_PATH_AUTO || path == PB_PATH_PORTABLE) return 1;
#if PB_HAVE_AVX2_PATH
    if (path == PB_PATH_AVX2) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") ? 1 : 0;
    }
#endif
    return 0;
}

static orient_fn orient_for(int path)
{
#if PB_HAVE_AVX2_PATH
    if (path == PB_PATH_AVX2 || (path == PB_PATH_AUTO && pb_code_path_supported(PB_PATH_AVX2))) return orient_avx2;
#endif
    (void)path;
    return orient_portable;
}

/* whether the (whole) number of cells along each axis is even */
typedef struct cell_parity {
    int even[3];
} cell_parity;

static cell_parity parity_of(const pb_geometry *g)
{
    cell_parity p;
    for (int i = 0; i < 3; ++i) p.even[i] = fmod(g->N[i], 2.0) == 0.0;
    return p;
}

/* lattice factor of one crystal orientation at fractional (h, k, l) */
static inline double lattice_factor(const pb_geometry *g, const cell_parity *par, double h, double k, double l,
                                    int h0, int k0, int l0)
{
    const double Na = g->N[0], Nb = g->N[1], Nc = g->N[2];
    if (g->shape == PB_SHAPE_SQUARE) {
        double F = 1.0;
        if (Na > 1) F *= grating_pi(h, Na, par->even[0]);
        if (Nb > 1) F *= grating_pi(k, Nb, par->even[1]);
        if (Nc > 1) F *= grating_pi(l, Nc, par->even[2]);
        return F;
    }
    double dh = h - h0, dk = k - k0, dl = l - l0;
    if (g->shape == PB_SHAPE_ROUND) {
        double hrad_sqr = dh * dh * Na * Na + dk * dk * Nb * Nb + dl * dl * Nc * Nc;
        return Na * Nb * Nc * PB_ROUND_SCALE * sphere_transform(M_PI * sqrt(hrad_sqr * g->fudge));
    }
    double dx = dh * g->a_star[0] + dk * g->b_star[0] + dl * g->c_star[0];
    double dy = dh * g->a_star[1] + dk * g->b_star[1] + dl * g->c_star[1];
    double dz = dh * g->a_star[2] + dk * g->b_star[2] + dl * g->c_star[2];
    double rad_star_sqr = (dx * dx + dy * dy + dz * dz) * Na * Na * Nb * Nb * Nc * Nc;
    if (g->shape == PB_SHAPE_GAUSS) return Na * Nb * Nc * exp(-(rad_star_sqr / PB_GAUSS_SCALE * g->fudge));
    /* tophat */
    return Na * Nb * Nc * (rad_star_sqr * g->fudge < PB_TOPHAT_RADIUS_SQR);
}

/* position of a sub-pixel of panel pg (m, lab frame) */
static inline void subpixel_position(const pb_geometry *g, const pb_panel_geometry *pg, double Fdet, double Sdet,
                                     double Odet, double pos[3])
{
    for (int i = 0; i < 3; ++i) pos[i] = Fdet * pg->fdet[i] + Sdet * pg->sdet[i] + Odet * pg->odet[i] + pg->pix0[i];
    if (g->curved) {
        /* every pixel at `distance`: detector coordinates become angles */
        double start[3], mid[3];
        v3_scale(g->beam, pg->distance, start);
        double angle_s = pos[1] / pg->distance, angle_f = pos[2] / pg->distance;
        v3_rotate_axis(start, pg->sdet, angle_s, mid);
        v3_rotate_axis(mid, pg->fdet, angle_f, pos);
    }
}

/* whether the resolution cut (-dmin) skips a source whose scattering vector has sin(theta)/lambda
   = stol: d = 1 / (2 stol) below dmin */
PB_ALWAYS_INLINE static inline int beyond_resolution(double dmin, double stol)
{
    return dmin > 0.0 && stol > 0.0 && dmin > 0.5 / stol;
}

/* trace sink of pb_trace_pixel; NULL in the pixel loop */
typedef struct tracer {
    pb_trace_record *records;
    int capacity;
    int count;
} tracer;

static void trace_emit(tracer *tr, const char *name, int layer, int ss, int sf, int source, int phi, int dom,
                       const double *values, int n)
{
    if (tr->count < tr->capacity) {
        pb_trace_record *r = &tr->records[tr->count];
        memset(r, 0, sizeof *r);
        strncpy(r->name, name, sizeof r->name - 1);
        int idx[6] = {layer, ss, sf, source, phi, dom};
        memcpy(r->index, idx, sizeof idx);
        r->n = n;
        for (int i = 0; i < n; ++i) r->values[i] = values[i];
    }
    tr->count++;
}

static void trace1(tracer *tr, const char *name, int layer, int ss, int sf, int source, int phi, int dom, double v)
{
    trace_emit(tr, name, layer, ss, sf, source, phi, dom, &v, 1);
}

struct block_out;

typedef struct pixel_context {
    const pb_plan *plan;
    sf_table table;
    int interpolate;
    cell_parity parity;
    /* the fast path (pb_render only): crystal axes as nine rows of n orientations */
    int fast;
    orient_fn orient;
    const double *soa;
    size_t stride;
    fast_lattice fl;
    const double *ftab; /* the table, or default_F alone when there is none */
    /* the rows of the fast path (pb_render only; NULL: pixel by pixel) */
    void (*block)(const struct pixel_context *ctx, const pb_panel_geometry *pg, int fpixel, int spixel,
                  const render_span *span, struct block_out *out);
} pixel_context;

/* factors applied per contribution when the matching -oversample_* flag is set */
typedef struct applied_factors {
    int thick, polar, omega;
    double capture, polarization, omega_pixel;
} applied_factors;

/* Add to I the scattering of every crystal orientation (phi step x mosaic
   domain) at scattering vector S, in orientation order.  Lattice factors of
   square crystals are computed a batch at a time by vectorized code. */
static inline double sum_orientations(const pixel_context *ctx, const double S[3], const applied_factors *af,
                                      double I, long *fallbacks, tracer *tr, int layer, int ss, int sf, int is)
{
    const pb_plan *p = ctx->plan;
    const pb_geometry *g = &p->geo;
    const int n_orient = g->phisteps * g->mosaic_domains;
    const int square = g->shape == PB_SHAPE_SQUARE;
    if (ctx->fast) {
        const double *F = ctx->table.F, dflt = ctx->table.default_F;
        for (int b0 = 0; b0 < n_orient; b0 += PB_BATCH) {
            const int nb = n_orient - b0 < PB_BATCH ? n_orient - b0 : PB_BATCH;
            /* whole vectors: the rows of ctx->soa are padded with zero axes */
            const int nv = (nb + PB_LANES - 1) / PB_LANES * PB_LANES;
            double F2[PB_BATCH], idx[PB_BATCH];
            ctx->orient(nv, ctx->soa + b0, ctx->stride, S, &ctx->fl, F2, idx);
            for (int i = 0; i < nb; ++i) {
                const double F_cell = idx[i] >= 0.0 ? F[(size_t)idx[i]] : dflt;
                double contribution = F_cell * F_cell * F2[i];
                if (af->thick) contribution *= af->capture;
                if (af->polar) contribution *= af->polarization;
                if (af->omega) contribution *= af->omega_pixel;
                I += contribution;
                if (tr) {
                    const int io = b0 + i, ip = io / g->mosaic_domains, im = io % g->mosaic_domains;
                    const double *abc = p->axes + 9 * io;
                    double frac[3] = {v3_dot(abc, S), v3_dot(abc + 3, S), v3_dot(abc + 6, S)}, near[3], parts[3];
                    double F_latt = 1.0;
                    for (int ax = 0; ax < 3; ++ax) {
                        near[ax] = (int)ceil_whole(frac[ax] - 0.5);
                        double N = g->N[ax];
                        parts[ax] = N > 1 ? grating_pi(frac[ax], N, ctx->parity.even[ax]) : 1.0;
                        F_latt *= parts[ax];
                    }
                    trace_emit(tr, "hkl", layer, ss, sf, is, ip, im, frac, 3);
                    trace_emit(tr, "hkl_nearest", layer, ss, sf, is, ip, im, near, 3);
                    trace_emit(tr, "F_latt_abc", layer, ss, sf, is, ip, im, parts, 3);
                    trace1(tr, "F_latt", layer, ss, sf, is, ip, im, F_latt);
                    trace1(tr, "F_cell", layer, ss, sf, is, ip, im, F_cell);
                    trace1(tr, "I_sum", layer, ss, sf, is, ip, im, I);
                }
            }
        }
        return I;
    }
    for (int b0 = 0; b0 < n_orient; b0 += PB_BATCH) {
        const int nb = n_orient - b0 < PB_BATCH ? n_orient - b0 : PB_BATCH;
        double hb[PB_BATCH], kb[PB_BATCH], lb[PB_BATCH], Fb[PB_BATCH];
        for (int i = 0; i < nb; ++i) {
            const double *abc = p->axes + 9 * (b0 + i);
            hb[i] = v3_dot(abc, S);
            kb[i] = v3_dot(abc + 3, S);
            lb[i] = v3_dot(abc + 6, S);
        }
        if (square && nb >= 4) {
            for (int i = 0; i < nb; ++i) Fb[i] = 1.0;
            if (g->N[0] > 1) grating_batch(nb, hb, g->N[0], ctx->parity.even[0], Fb);
            if (g->N[1] > 1) grating_batch(nb, kb, g->N[1], ctx->parity.even[1], Fb);
            if (g->N[2] > 1) grating_batch(nb, lb, g->N[2], ctx->parity.even[2], Fb);
        } else if (square) {
            /* too few orientations to gain from vectors: the same arithmetic inline */
            for (int i = 0; i < nb; ++i) Fb[i] = lattice_factor(g, &ctx->parity, hb[i], kb[i], lb[i], 0, 0, 0);
        }
        for (int i = 0; i < nb; ++i) {
            const double h = hb[i], k = kb[i], l = lb[i];
            int h0 = (int)ceil_whole(h - 0.5), k0 = (int)ceil_whole(k - 0.5), l0 = (int)ceil_whole(l - 0.5);
            double F_latt = square ? Fb[i] : lattice_factor(g, &ctx->parity, h, k, l, h0, k0, l0);
            if (F_latt == 0.0 && g->water_size == 0.0) continue;

            double F_cell;
            if (!ctx->interpolate || !sf_tricubic(&ctx->table, h, k, l, &F_cell)) {
                if (ctx->interpolate) ++*fallbacks;
                F_cell = sf_nearest(&ctx->table, h0, k0, l0);
            }
            double contribution = F_cell * F_cell * F_latt * F_latt;
            if (af->thick) contribution *= af->capture;
            if (af->polar) contribution *= af->polarization;
            if (af->omega) contribution *= af->omega_pixel;
            I += contribution;
            if (tr) {
                const int io = b0 + i, ip = io / g->mosaic_domains, im = io % g->mosaic_domains;
                double frac[3] = {h, k, l}, near[3] = {h0, k0, l0};
                trace_emit(tr, "hkl", layer, ss, sf, is, ip, im, frac, 3);
                trace_emit(tr, "hkl_nearest", layer, ss, sf, is, ip, im, near, 3);
                if (square) {
                    double parts[3];
                    for (int ax = 0; ax < 3; ++ax) {
                        double N = g->N[ax];
                        parts[ax] = N > 1 ? grating_pi(frac[ax], N, ctx->parity.even[ax]) : 1.0;
                    }
                    trace_emit(tr, "F_latt_abc", layer, ss, sf, is, ip, im, parts, 3);
                }
                trace1(tr, "F_latt", layer, ss, sf, is, ip, im, F_latt);
                trace1(tr, "F_cell", layer, ss, sf, is, ip, im, F_cell);
                trace1(tr, "I_sum", layer, ss, sf, is, ip, im, I);
            }
        }
    }
    return I;
}

/* photons in pixel (fpixel, spixel) of panel pg (panel coordinates); adds its summed
   solid angle and fallback count.  `tr` is NULL except in pb_trace_pixel (inlined away
   in the pixel loop).  Always inlined: a call per pixel costs about 1 % of a simple
   render (the arguments and saved registers). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline double render_pixel(const pixel_context *ctx, const pb_panel_geometry *pg, int fpixel, int spixel,
                                  double *omega_acc, long *fallbacks, tracer *tr, const render_span *span)
{
    const pb_plan *p = ctx->plan;
    const pb_geometry *g = &p->geo;
    const int os = pg->oversample;
    const double sub = pg->pixel_size / os;
    const int os_thick = g->oversample_thick, os_polar = g->oversample_polar, os_omega = g->oversample_omega;

    double I = g->I_bg;
    double polar = g->nopolar ? 1.0 : 0.0;
    double omega = 0.0;
    double capture = 0.0;
    if (tr) {
        trace_emit(tr, "pix0", -1, -1, -1, -1, -1, -1, pg->pix0, 3);
        trace_emit(tr, "fdet", -1, -1, -1, -1, -1, -1, pg->fdet, 3);
        trace_emit(tr, "sdet", -1, -1, -1, -1, -1, -1, pg->sdet, 3);
        trace_emit(tr, "odet", -1, -1, -1, -1, -1, -1, pg->odet, 3);
        trace1(tr, "I_background", -1, -1, -1, -1, -1, -1, I);
    }

    for (int layer = 0; layer < g->thicksteps; ++layer) {
        double Odet = layer * g->thickstep;
        capture = (g->thick == 0.0) ? 1.0 : 0.0;
        for (int ss = 0; ss < os; ++ss) {
            /* a pixel of many sub-pixels may take long: a cancelled render's image is dropped */
            if (span != NULL && render_cancelled(span)) return 0.0;
            const double Sdet = sub * (spixel * os + ss) + sub / 2.0;
            for (int sf = 0; sf < os; ++sf) {
                double Fdet = sub * (fpixel * os + sf) + sub / 2.0;
                double pos[3], diffracted[3];
                subpixel_position(g, pg, Fdet, Sdet, Odet, pos);
                double airpath = v3_unit(pos, diffracted);

                if (omega == 0.0 || os_omega) {
                    omega = pg->pixel_size * pg->pixel_size / airpath / airpath * pg->close_distance / airpath;
                    if (g->point_pixel) omega = 1.0 / airpath / airpath;
                }
                *omega_acc += omega;

                if (capture == 0.0 || os_thick) {
                    double parallax = v3_dot(diffracted, pg->odet);
                    capture = exp(-layer * g->thickstep * g->mu / parallax) -
                              exp(-(layer + 1) * g->thickstep * g->mu / parallax);
                }
                if (tr) {
                    double det[3] = {Fdet, Sdet, Odet};
                    trace_emit(tr, "subpixel_fso", layer, ss, sf, -1, -1, -1, det, 3);
                    trace_emit(tr, "position", layer, ss, sf, -1, -1, -1, pos, 3);
                    trace_emit(tr, "diffracted", layer, ss, sf, -1, -1, -1, diffracted, 3);
                    trace1(tr, "airpath", layer, ss, sf, -1, -1, -1, airpath);
                    trace1(tr, "omega", layer, ss, sf, -1, -1, -1, omega);
                    trace1(tr, "capture_fraction", layer, ss, sf, -1, -1, -1, capture);
                }

                for (int is = 0; is < p->n_sources; ++is) {
                    const double *src = p->sources + 5 * is;
                    double incident[3] = {-src[0], -src[1], -src[2]};
                    double lambda = src[4];
                    double S[3];
                    for (int i = 0; i < 3; ++i) S[i] = (diffracted[i] - incident[i]) / lambda;
                    /* sin(theta)/lambda, needed for the resolution cut and the trace */
                    double stol = (g->dmin > 0.0 || tr) ? 0.5 * v3_norm(S) : 0.0;
                    if (tr) {
                        trace_emit(tr, "incident", layer, ss, sf, is, -1, -1, incident, 3);
                        trace1(tr, "lambda", layer, ss, sf, is, -1, -1, lambda);
                        trace_emit(tr, "scattering", layer, ss, sf, is, -1, -1, S, 3);
                        trace1(tr, "stol", layer, ss, sf, is, -1, -1, stol);
                    }
                    if (beyond_resolution(g->dmin, stol)) continue;

                    if (polar == 0.0 || os_polar)
                        polar = polarization_factor(g->polarization, incident, diffracted, g->polar);
                    if (tr) trace1(tr, "polarization", layer, ss, sf, is, -1, -1, polar);

                    const applied_factors factors = {os_thick, os_polar, os_omega, capture, polar, omega};
                    I = sum_orientations(ctx, S, &factors, I, fallbacks, tr, layer, ss, sf, is);
                }
            }
        }
    }
    double photons = PB_R_E_SQR * g->fluence * I / pg->steps;
    if (tr) {
        trace1(tr, "I_total", -1, -1, -1, -1, -1, -1, I);
        trace1(tr, "scale", -1, -1, -1, -1, -1, -1, PB_R_E_SQR * g->fluence / pg->steps);
        if (!os_omega) trace1(tr, "omega_applied", -1, -1, -1, -1, -1, -1, omega);
        if (!os_polar) trace1(tr, "polarization_applied", -1, -1, -1, -1, -1, -1, polar);
        if (!os_thick) trace1(tr, "capture_applied", -1, -1, -1, -1, -1, -1, capture);
    }
    if (!os_thick) photons *= capture;
    if (!os_polar) photons *= polar;
    if (!os_omega) photons *= omega;
    if (tr) trace1(tr, "pixel", -1, -1, -1, -1, -1, -1, (double)(float)photons);
    return photons;
}

/* ---- rows of the fast path: PB_PIX pixels of a row evaluated together ----
   The lanes of every vector are pixels: each lane runs exactly the arithmetic of
   render_pixel and sum_orientations in the same order (sensor layers, sub-pixels,
   sources, then the orientations one after another, added to the pixel's running
   sum), so the image is bit for bit the per-pixel one.  What the lanes share is
   every orientation's crystal axes (loaded once for PB_PIX pixels) and whole
   vectors for 10 orientations (the per-pixel fast path fills 12 lanes for 10). */
#define PB_PIX 8
#if defined(__GNUC__)
#define PB_NO_UNROLL _Pragma("GCC unroll 1")
#else
#define PB_NO_UNROLL
#endif
typedef struct block_out {
    double photons[PB_PIX];
    double omega[PB_PIX]; /* each pixel's solid angles summed over its samples, in sample order */
} block_out;

/* the polarization factor of polarization_factor for PB_PIX diffracted directions, where need[j] */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void polar_lanes(const pb_geometry *g, const double incident_in[3], const double *dx, const double *dy,
                               const double *dz, const int *need, double *polar)
{
    const double kahn = g->polarization;
    double incident[3], axis[3], B_in[3] = {0, 0, 0}, E_in[3] = {0, 0, 0};
    v3_unit(incident_in, incident);
    v3_unit(g->polar, axis);
    if (kahn != 0.0) {
        v3_cross(axis, incident, B_in);
        v3_unit(B_in, B_in);
        v3_cross(incident, B_in, E_in);
        v3_unit(E_in, E_in);
    }
    double ux[PB_PIX], uy[PB_PIX], uz[PB_PIX], c2[PB_PIX], cos2psi[PB_PIX];
    PB_NO_UNROLL
    for (int j = 0; j < PB_PIX; ++j) {
        const double len = sqrt(dx[j] * dx[j] + dy[j] * dy[j] + dz[j] * dz[j]);
        ux[j] = len != 0.0 ? dx[j] / len : 0.0;
        uy[j] = len != 0.0 ? dy[j] / len : 0.0;
        uz[j] = len != 0.0 ? dz[j] / len : 0.0;
        const double cos2t = incident[0] * ux[j] + incident[1] * uy[j] + incident[2] * uz[j];
        c2[j] = cos2t * cos2t;
        cos2psi[j] = 1.0; /* cos(2 * 0) */
    }
    if (kahn != 0.0)
        for (int j = 0; j < PB_PIX; ++j) {
            if (!need[j]) continue;
            const double E_out = ux[j] * E_in[0] + uy[j] * E_in[1] + uz[j] * E_in[2];
            const double B_out = ux[j] * B_in[0] + uy[j] * B_in[1] + uz[j] * B_in[2];
            const double psi = -atan2(B_out, E_out);
            cos2psi[j] = cos(2 * psi);
        }
    PB_NO_UNROLL
    for (int j = 0; j < PB_PIX; ++j) {
        const double sin2t_sqr = 1 - c2[j];
        const double v = 0.5 * (1.0 + c2[j] - kahn * cos2psi[j] * sin2t_sqr);
        polar[j] = need[j] ? v : polar[j];
    }
}

/* how block_body finds the structure factors of a block: default_F alone, a look-up with the
   table's bounds tested per lane, or a look-up without the test (every index inside) */
enum { PB_F_DEFAULT, PB_F_TESTED, PB_F_INSIDE };

/* Add to I[j] the scattering of every crystal orientation at scattering vectors S[j], in
   orientation order (each lane as sum_orientations adds it); `mode` is a constant at each call,
   so each mode is compiled as its own loop. */
PB_ALWAYS_INLINE static inline void orientation_lanes(const pixel_context *ctx, const double *Sx, const double *Sy,
                                                      const double *Sz, const double *capture, const double *polar,
                                                      const double *omega, const double *keep, double *I,
                                                      const int mode)
{
    const pb_geometry *g = &ctx->plan->geo;
    const int os_thick = g->oversample_thick, os_polar = g->oversample_polar, os_omega = g->oversample_omega;
    const int n_orient = g->phisteps * g->mosaic_domains;
    const double *restrict soa = ctx->soa;
    const size_t stride = ctx->stride;
    const double *restrict Ftab = ctx->ftab;
    const double dflt = ctx->table.default_F;
    const double Na = ctx->fl.N[0], Nb = ctx->fl.N[1], Nc = ctx->fl.N[2];
    const double lo0 = ctx->fl.lo[0], lo1 = ctx->fl.lo[1], lo2 = ctx->fl.lo[2];
    const double hi0 = ctx->fl.hi[0], hi1 = ctx->fl.hi[1], hi2 = ctx->fl.hi[2];
    const double nk = ctx->fl.nk, nl = ctx->fl.nl;
    for (int o = 0; o < n_orient; ++o) {
        const double A0 = soa[o], A1 = soa[stride + o], A2 = soa[2 * stride + o];
        const double B0 = soa[3 * stride + o], B1 = soa[4 * stride + o], B2 = soa[5 * stride + o];
        const double C0 = soa[6 * stride + o], C1 = soa[7 * stride + o], C2 = soa[8 * stride + o];
        double F2[PB_PIX];
        double row[PB_PIX], inside[PB_PIX];
        PB_NO_UNROLL
        for (int j = 0; j < PB_PIX; ++j) {
            const double h = A0 * Sx[j] + A1 * Sy[j] + A2 * Sz[j];
            const double k = B0 * Sx[j] + B1 * Sy[j] + B2 * Sz[j];
            const double l = C0 * Sx[j] + C1 * Sy[j] + C2 * Sz[j];
            /* h = n + d exactly; the nearest index ceil(h - 0.5) is n, or n - 1 where d = -1/2 */
            const double nh = round_whole(h), nk_ = round_whole(k), nl_ = round_whole(l);
            const double dh = h - nh, dk = k - nk_, dl = l - nl_;
            double num = 1.0, den = 1.0;
            grating_parts_reduced(dh, Na, &num, &den);
            grating_parts_reduced(dk, Nb, &num, &den);
            grating_parts_reduced(dl, Nc, &num, &den);
            const double F = num / den;
            F2[j] = F * F;
            if (mode != PB_F_DEFAULT) {
                const double h0 = dh == -0.5 ? nh - 1.0 : nh, k0 = dk == -0.5 ? nk_ - 1.0 : nk_,
                             l0 = dl == -0.5 ? nl_ - 1.0 : nl_;
                const double flat = ((h0 - lo0) * nk + (k0 - lo1)) * nl + (l0 - lo2);
                if (mode == PB_F_TESTED) {
                    const int in =
                        (h0 >= lo0) & (h0 < hi0) & (k0 >= lo1) & (k0 < hi1) & (l0 >= lo2) & (l0 < hi2);
                    row[j] = in ? flat : 0.0;
                    inside[j] = in ? 1.0 : 0.0;
                } else {
                    row[j] = flat;
                }
            }
        }
        /* the look-ups: a separate loop, so that every lane loads (index 0 outside the
           table), kept a loop so that the vectorizer gathers */
        PB_NO_UNROLL
        for (int j = 0; j < PB_PIX; ++j) {
            double F_cell = dflt;
            if (mode == PB_F_INSIDE) F_cell = Ftab[(int)row[j]];
            if (mode == PB_F_TESTED) {
                const double F_row = Ftab[(int)row[j]];
                F_cell = inside[j] != 0.0 ? F_row : dflt;
            }
            double contribution = F_cell * F_cell * F2[j];
            contribution = os_thick ? contribution * capture[j] : contribution;
            contribution = os_polar ? contribution * polar[j] : contribution;
            contribution = os_omega ? contribution * omega[j] : contribution;
            /* keep (a resolution cut, else NULL): 0 where the cut skips this source for the pixel */
            if (keep != NULL)
                I[j] = keep[j] != 0.0 ? I[j] + contribution : I[j];
            else
                I[j] += contribution;
        }
    }
}

/* orientation_lanes in the structure-factor mode of the block (a constant in each call) */
PB_ALWAYS_INLINE static inline void orientation_modes(const pixel_context *ctx, const double *Sx, const double *Sy,
                                                      const double *Sz, const double *capture, const double *polar,
                                                      const double *omega, const double *keep, double *I)
{
    if (!ctx->table.present) {
        orientation_lanes(ctx, Sx, Sy, Sz, capture, polar, omega, keep, I, PB_F_DEFAULT);
        return;
    }
    double smax2 = 0.0;
    for (int j = 0; j < PB_PIX; ++j) {
        const double s2 = Sx[j] * Sx[j] + Sy[j] * Sy[j] + Sz[j] * Sz[j];
        smax2 = (s2 > smax2 || s2 != s2) ? s2 : smax2; /* a NaN lane keeps smax2 NaN: the block is tested */
    }
    const double smax = sqrt(smax2);
    const int inside = ctx->fl.axis_max[0] * smax <= ctx->fl.cover[0] &&
                       ctx->fl.axis_max[1] * smax <= ctx->fl.cover[1] && ctx->fl.axis_max[2] * smax <= ctx->fl.cover[2];
    if (inside)
        orientation_lanes(ctx, Sx, Sy, Sz, capture, polar, omega, keep, I, PB_F_INSIDE);
    else
        orientation_lanes(ctx, Sx, Sy, Sz, capture, polar, omega, keep, I, PB_F_TESTED);
}

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void block_body(const pixel_context *ctx, const pb_panel_geometry *pg, int fpixel, int spixel,
                              const render_span *span, block_out *out)
{
    const pb_plan *p = ctx->plan;
    const pb_geometry *g = &p->geo;
    const int os = pg->oversample;
    const double sub = pg->pixel_size / os;
    const int os_thick = g->oversample_thick, os_polar = g->oversample_polar, os_omega = g->oversample_omega;

    double I[PB_PIX], polar[PB_PIX], omega[PB_PIX], capture[PB_PIX];
    PB_NO_UNROLL
    for (int j = 0; j < PB_PIX; ++j) {
        I[j] = g->I_bg;
        polar[j] = g->nopolar ? 1.0 : 0.0;
        omega[j] = 0.0;
        capture[j] = 0.0;
        out->omega[j] = 0.0;
    }
    for (int layer = 0; layer < g->thicksteps; ++layer) {
        const double Odet = layer * g->thickstep;
        PB_NO_UNROLL
        for (int j = 0; j < PB_PIX; ++j) capture[j] = (g->thick == 0.0) ? 1.0 : 0.0;
        for (int ss = 0; ss < os; ++ss) {
            /* a block of many sub-pixels may take long: a cancelled render's image is dropped */
            if (render_cancelled(span)) {
                for (int j = 0; j < PB_PIX; ++j) out->photons[j] = 0.0;
                return;
            }
            const double Sdet = sub * (spixel * os + ss) + sub / 2.0;
            for (int sf = 0; sf < os; ++sf) {
                double dx[PB_PIX], dy[PB_PIX], dz[PB_PIX], airpath[PB_PIX];
                if (g->curved) {
                    for (int j = 0; j < PB_PIX; ++j) {
                        const double Fdet = sub * ((fpixel + j) * os + sf) + sub / 2.0;
                        double pos[3], d[3];
                        subpixel_position(g, pg, Fdet, Sdet, Odet, pos);
                        airpath[j] = v3_unit(pos, d);
                        dx[j] = d[0];
                        dy[j] = d[1];
                        dz[j] = d[2];
                    }
                } else {
                    PB_NO_UNROLL
                    for (int j = 0; j < PB_PIX; ++j) {
                        const double Fdet = sub * ((fpixel + j) * os + sf) + sub / 2.0;
                        const double x = Fdet * pg->fdet[0] + Sdet * pg->sdet[0] + Odet * pg->odet[0] + pg->pix0[0];
                        const double y = Fdet * pg->fdet[1] + Sdet * pg->sdet[1] + Odet * pg->odet[1] + pg->pix0[1];
                        const double z = Fdet * pg->fdet[2] + Sdet * pg->sdet[2] + Odet * pg->odet[2] + pg->pix0[2];
                        const double len = sqrt(x * x + y * y + z * z);
                        airpath[j] = len;
                        dx[j] = len != 0.0 ? x / len : 0.0;
                        dy[j] = len != 0.0 ? y / len : 0.0;
                        dz[j] = len != 0.0 ? z / len : 0.0;
                    }
                }
                PB_NO_UNROLL
                for (int j = 0; j < PB_PIX; ++j) {
                    const double a = airpath[j];
                    const double om = g->point_pixel ? 1.0 / a / a
                                                     : pg->pixel_size * pg->pixel_size / a / a * pg->close_distance / a;
                    omega[j] = (omega[j] == 0.0 || os_omega) ? om : omega[j];
                    out->omega[j] += omega[j];
                }
                for (int j = 0; j < PB_PIX; ++j)
                    if (capture[j] == 0.0 || os_thick) {
                        const double parallax = dx[j] * pg->odet[0] + dy[j] * pg->odet[1] + dz[j] * pg->odet[2];
                        capture[j] = exp(-layer * g->thickstep * g->mu / parallax) -
                                     exp(-(layer + 1) * g->thickstep * g->mu / parallax);
                    }

                for (int is = 0; is < p->n_sources; ++is) {
                    const double *src = p->sources + 5 * is;
                    const double incident[3] = {-src[0], -src[1], -src[2]};
                    const double lambda = src[4];
                    double Sx[PB_PIX], Sy[PB_PIX], Sz[PB_PIX];
                    int need[PB_PIX], any_need = 0;
                    PB_NO_UNROLL
                    for (int j = 0; j < PB_PIX; ++j) {
                        Sx[j] = (dx[j] - incident[0]) / lambda;
                        Sy[j] = (dy[j] - incident[1]) / lambda;
                        Sz[j] = (dz[j] - incident[2]) / lambda;
                    }
                    /* the resolution cut skips this source where d < dmin, as render_pixel does */
                    double keep[PB_PIX];
                    if (g->dmin > 0.0) {
                        int any_kept = 0;
                        for (int j = 0; j < PB_PIX; ++j) {
                            const double stol = 0.5 * sqrt(Sx[j] * Sx[j] + Sy[j] * Sy[j] + Sz[j] * Sz[j]);
                            const int cut = beyond_resolution(g->dmin, stol);
                            keep[j] = cut ? 0.0 : 1.0;
                            any_kept |= !cut;
                        }
                        if (!any_kept) continue;
                    }
                    PB_NO_UNROLL
                    for (int j = 0; j < PB_PIX; ++j) {
                        need[j] = (polar[j] == 0.0 || os_polar) && (g->dmin <= 0.0 || keep[j] != 0.0);
                        any_need |= need[j];
                    }
                    if (any_need) polar_lanes(g, incident, dx, dy, dz, need, polar);

                    /* the structure factors: default_F alone (no table), looked up with the table's
                       bounds tested, or looked up directly when every index of the block is inside */
                    if (g->dmin > 0.0)
                        orientation_modes(ctx, Sx, Sy, Sz, capture, polar, omega, keep, I);
                    else
                        orientation_modes(ctx, Sx, Sy, Sz, capture, polar, omega, NULL, I);
                }
            }
        }
    }
    PB_NO_UNROLL
    for (int j = 0; j < PB_PIX; ++j) {
        double photons = PB_R_E_SQR * g->fluence * I[j] / pg->steps;
        if (!os_thick) photons *= capture[j];
        if (!os_polar) photons *= polar[j];
        if (!os_omega) photons *= omega[j];
        out->photons[j] = photons;
    }
}

static void block_portable(const pixel_context *ctx, const pb_panel_geometry *pg, int fpixel, int spixel,
                           const render_span *span, block_out *out)
{
    block_body(ctx, pg, fpixel, spixel, span, out);
}

#if PB_HAVE_AVX2_PATH
__attribute__((target("avx2,tune=haswell"))) static void block_avx2(const pixel_context *ctx, const pb_panel_geometry *pg,
                                                       int fpixel, int spixel, const render_span *span,
                                                       block_out *out)
{
    block_body(ctx, pg, fpixel, spixel, span, out);
}
#endif

/* Render the selected pixels of row r of panel pg (data-array row s) into image_row (the
   data array's row s) and add their solid angles to *omega_row in pixel order; stops
   early when the caller cancels the render (span). */
static void render_row(const pixel_context *ctx, const pb_panel_geometry *pg, int r, int s, float *image_row,
                       const render_span *span, double *omega_row, long *fallbacks)
{
    const pb_plan *plan = ctx->plan;
    const int f0 = pg->data_fast, fpixels = pg->fpixels;
    if (ctx->block == NULL) {
        for (int f = 0; f < fpixels; ++f) {
            if (!pixel_selected(plan, f0 + f, s)) continue;
            if (render_cancelled(span)) return; /* a row of slow pixels may take long */
            float *px = image_row + f0 + f;
            *px = (float)(*px + render_pixel(ctx, pg, f, r, omega_row, fallbacks, NULL, span));
        }
        return;
    }
    /* the selected pixels: the ROI's columns of this panel (pixel_selected), then the mask */
    const pb_geometry *g = &plan->geo;
    if (s < g->roi[2] || s > g->roi[3]) return;
    const int f_first = g->roi[0] - f0 > 0 ? g->roi[0] - f0 : 0;
    const int f_last = g->roi[1] - f0 < fpixels - 1 ? g->roi[1] - f0 : fpixels - 1;
    const uint8_t *mask = plan->mask != NULL ? plan->mask + (size_t)s * g->data_fpixels + f0 : NULL;
    block_out out;
    for (int f = f_first; f <= f_last;) {
        if (mask != NULL && mask[f] == 0) {
            ++f;
            continue;
        }
        if (render_cancelled(span)) return;
        ctx->block(ctx, pg, f, r, span, &out);
        const int n = f_last - f + 1 < PB_PIX ? f_last - f + 1 : PB_PIX;
        for (int j = 0; j < n; ++j) {
            if (mask != NULL && mask[f + j] == 0) continue;
            *omega_row += out.omega[j];
            float *px = image_row + f0 + f + j;
            *px = (float)(*px + out.photons[j]);
        }
        f += PB_PIX;
    }
}

static pixel_context make_context(const pb_plan *plan)
{
    pixel_context ctx;
    ctx.plan = plan;
    ctx.table.F = plan->fhkl;
    ctx.table.h_min = plan->h_min;
    ctx.table.k_min = plan->k_min;
    ctx.table.l_min = plan->l_min;
    ctx.table.nh = plan->nh;
    ctx.table.nk = plan->nk;
    ctx.table.nl = plan->nl;
    ctx.table.present = plan->has_table;
    ctx.table.default_F = plan->cfg.crystal.default_F;
    ctx.interpolate = plan->geo.interpolate && plan->has_table;
    ctx.parity = parity_of(&plan->geo);
    ctx.fast = 0;
    ctx.orient = orient_portable;
    ctx.soa = NULL;
    ctx.stride = 0;
    memset(&ctx.fl, 0, sizeof ctx.fl);
    ctx.ftab = plan->has_table ? plan->fhkl : &plan->cfg.crystal.default_F;
    ctx.block = NULL;
    return ctx;
}

/* Prepare the fast path when the crystal is square and structure factors are nearest (any
   number of orientations: the row lanes' vectors are pixels, so one orientation fills them
   too): the crystal axes as nine rows of orientations, each padded with zero axes to whole
   vectors of PB_LANES for the per-pixel path (*soa, freed by the caller; NULL otherwise). */
static int fast_setup(const pb_plan *plan, int code_path, pixel_context *ctx, double **soa_out)
{
    const pb_geometry *g = &plan->geo;
    const size_t table_size = (size_t)plan->nh * (size_t)plan->nk * (size_t)plan->nl;
    *soa_out = NULL;
    if (g->shape != PB_SHAPE_SQUARE || ctx->interpolate || (plan->has_table && table_size >= (size_t)1 << 30))
        return PB_OK;
    const size_t n = (size_t)g->phisteps * (size_t)g->mosaic_domains;
    const size_t stride = (n + PB_LANES - 1) / PB_LANES * PB_LANES;
    double *soa = calloc(9 * (stride > 0 ? stride : 1), sizeof *soa);
    if (soa == NULL) return PB_ERR_NOMEM;
    for (size_t o = 0; o < n; ++o)
        for (int j = 0; j < 9; ++j) soa[(size_t)j * stride + o] = plan->axes[9 * o + (size_t)j];
    ctx->fast = 1;
    ctx->orient = orient_for(code_path);
    ctx->soa = soa;
    ctx->stride = stride;
    const int dims[3] = {plan->nh, plan->nk, plan->nl}, mins[3] = {plan->h_min, plan->k_min, plan->l_min};
    for (int i = 0; i < 3; ++i) {
        ctx->fl.N[i] = g->N[i] > 1 ? g->N[i] : 1.0;
        ctx->fl.lo[i] = plan->has_table ? mins[i] : 0.0;
        ctx->fl.hi[i] = plan->has_table ? (double)mins[i] + dims[i] : 0.0;
    }
    ctx->fl.nk = plan->nk;
    ctx->fl.nl = plan->nl;
    for (int i = 0; i < 3; ++i) {
        double longest = 0.0;
        for (size_t o = 0; o < n; ++o) longest = fmax(longest, v3_norm(plan->axes + 9 * o + 3 * (size_t)i));
        ctx->fl.axis_max[i] = longest;
        /* ceil(h - 1/2) lies in [lo, hi) for every |h| < min(1/2 - lo, hi - 1/2); the margin covers
           the rounding of h and of the bound (|h| < 2^30, so both are below 4e-7) */
        const double reach = fmin(0.5 - ctx->fl.lo[i], ctx->fl.hi[i] - 0.5) - 1e-6;
        ctx->fl.cover[i] = plan->has_table ? reach : -1.0;
    }
    ctx->block = block_portable;
#if PB_HAVE_AVX2_PATH
    if (ctx->block != NULL && ctx->orient == orient_avx2) ctx->block = block_avx2;
#endif
    *soa_out = soa;
    return PB_OK;
}

int pb_trace_pixel(const pb_plan *plan, int fpixel, int spixel, pb_trace_record *records, int capacity,
                   int *count, double *value, pb_error *err)
{
    if (plan == NULL) return pb_set_error(err, PB_ERR_INVALID, "no plan");
    const pb_geometry *g = &plan->geo;
    if (fpixel < 0 || fpixel >= g->data_fpixels || spixel < 0 || spixel >= g->data_spixels)
        return pb_set_error(err, PB_ERR_INVALID, "pixel (slow %d, fast %d) is outside the %dx%d detector", spixel,
                            fpixel, g->data_spixels, g->data_fpixels);
    int panel = panel_at(plan, fpixel, spixel);
    if (panel < 0)
        return pb_set_error(err, PB_ERR_INVALID, "pixel (slow %d, fast %d) lies on no panel", spixel, fpixel);
    if (capacity < 0 || (capacity > 0 && records == NULL))
        return pb_set_error(err, PB_ERR_INVALID, "no room for trace records");
    const pb_panel_geometry *pg = &plan->panels[panel];
    pixel_context ctx = make_context(plan);
    double *soa = NULL;
    if (fast_setup(plan, PB_PATH_AUTO, &ctx, &soa) != PB_OK)
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for crystal orientations");
    tracer tr = {records, capacity, 0};
    double omega_sum = 0.0;
    long fallbacks = 0;
    double photons = render_pixel(&ctx, pg, fpixel - pg->data_fast, spixel - pg->data_slow, &omega_sum, &fallbacks, &tr, NULL);
    free(soa);
    if (count) *count = tr.count;
    if (value) *value = (double)(float)photons;
    return PB_OK;
}

int pb_render(const pb_plan *plan, float *image, pb_stats *stats, const pb_render_options *opts, pb_error *err)
{
    if (err) {
        err->code = PB_OK;
        err->message[0] = '\0';
    }
    if (plan == NULL || image == NULL) return pb_set_error(err, PB_ERR_INVALID, "no plan or no image buffer");
    const pb_geometry *g = &plan->geo;
    pixel_context ctx = make_context(plan);
    const int code_path = opts != NULL ? opts->code_path : PB_PATH_AUTO;
    if (code_path != PB_PATH_AUTO && !pb_code_path_supported(code_path))
        return pb_set_error(err, PB_ERR_INVALID, "code path %d is not available here", code_path);
    int rc = render_options_check(opts, err);
    if (rc != PB_OK) return rc;
    double *soa = NULL;
    if (fast_setup(plan, code_path, &ctx, &soa) != PB_OK)
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for crystal orientations");

    /* data-array rows to render */
    const render_span span = render_span_of(g, opts);
    const int row_begin = span.row_begin, row_end = span.row_end, nthreads = span.nthreads;
    volatile long *progress = span.progress;
    long fallbacks = 0;
    const int data_fpixels = g->data_fpixels;
    /* work units: the rows of every panel; each unit's solid-angle sum is added up in
       unit order afterwards, so the total is the same for any thread count */
    const int units = plan->unit_start[plan->n_panels];
    double *unit_omega = calloc(units > 0 ? (size_t)units : 1, sizeof *unit_omega);
    if (unit_omega == NULL) {
        free(soa);
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d rows", units);
    }

#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(+ : fallbacks)
    for (int u = 0; u < units; ++u) {
        const int panel = panel_of_unit(plan, u);
        const pb_panel_geometry *pg = &plan->panels[panel];
        const int r = u - plan->unit_start[panel];
        const int s = pg->data_slow + r;
        if (s < row_begin || s >= row_end || render_cancelled(&span)) continue;
        double omega_row = 0.0;
        render_row(&ctx, pg, r, s, image + (size_t)s * data_fpixels, &span, &omega_row, &fallbacks);
        unit_omega[u] = omega_row;
        if (progress != NULL) {
#pragma omp atomic
            (*progress)++;
        }
    }
    double omega_sum = 0.0;
    for (int u = 0; u < units; ++u) omega_sum += unit_omega[u];
    free(unit_omega);
    free(soa);
    if (render_cancelled(&span)) return pb_set_error(err, PB_ERR_CANCELLED, "the render was cancelled");

    if (stats != NULL) {
        memset(stats, 0, sizeof *stats);
        if (stats_compute(plan, image, stats, nthreads) != PB_OK)
            return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the statistics of %d rows", units);
        stats->omega_sum = omega_sum;
        stats->interpolation_fallbacks = fallbacks;
    }
    return PB_OK;
}
