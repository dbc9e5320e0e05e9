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

int sources_build(pb_plan *p, const pb_config *cfg, const pb_inputs *in, pb_error *err)
{
    pb_geometry *g = &p->geo;
    double *src = NULL;
    int count = 0;
    int rc;
    if (in != NULL && in->n_sources > 0) {
        if (in->sources == NULL) return pb_set_error(err, PB_ERR_INPUT, "source list is missing");
        count = in->n_sources;
        if (count > PB_MAX_COUNT)
            return pb_set_error(err, PB_ERR_INPUT, "source list of %d sources is too long (at most %d)", count,
                                PB_MAX_COUNT);
        rc = plan_reserve(p, 40.0 * count, err, "-sourcefile: %d sources", count);
        if (rc != PB_OK) return rc;
        src = malloc(sizeof(double) * 5 * (size_t)count);
        if (src == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d sources", count);
        for (int i = 0; i < count; ++i) {
            const double *s = in->sources + 5 * (size_t)i;
            double *o = src + 5 * (size_t)i;
            for (int k = 0; k < 3; ++k) o[k] = isnan(s[k]) ? -PB_SOURCE_DISTANCE * g->beam[k] : s[k];
            o[3] = isnan(s[3]) ? 1.0 : s[3];
            o[4] = isnan(s[4]) ? g->lambda0 : s[4];
            const char *bad = NULL;
            if (!isfinite(o[0]) || !isfinite(o[1]) || !isfinite(o[2]))
                bad = "position is not finite";
            else if (!(o[3] >= 0.0) || !isfinite(o[3]))
                bad = "weight must be finite and not negative";
            else if (!(o[4] > 0.0) || !isfinite(o[4]))
                bad = "wavelength must be positive and finite";
            if (bad != NULL) {
                /* "source ...": the command line names the file in front */
                pb_set_error(err, PB_ERR_INPUT, "source %d: %s (X Y Z %g %g %g m, weight %g, lambda %g m)", i + 1,
                             bad, o[0], o[1], o[2], o[3], o[4]);
                free(src);
                return PB_ERR_INPUT;
            }
        }
        g->divsteps = 0;
    } else {
        /* every divergence raster point inside the beam, at every wavelength */
        const int64_t most = count_mul(count_mul(g->hdivsteps, g->vdivsteps), g->dispsteps);
        if (most < 0 || most > PB_MAX_COUNT)
            return pb_set_error(err, PB_ERR_INVALID,
                                "-divsteps/-dispsteps: %d x %d x %d sources are too many (at most %d)",
                                g->hdivsteps, g->vdivsteps, g->dispsteps, PB_MAX_COUNT);
        /* the spectrum: the shortest wavelength must stay above 0 */
        const double shortest = g->lambda0 * (1.0 - g->dispersion / 2.0);
        const double longest = g->lambda0 * (1.0 + g->dispstep * (g->dispsteps - 1) - g->dispersion / 2.0);
        if (!(shortest > 0.0) || !isfinite(longest) || !(longest > 0.0))
            return pb_set_error(err, PB_ERR_INVALID,
                                "-dispersion: a spectral width of %g%% around %g m reaches wavelength %g m; "
                                "it must stay below 200%%", 100.0 * g->dispersion, g->lambda0,
                                shortest > 0.0 ? longest : shortest);
        rc = plan_reserve(p, 40.0 * (double)most, err, "-divsteps/-dispsteps: %d x %d x %d sources", g->hdivsteps,
                          g->vdivsteps, g->dispsteps);
        if (rc != PB_OK) return rc;
        src = malloc(sizeof(double) * 5 * (size_t)(most > 0 ? most : 1));
        if (src == NULL)
            return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %lld sources", (long long)most);
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
                    double *o = src + 5 * (size_t)count++;
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
        for (int i = 0; i < count; ++i) src[5 * (size_t)i + 3] = 1.0 / count;
    }
    /* directions only; every wavelength positive (checked above, but rounding must not undo it) */
    for (int i = 0; i < count; ++i) {
        double *o = src + 5 * (size_t)i;
        double len = v3_unit(o, o);
        if (!(len > 0.0) || !isfinite(len) || !(o[4] > 0.0) || !isfinite(o[4])) {
            const double lambda = o[4];
            free(src);
            if (in != NULL && in->n_sources > 0)
                return pb_set_error(err, PB_ERR_INPUT, "source %d sits at the sample", i + 1);
            return pb_set_error(err, PB_ERR_INVALID, "source %d has direction length %g and wavelength %g m", i + 1,
                                len, lambda);
        }
    }
    p->sources = src;
    p->n_sources = count;
    return PB_OK;
}

int mosaic_build(pb_plan *p, const pb_config *cfg, pb_error *err)
{
    const pb_geometry *g = &p->geo;
    int n = g->mosaic_domains; /* <= PB_MAX_COUNT (sampling_resolve) */
    int rc = plan_reserve(p, 72.0 * n, err, "-mosaic_domains: %d mosaic domains", n);
    if (rc != PB_OK) return rc;
    double *U = malloc(sizeof(double) * 9 * (size_t)n);
    if (U == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d mosaic domains", n);
    pb_rng rng;
    rng_seed(&rng, cfg->crystal.mosaic_seed);
    for (int i = 0; i < n; ++i) rng_cap_rotation(&rng, (float)g->mosaic_spread, U + 9 * (size_t)i);
    /* the first domain is always the unrotated crystal */
    for (int k = 0; k < 9; ++k) U[k] = (k % 4 == 0) ? 1.0 : 0.0;
    p->mosaic = U;
    return PB_OK;
}
