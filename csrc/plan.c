/*
 * Configuration defaults, the plan (everything derived once before the pixel
 * loop) and error reporting.
 */
#include "internal.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* beyond this, the automatic choice of sub-pixels is taken to be a mistake */
#define PB_MAX_AUTO_OVERSAMPLE 1000
/* the recommendation itself stops here (it must fit an int) */
#define PB_OVERSAMPLE_CAP 1000000
/* the most unit cells along one axis: the lattice factor reduces N * d (|d| <= 1/2) exactly only
   well below 2^52 */
#define PB_MAX_CELLS 1099511627776.0 /* 2^40 */
/* the largest Miller index the pixel loop may meet: it rounds indices to ints */
#define PB_MAX_INDEX 1073741824.0 /* 2^30 */
/* bytes per data-array row of the render's and the statistics' partial sums */
#define PB_ROW_BYTES 64.0

const char *pb_version(void)
{
    return "pybragg-engine 0.1.0";
}

const pb_constants *pb_get_constants(void)
{
    static const pb_constants constants = {
        .r_e_sqr = PB_R_E_SQR,
        .avogadro = PB_AVOGADRO,
        .water_F = PB_WATER_F,
        .water_mw = PB_WATER_MW,
        .water_density = PB_WATER_DENSITY,
        .round_scale = PB_ROUND_SCALE,
        .gauss_scale = PB_GAUSS_SCALE,
        .tophat_radius_sqr = PB_TOPHAT_RADIUS_SQR,
        .source_distance = PB_SOURCE_DISTANCE,
        .rad2deg = PB_RAD2DEG,
    };
    return &constants;
}

