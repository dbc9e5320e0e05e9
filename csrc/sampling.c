/*
 * Step counts and ranges of the sampled dimensions (spindle, divergence,
 * dispersion, sensor layers, mosaic domains), completed from whichever of
 * range / step / count the user gave, the way the reference completes them.
 */
#include "internal.h"

/* sensor thickness when layers are asked for without a thickness (m) */
#define PB_DEFAULT_LAYERS_THICK 0.5e-6

/* A range sampled by a number of steps of a given size, any of which may be
   unset (NaN or negative range, NaN or non-positive step, count <= 0). */
typedef struct sweep {
    double range, step;
    int count;
} sweep;

/* ceil(x) as a step count: PB_ERR_INVALID naming `flags` beyond PB_MAX_COUNT (or not a number) */
static int step_count(double x, const char *flags, int *count, pb_error *err)
{
    double c = ceil(x);
    if (!(c <= PB_MAX_COUNT))
        return pb_set_error(err, PB_ERR_INVALID, "%s: %g steps are too many (at most %d)", flags, c, PB_MAX_COUNT);
    *count = (int)c;
    return PB_OK;
}

/* completion rule shared by the divergences and the dispersion */
static int complete_sweep(sweep *s, const char *flags, pb_error *err)
{
    if (isinf(s->range) || isinf(s->step))
        return pb_set_error(err, PB_ERR_INVALID, "%s: the range and step must be finite", flags);
    int range_unset = PB_UNSET_OR_NEG(s->range);
    int step_unset = PB_UNSET_OR_NONPOS(s->step);
    if (s->count <= 0) {
        if (range_unset) {
            if (step_unset) {
                s->count = 1;
                s->range = 0.0;
                s->step = 0.0;
            } else {
                s->range = s->step;
                s->count = 2;
            }
        } else if (step_unset) {
            s->step = s->range;
            s->count = 2;
        } else {
            int rc = step_count(s->range / s->step, flags, &s->count, err);
            if (rc != PB_OK) return rc;
        }
    } else {
        if (range_unset) {
            if (step_unset) {
                s->range = 1.0;
                s->step = s->range / s->count;
            } else {
                s->range = s->step;
                s->count = 2;
            }
        } else if (step_unset) {
            if (s->count <= 1) s->count = 2;
            s->step = s->range / (s->count - 1);
        }
    }
    /* nothing to sample */
    if (!(s->range > 0.0) || !(s->step > 0.0) || s->count <= 0) {
        s->count = 1;
        s->range = 0.0;
        s->step = 0.0;
    }
    if (s->count > PB_MAX_COUNT)
        return pb_set_error(err, PB_ERR_INVALID, "%s: %d steps are too many (at most %d)", flags, s->count,
                            PB_MAX_COUNT);
    return PB_OK;
}

