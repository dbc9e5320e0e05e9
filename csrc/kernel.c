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
static inline double round_whole(double x)
{
    return (x + PB_ROUND_SHIFTER) - PB_ROUND_SHIFTER;
}

/* ceil(x) for |x| < 2^51 */
static inline double ceil_whole(double x)
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

/* polarization factor for an incident and a diffracted direction */
static double polarization_factor(double kahn, const double incident_in[3], const double diffracted_in[3],
                                  const double axis_in[3])
{
    double incident[3], diffracted[3], axis[3];
    v3_unit(incident_in, incident);
    v3_unit(diffracted_in, diffracted);
    v3_unit(axis_in, axis);
    double cos2t = v3_dot(incident, diffracted);
    double cos2t_sqr = cos2t * cos2t;
    double sin2t_sqr = 1 - cos2t_sqr;
    double psi = 0.0;
    if (kahn != 0.0) {
        double B_in[3], E_in[3];
        v3_cross(axis, incident, B_in);
        v3_unit(B_in, B_in);
        v3_cross(incident, B_in, E_in);
        v3_unit(E_in, E_in);
        double E_out = v3_dot(diffracted, E_in);
        double B_out = v3_dot(diffracted, B_in);
        psi = -atan2(B_out, E_out);
    }
    return 0.5 * (1.0 + cos2t_sqr - kahn * cos(2 * psi) * sin2t_sqr);
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

typedef struct pixel_context {
    const pb_plan *plan;
    sf_table table;
    int interpolate;
    cell_parity parity;
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
                                  double *omega_acc, long *fallbacks, tracer *tr)
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
                    if (g->dmin > 0.0 && stol > 0.0 && g->dmin > 0.5 / stol) continue;

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
    return ctx;
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
    tracer tr = {records, capacity, 0};
    double omega_sum = 0.0;
    long fallbacks = 0;
    double photons = render_pixel(&ctx, pg, fpixel - pg->data_fast, spixel - pg->data_slow, &omega_sum, &fallbacks, &tr);
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

    /* data-array rows to render */
    int row_begin = 0, row_end = g->data_spixels, nthreads = 0;
    volatile long *progress = NULL;
    if (opts != NULL) {
        nthreads = opts->nthreads;
        progress = opts->progress;
        if (opts->row_end > 0) {
            row_begin = opts->row_begin < 0 ? 0 : opts->row_begin;
            row_end = opts->row_end > g->data_spixels ? g->data_spixels : opts->row_end;
        }
    }
    if (nthreads <= 0) nthreads = default_threads();
#ifndef _OPENMP
    nthreads = 1;
#endif
    long fallbacks = 0;
    const int data_fpixels = g->data_fpixels;
    /* work units: the rows of every panel; each unit's solid-angle sum is added up in
       unit order afterwards, so the total is the same for any thread count */
    const int units = plan->unit_start[plan->n_panels];
    double *unit_omega = calloc(units > 0 ? (size_t)units : 1, sizeof *unit_omega);
    if (unit_omega == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d rows", units);

#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(+ : fallbacks)
    for (int u = 0; u < units; ++u) {
        const int panel = panel_of_unit(plan, u);
        const pb_panel_geometry *pg = &plan->panels[panel];
        const int r = u - plan->unit_start[panel];
        const int s = pg->data_slow + r;
        if (s < row_begin || s >= row_end) continue;
        const int f0 = pg->data_fast, fpixels = pg->fpixels;
        double omega_row = 0.0;
        for (int f = 0; f < fpixels; ++f) {
            if (!pixel_selected(plan, f0 + f, s)) continue;
            size_t idx = (size_t)s * data_fpixels + (size_t)(f0 + f);
            image[idx] = (float)(image[idx] + render_pixel(&ctx, pg, f, r, &omega_row, &fallbacks, NULL));
        }
        unit_omega[u] = omega_row;
        if (progress != NULL) {
#pragma omp atomic
            (*progress)++;
        }
    }
    double omega_sum = 0.0;
    for (int u = 0; u < units; ++u) omega_sum += unit_omega[u];
    free(unit_omega);

    if (stats != NULL) {
        memset(stats, 0, sizeof *stats);
        if (stats_compute(plan, image, stats, nthreads) != PB_OK)
            return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the statistics of %d rows", units);
        stats->omega_sum = omega_sum;
        stats->interpolation_fallbacks = fallbacks;
    }
    return PB_OK;
}