int pb_set_error(pb_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void format_bytes(double n, char *out, size_t size)
{
    static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
    static const double scales[] = {1099511627776.0, 1073741824.0, 1048576.0, 1024.0};
    for (int i = 0; i < 4; ++i)
        if (n >= scales[i]) {
            snprintf(out, size, n / scales[i] < 1e9 ? "%.1f %s" : "%.3g %s", n / scales[i], units[i]);
            return;
        }
    snprintf(out, size, "%d bytes", n > 0.0 ? (int)n : 0);
}

int plan_reserve(pb_plan *p, double nbytes, pb_error *err, const char *what_fmt, ...)
{
    const double limit = p->memory_limit;
    if (limit > 0.0 && !(p->memory_used + nbytes <= limit)) {
        char what[320], need[64], left[64];
        va_list ap;
        va_start(ap, what_fmt);
        vsnprintf(what, sizeof what, what_fmt, ap);
        va_end(ap);
        format_bytes(nbytes, need, sizeof need);
        format_bytes(limit - p->memory_used, left, sizeof left);
        return pb_set_error(err, PB_ERR_LIMIT, "%s needs %s, more than the %s available", what, need, left);
    }
    p->memory_used += nbytes;
    return PB_OK;
}

static void set3(double v[3], double x, double y, double z)
{
    v[0] = x;
    v[1] = y;
    v[2] = z;
}

void pb_config_init(pb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    pb_crystal *c = &cfg->crystal;
    c->misset_seed = 1;
    set3(c->N, 1, 1, 1);
    c->shape = PB_SHAPE_SQUARE;
    c->fudge = 1.0;
    c->interpolate = -1;
    c->mosaic_spread = NAN;
    c->mosaic_domains = -1;
    c->mosaic_seed = 12345678;
    c->osc = NAN;
    c->phistep = NAN;
    c->phisteps = -1;
    set3(c->spindle_axis, 0, 0, 1);

    pb_beam *b = &cfg->beam;
    b->lambda0 = 1.0e-10;
    b->dispsteps = -1;
    b->hdivrange = b->hdivstep = NAN;
    b->vdivrange = b->vdivstep = NAN;
    b->hdivsteps = b->vdivsteps = -1;
    b->round_div = 1;
    set3(b->beam_vector, 1, 0, 0);
    set3(b->polar_vector, 0, 0, 1);
    b->fluence = 125932015286227086360700780544.0;
    b->exposure = 1.0;
    b->beamsize = 1.0e-4;

    pb_detector *d = &cfg->detector;
    d->convention = PB_CONVENTION_MOSFLM;
    d->pivot = PB_PIVOT_BEAM;
    d->detsize_f = d->detsize_s = 102.4e-3;
    d->pixel_size = 0.1e-3;
    d->distance = 100.0e-3;
    d->close_distance = NAN;
    d->Xbeam = d->Ybeam = d->Xclose = d->Yclose = d->ORGX = d->ORGY = NAN;
    set3(d->fdet_vector, 0, 0, 1);
    set3(d->sdet_vector, 0, -1, 0);
    set3(d->odet_vector, 1, 0, 0);
    set3(d->twotheta_axis, 0, 1, 0);
    d->mu = NAN;
    d->thicksteps = -1;
    d->oversample = -1;
    for (int i = 0; i < 4; ++i) d->roi[i] = -1;
}

void pb_plan_free(pb_plan *plan)
{
    if (plan == NULL) return;
    free(plan->sources);
    free(plan->mosaic);
    free(plan->axes);
    free(plan->fhkl);
    free(plan->mask);
    free(plan->panels);
    free(plan->unit_start);
    free(plan);
}

const pb_geometry *pb_plan_geometry(const pb_plan *plan)
{
    return plan ? &plan->geo : NULL;
}

const double *pb_plan_sources(const pb_plan *plan, int *n)
{
    if (n) *n = plan ? plan->n_sources : 0;
    return plan ? plan->sources : NULL;
}

const double *pb_plan_mosaic(const pb_plan *plan, int *n)
{
    if (n) *n = plan ? plan->n_mosaic : 0;
    return plan ? plan->mosaic : NULL;
}

/* real-space axes for every phi step and mosaic domain */
static int build_axes(pb_plan *p, pb_error *err)
{
    const pb_geometry *g = &p->geo;
    size_t n = (size_t)g->phisteps * (size_t)g->mosaic_domains; /* <= PB_MAX_COUNT (sampling_resolve) */
    p->axes = malloc(sizeof(double) * 9 * n);
    if (p->axes == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for crystal orientations");
    const double *abc0[3] = {g->a, g->b, g->c};
    for (int it = 0; it < g->phisteps; ++it) {
        double phi = g->phi0 + g->phistep * it;
        double abc_phi[3][3];
        for (int k = 0; k < 3; ++k) {
            if (phi != 0.0)
                v3_rotate_axis(abc0[k], g->spindle, phi, abc_phi[k]);
            else
                v3_copy(abc0[k], abc_phi[k]);
        }
        for (int im = 0; im < g->mosaic_domains; ++im) {
            double *out = p->axes + 9 * ((size_t)it * g->mosaic_domains + im);
            for (int k = 0; k < 3; ++k) {
                if (g->mosaic_spread > 0.0)
                    v3_matvec(p->mosaic + 9 * im, abc_phi[k], out + 3 * k);
                else
                    v3_copy(abc_phi[k], out + 3 * k);
            }
        }
    }
    return PB_OK;
}

/* Oversampling of every panel: enough sub-pixels to resolve the crystal's
   transform at that panel's distance and pixel size, unless -oversample is given.
   The plan's geometry reports panel 0's. */
static int choose_oversample(pb_plan *p, const pb_config *cfg, const pb_inputs *in, pb_error *err)
{
    pb_geometry *g = &p->geo;
    double xtal_max = g->xtal_size[0];
    if (xtal_max < g->xtal_size[1]) xtal_max = g->xtal_size[1];
    if (xtal_max < g->xtal_size[2]) xtal_max = g->xtal_size[2];
    const int explicit_panels = in != NULL && in->n_panels > 0;
    for (int i = 0; i < p->n_panels; ++i) {
        pb_panel_geometry *pg = &p->panels[i];
        double recip_pixel = g->lambda0 * pg->distance / pg->pixel_size;
        double wanted = ceil(3.0 * xtal_max / recip_pixel);
        int recommended = !(wanted >= 1.0) ? 1 : wanted > PB_OVERSAMPLE_CAP ? PB_OVERSAMPLE_CAP : (int)wanted;
        pg->oversample = cfg->detector.oversample > 0 ? cfg->detector.oversample : recommended;
        /* sub-pixel indices (pixel * oversample + sub-pixel) are ints in the pixel loop */
        const int edge = pg->fpixels > pg->spixels ? pg->fpixels : pg->spixels;
        if ((int64_t)pg->oversample * ((int64_t)edge + 1) > INT_MAX) {
            char where[64] = "";
            if (explicit_panels) snprintf(where, sizeof where, " on panel %d (%.31s)", i, pg->name);
            return pb_set_error(err, PB_ERR_INVALID,
                                "-oversample: %d sub-pixels per pixel edge%s are too many for %d pixels (at most %d)",
                                pg->oversample, where, edge, (int)(INT_MAX / ((int64_t)edge + 1)));
        }
        if (i == 0) {
            g->recommended_oversample = recommended;
            g->oversample = pg->oversample;
        }
        if (cfg->detector.oversample <= 0 && recommended > PB_MAX_AUTO_OVERSAMPLE) {
            /* the reference would try; a render of >10^6 sub-pixels per pixel never ends */
            char where[64] = "";
            if (explicit_panels) snprintf(where, sizeof where, "panel %d (%.31s): ", i, pg->name);
            return pb_set_error(err, PB_ERR_INVALID,
                                "%sautomatic oversampling would be %d x %d sub-pixels per pixel (crystal %g m "
                                "across, reciprocal pixel %g m): check the wavelength and sizes, or give -oversample",
                                where, recommended, recommended, xtal_max, recip_pixel);
        }
    }
    return PB_OK;
}

static int copy_inputs(pb_plan *p, const pb_inputs *in, pb_error *err)
{
    if (in == NULL) return PB_OK;
    if (in->nh > 0 || in->nk > 0 || in->nl > 0) {
        if (in->nh <= 0 || in->nk <= 0 || in->nl <= 0 || in->fhkl == NULL)
            return pb_set_error(err, PB_ERR_INPUT, "structure-factor table has shape %dx%dx%d", in->nh,
                                in->nk, in->nl);
        /* the last index of each axis (min + n - 1) must be an int, as the pixel loop compares them */
        const int mins[3] = {in->h_min, in->k_min, in->l_min}, dims[3] = {in->nh, in->nk, in->nl};
        for (int i = 0; i < 3; ++i)
            if ((int64_t)mins[i] + dims[i] - 1 > INT_MAX || (int64_t)mins[i] + dims[i] > INT_MAX)
                return pb_set_error(err, PB_ERR_INPUT,
                                    "-hkl: Miller index %c from %d over %d values leaves the engine's range (%d)",
                                    "hkl"[i], mins[i], dims[i], INT_MAX);
        const int64_t n64 = count_mul(count_mul(in->nh, in->nk), in->nl);
        const double bytes = 8.0 * (double)in->nh * (double)in->nk * (double)in->nl;
        int rc = plan_reserve(p, bytes, err, "-hkl: the copy of the %d x %d x %d structure-factor table", in->nh,
                              in->nk, in->nl);
        if (rc != PB_OK) return rc;
        if (n64 < 0 || (uint64_t)n64 > SIZE_MAX / sizeof(double))
            return pb_set_error(err, PB_ERR_NOMEM, "-hkl: a %d x %d x %d structure-factor table is too large",
                                in->nh, in->nk, in->nl);
        size_t n = (size_t)n64;
        p->fhkl = malloc(sizeof(double) * n);
        if (p->fhkl == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %zu structure factors", n);
        memcpy(p->fhkl, in->fhkl, sizeof(double) * n);
        for (size_t i = 0; i < n; ++i) {
            const double F = p->fhkl[i];
            if (!isfinite(F) || !isfinite(F * F)) {
                size_t il = i % (size_t)in->nl, ik = i / (size_t)in->nl % (size_t)in->nk;
                size_t ih = i / (size_t)in->nl / (size_t)in->nk;
                return pb_set_error(err, PB_ERR_INPUT,
                                    "-hkl: structure factor %g of reflection %lld %lld %lld is not finite%s", F,
                                    (long long)in->h_min + (long long)ih, (long long)in->k_min + (long long)ik,
                                    (long long)in->l_min + (long long)il, isfinite(F) ? " when squared" : "");
            }
        }
        p->h_min = in->h_min;
        p->k_min = in->k_min;
        p->l_min = in->l_min;
        p->nh = in->nh;
        p->nk = in->nk;
        p->nl = in->nl;
        p->has_table = 1;
    }
    if (in->mask != NULL) {
        const pb_geometry *g = &p->geo;
        if (in->mask_fpixels != g->data_fpixels || in->mask_spixels != g->data_spixels)
            return pb_set_error(err, PB_ERR_INPUT, "mask is %dx%d pixels but the detector is %dx%d",
                                in->mask_fpixels, in->mask_spixels, g->data_fpixels, g->data_spixels);
        size_t n = (size_t)g->data_fpixels * g->data_spixels;
        int rc = plan_reserve(p, (double)n, err, "-mask: the copy of the %d x %d mask", g->data_fpixels,
                              g->data_spixels);
        if (rc != PB_OK) return rc;
        p->mask = malloc(n);
        if (p->mask == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the mask");
        memcpy(p->mask, in->mask, n);
    }
    return PB_OK;
}

/* The brightest a pixel can be, from bounds of every factor (F^2, the lattice factor <= cells^2,
   polarization and capture fraction <= 1, the largest solid angle), must fit the float image. */
static int check_brightness(const pb_plan *p, pb_error *err)
{
    const pb_geometry *g = &p->geo;
    double F2 = p->cfg.crystal.default_F * p->cfg.crystal.default_F;
    if (p->has_table) {
        const size_t n = (size_t)p->nh * (size_t)p->nk * (size_t)p->nl;
        for (size_t i = 0; i < n; ++i)
            if (p->fhkl[i] * p->fhkl[i] > F2) F2 = p->fhkl[i] * p->fhkl[i];
    }
    const double cells = g->N[0] * g->N[1] * g->N[2];
    const double lattice = 1.01 * cells * cells; /* a little above N^2 per axis: rounding of the fast path */
    double worst_bg = 0.0, worst = 0.0;
    for (int i = 0; i < p->n_panels; ++i) {
        const pb_panel_geometry *pg = &p->panels[i];
        /* the nearest sub-pixel is at least this far from the sample */
        double r = g->curved ? fmin(pg->close_distance, fabs(pg->distance)) : pg->close_distance;
        double omega = g->point_pixel ? 1.0 / r / r : pg->pixel_size * pg->pixel_size / r / r;
        if (g->curved && !g->point_pixel) omega *= pg->close_distance / r;
        const double scale = PB_R_E_SQR * g->fluence;
        const double bg = scale * g->I_bg * (g->oversample_omega ? 1.0 : omega) / (double)pg->steps;
        const double photons = bg + scale * g->thicksteps * F2 * lattice * omega;
        if (!(bg <= worst_bg)) worst_bg = bg;
        if (!(photons <= worst)) worst = photons;
    }
    if (!(worst_bg <= FLT_MAX))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-water: %g m of water could give %g photons per pixel, beyond single precision (%g)",
                            g->water_size, worst_bg, (double)FLT_MAX);
    if (!(worst <= FLT_MAX))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-fluence/-N/-hkl/-default_F: the brightest pixel could reach %g photons, beyond "
                            "single precision (%g): lower the fluence, the crystal size or the structure factors",
                            worst, (double)FLT_MAX);
    return PB_OK;
}

static int check_config(const pb_config *cfg, pb_error *err)
{
    const pb_beam *b = &cfg->beam;
    const pb_crystal *c = &cfg->crystal;
    const pb_detector *d = &cfg->detector;
    if (!(b->lambda0 > 0.0) || !isfinite(b->lambda0))
        return pb_set_error(err, PB_ERR_INVALID, "wavelength must be positive (got %g m)", b->lambda0);
    if (!isfinite(b->fluence) || b->fluence < 0.0)
        return pb_set_error(err, PB_ERR_INVALID, "fluence must be a non-negative number");
    for (int i = 0; i < 3; ++i)
        if (!isfinite(c->N[i]) || c->N[i] < 0.0)
            return pb_set_error(err, PB_ERR_INVALID, "number of unit cells must be >= 0");
    if (!b->nopolar && !(fabs(b->polarization) <= 1.0))
        return pb_set_error(err, PB_ERR_INVALID, "-polar: the Kahn polarization factor must lie in [-1, 1] (got %g)",
                            b->polarization);
    if (!(b->water_size >= 0.0) || !isfinite(b->water_size))
        return pb_set_error(err, PB_ERR_INVALID, "-water: the water thickness must be finite and not negative "
                            "(got %g m)", b->water_size);
    if (!isfinite(c->default_F))
        return pb_set_error(err, PB_ERR_INVALID, "-default_F: must be finite (got %g)", c->default_F);
    if (!isfinite(d->distance) || (d->distance <= 0.0 && isnan(d->close_distance)))
        return pb_set_error(err, PB_ERR_INVALID, "detector distance must be positive");
    if (!isnan(d->close_distance) && !(d->close_distance > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "close distance must be positive");
    if (d->curved && !(d->distance > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "curved detector needs a positive distance");
    return PB_OK;
}

pb_plan *pb_plan_create(const pb_config *cfg, const pb_inputs *in, pb_error *err)
{
    if (err) {
        err->code = PB_OK;
        err->message[0] = '\0';
    }
    if (cfg == NULL) {
        pb_set_error(err, PB_ERR_INVALID, "no configuration");
        return NULL;
    }
    if (check_config(cfg, err) != PB_OK) return NULL;
    pb_plan *p = calloc(1, sizeof *p);
    if (p == NULL) {
        pb_set_error(err, PB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    pb_geometry *g = &p->geo;
    const pb_beam *b = &cfg->beam;
    const pb_crystal *c = &cfg->crystal;

    /* dose */
    g->lambda0 = b->lambda0;
    g->fluence = b->fluence;
    g->flux = b->flux;
    g->exposure = b->exposure;
    g->beamsize = b->beamsize;
    if (b->flux != 0.0 && b->exposure > 0.0 && b->beamsize >= 0.0)
        g->fluence = b->flux * b->exposure / b->beamsize / b->beamsize;
    if (b->exposure > 0.0) g->flux = g->fluence / b->exposure * b->beamsize * b->beamsize;
    if (!isfinite(g->fluence)) {
        pb_set_error(err, PB_ERR_INVALID, "fluence is not finite (beam size 0?)");
        goto fail;
    }
    if (!(g->fluence >= 0.0)) {
        pb_set_error(err, PB_ERR_INVALID, "-flux/-exposure/-beamsize: the fluence %g photons/m^2 is negative",
                     g->fluence);
        goto fail;
    }
    g->polarization = b->polarization;
    g->nopolar = b->nopolar;
    g->water_size = b->water_size;
    g->I_bg = PB_WATER_F * PB_WATER_F * PB_R_E_SQR * g->fluence * b->water_size * b->water_size *
              b->water_size * PB_WATER_DENSITY * PB_AVOGADRO / PB_WATER_MW;
    if (!isfinite(g->I_bg)) {
        pb_set_error(err, PB_ERR_INVALID, "-water: %g m of water gives an infinite background", b->water_size);
        goto fail;
    }

    p->memory_limit = in != NULL && in->memory_limit > 0.0 ? in->memory_limit : 0.0;
    if (detector_resolve(p, cfg, in, err) != PB_OK) goto fail;
    /* the caller's image and the render's per-row partial sums */
    if (plan_reserve(p, 4.0 * g->data_fpixels * (double)g->data_spixels + PB_ROW_BYTES * p->unit_start[p->n_panels],
                     err, "%s: the %d x %d image", g->n_panels > 1 || (in != NULL && in->n_panels > 0)
                                                            ? "-geom/-expt" : "-detpixels/-detsize",
                     g->data_fpixels, g->data_spixels) != PB_OK)
        goto fail;
    if (sampling_resolve(cfg, g, err) != PB_OK) goto fail;

    /* structure-factor interpolation: automatic for crystals of <= 2 cells */
    if (c->interpolate < 0)
        g->interpolate = (c->N[0] <= 2 || c->N[1] <= 2 || c->N[2] <= 2) ? 1 : 0;
    else
        g->interpolate = c->interpolate ? 1 : 0;

    if (crystal_resolve(cfg, g, err) != PB_OK) goto fail;
    for (int i = 0; i < 3; ++i)
        if (!(g->N[i] <= PB_MAX_CELLS)) {
            pb_set_error(err, PB_ERR_INVALID, "-N/-samplesize: %g unit cells along %c are too many (at most %g)",
                         g->N[i], "abc"[i], PB_MAX_CELLS);
            goto fail;
        }

    if (choose_oversample(p, cfg, in, err) != PB_OK) goto fail;

    if (copy_inputs(p, in, err) != PB_OK) goto fail;
    if (!p->has_table) g->interpolate = 0;

    /* the crystal orientations (build_axes) and the render's copy of them (fast_setup in kernel.c),
       reserved before the sources and domains are built */
    if (plan_reserve(p, 144.0 * g->phisteps * (double)g->mosaic_domains, err,
                     "-phisteps/-mosaic_domains: %d x %d crystal orientations", g->phisteps,
                     g->mosaic_domains) != PB_OK)
        goto fail;
    if (sources_build(p, cfg, in, err) != PB_OK) goto fail;
    g->sources = p->n_sources;
    {
        /* |h| <= |a| |S| <= |a| * 2 / lambda for every source and orientation */
        double lambda_min = INFINITY, axis_max = fmax(v3_norm(g->a), fmax(v3_norm(g->b), v3_norm(g->c)));
        for (int i = 0; i < p->n_sources; ++i) lambda_min = fmin(lambda_min, p->sources[5 * (size_t)i + 4]);
        double index_max = axis_max * 2.0 / lambda_min;
        if (!(index_max <= PB_MAX_INDEX)) {
            pb_set_error(err, PB_ERR_INVALID,
                         "-lambda/-cell: a %g m wavelength reaches Miller indices up to %g with this cell, beyond "
                         "the engine's range (%g)", lambda_min, index_max, PB_MAX_INDEX);
            goto fail;
        }
    }
    if (mosaic_build(p, cfg, err) != PB_OK) goto fail;
    p->n_mosaic = g->mosaic_domains;
    if (build_axes(p, err) != PB_OK) goto fail;

    for (int i = 0; i < p->n_panels; ++i) {
        pb_panel_geometry *pg = &p->panels[i];
        const int64_t orientations = (int64_t)g->mosaic_domains * g->phisteps; /* <= PB_MAX_COUNT */
        const int64_t subpixels = (int64_t)pg->oversample * pg->oversample;
        pg->steps = count_mul(count_mul(g->sources, orientations), subpixels);
        if (pg->steps <= 0) {
            pb_set_error(err, PB_ERR_INVALID,
                         "-oversample/-divsteps/-dispsteps/-phisteps/-mosaic_domains: %d sources x %lld orientations "
                         "x %d x %d sub-pixels per pixel are too many", g->sources, (long long)orientations,
                         pg->oversample, pg->oversample);
            goto fail;
        }
    }
    g->steps = p->panels[0].steps;
    if (check_brightness(p, err) != PB_OK) goto fail;
    return p;
fail:
    pb_plan_free(p);
    return NULL;
}
