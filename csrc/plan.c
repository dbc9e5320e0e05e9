/*
 * Configuration defaults, the plan (everything derived once before the pixel
 * loop) and error reporting.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* beyond this, the automatic choice of sub-pixels is taken to be a mistake */
#define PB_MAX_AUTO_OVERSAMPLE 1000
/* the recommendation itself stops here (it must fit an int) */
#define PB_OVERSAMPLE_CAP 1000000

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
    size_t n = (size_t)g->phisteps * (size_t)g->mosaic_domains;
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
        size_t n = (size_t)in->nh * in->nk * in->nl;
        p->fhkl = malloc(sizeof(double) * n);
        if (p->fhkl == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %zu structure factors", n);
        memcpy(p->fhkl, in->fhkl, sizeof(double) * n);
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
        p->mask = malloc(n);
        if (p->mask == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the mask");
        memcpy(p->mask, in->mask, n);
    }
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
    g->polarization = b->polarization;
    g->nopolar = b->nopolar;
    g->water_size = b->water_size;
    g->I_bg = PB_WATER_F * PB_WATER_F * PB_R_E_SQR * g->fluence * b->water_size * b->water_size *
              b->water_size * PB_WATER_DENSITY * PB_AVOGADRO / PB_WATER_MW;

    if (detector_resolve(p, cfg, in, err) != PB_OK) goto fail;
    sampling_resolve(cfg, g);

    /* structure-factor interpolation: automatic for crystals of <= 2 cells */
    if (c->interpolate < 0)
        g->interpolate = (c->N[0] <= 2 || c->N[1] <= 2 || c->N[2] <= 2) ? 1 : 0;
    else
        g->interpolate = c->interpolate ? 1 : 0;

    if (crystal_resolve(cfg, g, err) != PB_OK) goto fail;

    if (choose_oversample(p, cfg, in, err) != PB_OK) goto fail;

    if (copy_inputs(p, in, err) != PB_OK) goto fail;
    if (!p->has_table) g->interpolate = 0;

    if (sources_build(cfg, in, g, &p->sources, &p->n_sources, err) != PB_OK) goto fail;
    g->sources = p->n_sources;
    if (mosaic_build(cfg, g, &p->mosaic, err) != PB_OK) goto fail;
    p->n_mosaic = g->mosaic_domains;
    if (build_axes(p, err) != PB_OK) goto fail;

    for (int i = 0; i < p->n_panels; ++i) {
        pb_panel_geometry *pg = &p->panels[i];
        pg->steps = (long)g->sources * g->mosaic_domains * g->phisteps * (long)pg->oversample * pg->oversample;
    }
    g->steps = p->panels[0].steps;
    return p;
fail:
    pb_plan_free(p);
    return NULL;
}
