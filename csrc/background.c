/*
 * The amorphous background: the diffuse scattering of a sample without long-range
 * order (water, air, a solvent) from a table of the structure factor of one molecule
 * against sin(theta)/lambda, as nonBragg computes it, on the plan's panels.
 *
 * Source weights are relative (see source_weights): generated sources all weigh 1, as in nonBragg.
 * Unlike the Bragg kernel every factor (solid angle, polarization, capture fraction) is
 * evaluated per sub-pixel and source, and the sum is divided by sources * oversample^2.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define PB_BG_PAD_NEAR 1e98 /* the table is padded with its end values at +-1e98, +-1e99 */
#define PB_BG_PAD_FAR 1e99

/* the padded table: x[0..n+3], y[0..n+3] */
typedef struct bg_table {
    double *x, *y;
    int m; /* n + 4 */
} bg_table;

static int table_build(const pb_background *bg, bg_table *t, pb_error *err)
{
    const int n = bg->n; /* < INT_MAX - 4 (check_background) */
    t->m = n + 4;
    t->x = malloc((size_t)t->m * sizeof *t->x);
    t->y = malloc((size_t)t->m * sizeof *t->y);
    if (t->x == NULL || t->y == NULL) {
        free(t->x);
        free(t->y);
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for a table of %d points", n);
    }
    t->x[0] = -PB_BG_PAD_FAR;
    t->x[1] = -PB_BG_PAD_NEAR;
    t->y[0] = t->y[1] = bg->F[0];
    for (int i = 0; i < n; ++i) {
        t->x[i + 2] = bg->stol[i];
        t->y[i + 2] = bg->F[i];
    }
    t->x[n + 2] = PB_BG_PAD_NEAR;
    t->x[n + 3] = PB_BG_PAD_FAR;
    t->y[n + 2] = t->y[n + 3] = bg->F[n - 1];
    return PB_OK;
}