int sampling_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err)
{
    const pb_crystal *c = &cfg->crystal;
    const pb_beam *b = &cfg->beam;
    const pb_detector *d = &cfg->detector;

    /* spindle */
    double osc = c->osc, phistep = c->phistep;
    int phisteps = c->phisteps;
    int osc_unset = PB_UNSET_OR_NEG(osc);
    if (isinf(osc) || isinf(phistep) || !isfinite(c->phi0))
        return pb_set_error(err, PB_ERR_INVALID, "-phi/-osc/-phistep: the spindle angles must be finite");
    if (phisteps < 0) {
        if (osc_unset) {
            if (PB_UNSET_OR_NONPOS(phistep)) {
                phisteps = 1;
                osc = 0.0;
                phistep = 0.0;
            } else {
                osc = phistep;
                phisteps = 2;
            }
        } else if (PB_UNSET_OR_NONPOS(phistep)) {
            phisteps = 2;
            phistep = osc / 2.0;
        } else {
            int rc = step_count(osc / phistep, "-osc/-phistep", &phisteps, err);
            if (rc != PB_OK) return rc;
        }
    } else {
        if (phisteps == 0) phisteps = 1;
        if (osc_unset) {
            if (PB_UNSET_OR_NONPOS(phistep)) {
                osc = 1.0 / PB_RAD2DEG; /* one degree */
                phistep = osc / phisteps;
            } else {
                osc = phistep;
                phisteps = 2;
            }
        } else if (PB_UNSET_OR_NEG(phistep)) {
            phistep = osc / phisteps;
        }
    }
    if (phisteps > PB_MAX_COUNT)
        return pb_set_error(err, PB_ERR_INVALID, "-phisteps: %d steps are too many (at most %d)", phisteps,
                            PB_MAX_COUNT);
    g->phi0 = c->phi0;
    g->osc = osc;
    g->phistep = phistep;
    g->phisteps = phisteps;

    /* divergence and dispersion */
    sweep h = {b->hdivrange, b->hdivstep, b->hdivsteps};
    sweep v = {b->vdivrange, b->vdivstep, b->vdivsteps};
    sweep w = {b->dispersion, NAN, b->dispsteps};
    int rc = complete_sweep(&h, "-hdivrange/-hdivstep/-hdivsteps", err);
    if (rc == PB_OK) rc = complete_sweep(&v, "-vdivrange/-vdivstep/-vdivsteps", err);
    if (rc == PB_OK) rc = complete_sweep(&w, "-dispersion/-dispsteps", err);
    if (rc != PB_OK) return rc;
    g->hdivrange = h.range;
    g->hdivstep = h.step;
    g->hdivsteps = h.count;
    g->vdivrange = v.range;
    g->vdivstep = v.step;
    g->vdivsteps = v.count;
    g->dispersion = w.range;
    g->dispstep = w.step;
    g->dispsteps = w.count;

    /* sensor layers: an unset step count splits the thickness in two */
    double thick = d->thick, thickstep = NAN;
    int layers = d->thicksteps;
    if (layers <= 0) {
        if (thick < 0.0) {
            layers = 1;
            thick = 0.0;
            thickstep = 0.0;
        } else {
            layers = 2;
            thickstep = thick / layers;
        }
    } else if (thick < 0.0) {
        thick = PB_DEFAULT_LAYERS_THICK;
        thickstep = thick / layers;
    } else {
        if (layers <= 1) layers = 2;
        thickstep = thick / (layers - 1);
    }
    /* attenuation: unset is -1 as in the reference, 1/thickness once there is a sensor
       (with no sensor and -oversample_thick the capture fraction is then exactly 0) */
    double mu = isnan(d->mu) ? -1.0 : d->mu;
    if (thick > 0.0 && mu < 0.0) mu = 1.0 / thick;
    if (!(thick > 0.0) || !(thickstep > 0.0) || layers <= 0) {
        layers = 1;
        thick = 0.0;
        thickstep = 0.0;
    }
    if (!isfinite(thick) || !isfinite(thickstep) || isinf(mu) || isnan(mu))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-detector_thick/-detector_absorb: the sensor thickness and attenuation must be finite");
    g->thick = thick;
    g->thickstep = thickstep;
    g->thicksteps = layers;
    g->mu = mu;

    /* mosaic domains */
    double spread = c->mosaic_spread;
    int domains = c->mosaic_domains;
    if (domains <= 0) {
        if (PB_UNSET_OR_NEG(spread)) {
            domains = 1;
            spread = 0.0;
        } else {
            domains = spread == 0.0 ? 1 : 10;
        }
    } else if (PB_UNSET_OR_NEG(spread)) {
        spread = 0.0;
        domains = 1;
    } else if (spread == 0.0) {
        domains = 1;
    }
    if (!isfinite(spread))
        return pb_set_error(err, PB_ERR_INVALID, "-mosaic: the mosaic spread must be finite");
    if (domains > PB_MAX_COUNT)
        return pb_set_error(err, PB_ERR_INVALID, "-mosaic_domains: %d domains are too many (at most %d)", domains,
                            PB_MAX_COUNT);
    if ((int64_t)phisteps * domains > PB_MAX_COUNT)
        return pb_set_error(err, PB_ERR_INVALID,
                            "-phisteps/-mosaic_domains: %d x %d crystal orientations are too many (at most %d)",
                            phisteps, domains, PB_MAX_COUNT);
    g->mosaic_spread = spread;
    g->mosaic_domains = domains;
    return PB_OK;
}
