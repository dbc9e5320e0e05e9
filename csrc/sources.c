/*
 * Sources (incident directions and wavelengths) and mosaic domains.
 */
#include "internal.h"

#include <stdlib.h>

/* whether a divergence raster point lies inside the ellipse of a round beam */
static int outside_round_beam(const pb_geometry *g, double hdiv, double vdiv)
{
    double test = (hdiv * hdiv - g->hdivstep * g->hdivstep / 4.0 * (1 - g->hdivsteps % 2)) / g->hdivrange /
                  g->hdivrange;
    test += (vdiv * vdiv - g->vdivstep * g->vdivstep / 4.0 * (1 - g->vdivsteps % 2)) / g->vdivrange / g->vdivrange;
    return test * 4.0 > 1.1;
}

int sources_build(const pb_config *cfg, const pb_inputs *in, pb_geometry *g, double **out, int *n, pb_error *err)
{
    double *src = NULL;
    int count = 0;
    if (in != NULL && in->n_sources > 0) {
        if (in->sources == NULL) return pb_set_error(err, PB_ERR_INPUT, "source list is missing");
        count = in->n_sources;
        src = malloc(sizeof(double) * 5 * (size_t)count);
        if (src == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d sources", count);
        for (int i = 0; i < count; ++i) {
            const double *s = in->sources + 5 * i;
            double *o = src + 5 * i;
            for (int k = 0; k < 3; ++k) o[k] = isnan(s[k]) ? -PB_SOURCE_DISTANCE * g->beam[k] : s[k];
            o[3] = isnan(s[3]) ? 1.0 : s[3];
            o[4] = isnan(s[4]) ? g->lambda0 : s[4];
            if (!(o[4] > 0.0) || !isfinite(o[4])) {
                free(src);
                return pb_set_error(err, PB_ERR_INPUT, "source %d has wavelength %g m", i + 1, o[4]);
            }
        }
        g->divsteps = 0;
    } else {
        /* every divergence raster point inside the beam, at every wavelength */
        int most = g->hdivsteps * g->vdivsteps * g->dispsteps;
        src = malloc(sizeof(double) * 5 * (size_t)(most > 0 ? most : 1));
        if (src == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d sources", most);
        int divsteps = 0;
        for (int ih = 0; ih < g->hdivsteps; ++ih)
            for (int iv = 0; iv < g->vdivsteps; ++iv) {
                double hdiv = g->hdivstep * ih - g->hdivrange / 2.0;
                double vdiv = g->vdivstep * iv - g->vdivrange / 2.0;
                if (cfg->beam.round_div && outside_round_beam(g, hdiv, vdiv)) continue;
                /* tilt the source about the E-vector, then about the vertical */
                double pos[3], tilted[3];
                v3_scale(g->beam, -PB_SOURCE_DISTANCE, pos);
                v3_rotate_axis(pos, g->polar, vdiv, tilted);
                v3_rotate_axis(tilted, g->vert, hdiv, pos);
                for (int id = 0; id < g->dispsteps; ++id) {
                    double *o = src + 5 * count++;
                    v3_copy(pos, o);
                    o[4] = g->lambda0 * (1.0 + g->dispstep * id - g->dispersion / 2.0);
                }
                ++divsteps;
            }
        g->divsteps = divsteps;
        if (count <= 0) {
            free(src);
            return pb_set_error(err, PB_ERR_INVALID, "the divergence leaves no source");
        }
        /* equal weights (the kernel does not use them, as in the reference) */
        for (int i = 0; i < count; ++i) src[5 * i + 3] = 1.0 / count;
    }
    /* directions only */
    for (int i = 0; i < count; ++i) {
        double *o = src + 5 * i;
        if (v3_unit(o, o) == 0.0) {
            free(src);
            return pb_set_error(err, PB_ERR_INPUT, "source %d sits at the sample", i + 1);
        }
    }
    *out = src;
    *n = count;
    return PB_OK;
}

int mosaic_build(const pb_config *cfg, const pb_geometry *g, double **out, pb_error *err)
{
    int n = g->mosaic_domains;
    double *U = malloc(sizeof(double) * 9 * (size_t)n);
    if (U == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d mosaic domains", n);
    pb_rng rng;
    rng_seed(&rng, cfg->crystal.mosaic_seed);
    for (int i = 0; i < n; ++i) rng_cap_rotation(&rng, (float)g->mosaic_spread, U + 9 * i);
    /* the first domain is always the unrotated crystal */
    for (int k = 0; k < 9; ++k) U[k] = (k % 4 == 0) ? 1.0 : 0.0;
    *out = U;
    return PB_OK;
}