/* index k of the last padded point with x[k] <= s (at least 1, at most m - 3) */
static inline int table_index(const bg_table *t, double s)
{
    int lo = 1, hi = t->m - 3;
    if (!(s >= t->x[lo])) return lo;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t->x[mid] <= s)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* the cubic through the four points from k-1 on, at s (Lagrange's form, term by term) */
static inline double table_value(const bg_table *t, double s)
{
    const int k = table_index(t, s);
    const double *x = t->x + k - 1, *y = t->y + k - 1;
    double sum = 0.0;
    for (int i = 0; i < 4; ++i) {
        double num = 1.0, den = 1.0;
        for (int j = 0; j < 4; ++j) {
            if (j == i) continue;
            num *= s - x[j];
            den *= x[i] - x[j];
        }
        sum += num * y[i] / den;
    }
    return sum;
}

static int check_background(const pb_plan *plan, const pb_background *bg, pb_error *err)
{
    if (plan == NULL || bg == NULL) return pb_set_error(err, PB_ERR_INVALID, "no plan or no background");
    if (bg->n < 1 || bg->stol == NULL || bg->F == NULL)
        return pb_set_error(err, PB_ERR_INPUT, "the stol table is empty");
    if (bg->n > PB_MAX_COUNT)
        return pb_set_error(err, PB_ERR_INPUT, "-stol: %d table points are too many (at most %d)", bg->n,
                            PB_MAX_COUNT);
    for (int i = 0; i < bg->n; ++i) {
        if (!isfinite(bg->stol[i]) || !isfinite(bg->F[i]))
            return pb_set_error(err, PB_ERR_INPUT, "stol table point %d is not finite", i + 1);
        if (i > 0 && !(bg->stol[i] > bg->stol[i - 1]))
            return pb_set_error(err, PB_ERR_INPUT, "stol table is not strictly increasing at point %d", i + 1);
    }
    if (!(bg->thickness >= 0.0) || !(bg->width >= 0.0) || !(bg->height >= 0.0) || !isfinite(bg->thickness) ||
        !isfinite(bg->width) || !isfinite(bg->height))
        return pb_set_error(err, PB_ERR_INVALID, "sample dimensions must be finite and not negative");
    if (!(bg->molecular_weight > 0.0) || !isfinite(bg->molecular_weight))
        return pb_set_error(err, PB_ERR_INVALID, "molecular weight must be positive");
    if (!(bg->density >= 0.0) || !isfinite(bg->density))
        return pb_set_error(err, PB_ERR_INVALID, "density must be finite and not negative");
    if (!(bg->molecules >= 0.0) || !isfinite(bg->molecules))
        return pb_set_error(err, PB_ERR_INVALID, "number of molecules must be finite and not negative");
    return PB_OK;
}

int pb_background_resolve(const pb_plan *plan, const pb_background *bg, pb_background_info *info, pb_error *err)
{
    int rc = check_background(plan, bg, err);
    if (rc != PB_OK) return rc;
    if (info == NULL) return pb_set_error(err, PB_ERR_INVALID, "no output for the sample");
    const double beamsize = plan->geo.beamsize;
    memset(info, 0, sizeof *info);
    info->thickness = bg->thickness;
    info->width = bg->width;
    info->height = bg->height;
    if (beamsize >= 0.0) {
        if (beamsize < info->width) {
            info->width = beamsize;
            info->width_clipped = 1;
        }
        if (beamsize < info->height) {
            info->height = beamsize;
            info->height_clipped = 1;
        }
    }
    info->volume = info->thickness * info->width * info->height;
    info->density = bg->density;
    if (bg->molecules != 0.0) info->density = bg->molecules / info->volume / PB_AVOGADRO * bg->molecular_weight;
    info->molecules = info->volume * info->density * PB_AVOGADRO / bg->molecular_weight;
    if (!isfinite(info->molecules))
        return pb_set_error(err, PB_ERR_INVALID, "number of molecules is not finite (sample volume 0?)");
    return PB_OK;
}

/* Relative source weights, mean 1: all 1 when the plan's weights are equal (generated sources,
   or a source list with equal weights: nonBragg's weight 1), else weight / mean weight. */
static double *source_weights(const pb_plan *p)
{
    double *w = malloc((size_t)(p->n_sources > 0 ? p->n_sources : 1) * sizeof *w);
    if (w == NULL) return NULL;
    int equal = 1;
    double sum = 0.0;
    for (int i = 0; i < p->n_sources; ++i) {
        sum += p->sources[5 * i + 3];
        if (p->sources[5 * i + 3] != p->sources[3]) equal = 0;
    }
    for (int i = 0; i < p->n_sources; ++i) w[i] = equal ? 1.0 : p->sources[5 * i + 3] / (sum / p->n_sources);
    return w;
}

/* background photons of pixel (fpixel, spixel) of panel pg */
static double background_pixel(const pb_plan *p, const pb_panel_geometry *pg, const bg_table *t,
                               const double *weights, double scale, int fpixel, int spixel, double *omega_acc)
{
    const pb_geometry *g = &p->geo;
    const int os = pg->oversample;
    const double sub = pg->pixel_size / os;
    double I = 0.0;
    for (int ss = 0; ss < os; ++ss) {
        for (int sf = 0; sf < os; ++sf) {
            const double Fdet = sub * (fpixel * os + sf) + sub / 2.0;
            const double Sdet = sub * (spixel * os + ss) + sub / 2.0;
            for (int layer = 0; layer < g->thicksteps; ++layer) {
                const double Odet = layer * g->thickstep;
                double pos[3], diffracted[3];
                for (int i = 0; i < 3; ++i)
                    pos[i] = Fdet * pg->fdet[i] + Sdet * pg->sdet[i] + Odet * pg->odet[i] + pg->pix0[i];
                if (g->curved) {
                    double start[3], mid[3];
                    v3_scale(g->beam, pg->distance, start);
                    double angle_s = pos[1] / pg->distance, angle_f = pos[2] / pg->distance;
                    v3_rotate_axis(start, pg->sdet, angle_s, mid);
                    v3_rotate_axis(mid, pg->fdet, angle_f, pos);
                }
                const double airpath = v3_unit(pos, diffracted);
                double omega = pg->pixel_size * pg->pixel_size / airpath / airpath * pg->close_distance / airpath;
                if (g->point_pixel) omega = 1.0 / airpath / airpath;
                *omega_acc += omega;
                double capture = 1.0;
                if (g->thick > 0.0) {
                    double parallax = v3_dot(diffracted, pg->odet);
                    capture = exp(-layer * g->thickstep * g->mu / parallax) -
                              exp(-(layer + 1) * g->thickstep * g->mu / parallax);
                }
                for (int is = 0; is < p->n_sources; ++is) {
                    const double *src = p->sources + 5 * is;
                    double incident[3] = {-src[0], -src[1], -src[2]};
                    const double lambda = src[4];
                    double S[3];
                    for (int i = 0; i < 3; ++i) S[i] = (diffracted[i] - incident[i]) / lambda;
                    const double stol = 0.5 * v3_norm(S);
                    const double F = table_value(t, stol);
                    const double sign = F < 0.0 ? -1.0 : 1.0;
                    const double polar =
                        g->nopolar ? 1.0 : polarization_factor(g->polarization, incident, diffracted, g->polar);
                    I += sign * F * F * polar * omega * weights[is] * capture;
                }
            }
        }
    }
    return I * PB_R_E_SQR * g->fluence * scale / ((double)p->n_sources * os * os);
}

int pb_render_background(const pb_plan *plan, const pb_background *bg, float *image, pb_stats *stats,
                         const pb_render_options *opts, pb_error *err)
{
    if (err) {
        err->code = PB_OK;
        err->message[0] = '\0';
    }
    if (image == NULL) return pb_set_error(err, PB_ERR_INVALID, "no image buffer");
    pb_background_info info;
    int rc = render_options_check(opts, err);
    if (rc != PB_OK) return rc;
    rc = pb_background_resolve(plan, bg, &info, err);
    if (rc != PB_OK) return rc;
    bg_table table;
    rc = table_build(bg, &table, err);
    if (rc != PB_OK) return rc;

    const pb_geometry *g = &plan->geo;
    const render_span span = render_span_of(g, opts);
    const int row_begin = span.row_begin, row_end = span.row_end, nthreads = span.nthreads;
    volatile long *progress = span.progress;
    const int units = plan->unit_start[plan->n_panels];
    double *unit_omega = calloc(units > 0 ? (size_t)units : 1, sizeof *unit_omega);
    double *weights = source_weights(plan);
    if (unit_omega == NULL || weights == NULL) {
        free(unit_omega);
        free(weights);
        free(table.x);
        free(table.y);
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d rows", units);
    }
    const double molecules = info.molecules;
    const int data_fpixels = g->data_fpixels;

#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int u = 0; u < units; ++u) {
        const int panel = panel_of_unit(plan, u);
        const pb_panel_geometry *pg = &plan->panels[panel];
        const int r = u - plan->unit_start[panel];
        const int s = pg->data_slow + r;
        if (s < row_begin || s >= row_end || render_cancelled(&span)) continue;
        double omega_row = 0.0;
        for (int f = 0; f < pg->fpixels; ++f) {
            if (!pixel_selected(plan, pg->data_fast + f, s)) continue;
            if (render_cancelled(&span)) break;
            size_t idx = (size_t)s * data_fpixels + (size_t)(pg->data_fast + f);
            float photons = (float)background_pixel(plan, pg, &table, weights, molecules, f, r, &omega_row);
            image[idx] = image[idx] + photons;
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
    free(weights);
    free(table.x);
    free(table.y);
    if (render_cancelled(&span)) return pb_set_error(err, PB_ERR_CANCELLED, "the render was cancelled");
    if (stats != NULL) {
        memset(stats, 0, sizeof *stats);
        if (stats_compute(plan, image, stats, nthreads) != PB_OK)
            return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the statistics of %d rows", units);
        stats->omega_sum = omega_sum;
    }
    return PB_OK;
}
