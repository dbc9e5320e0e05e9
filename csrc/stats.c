/*
 * Image statistics as the reference reports them: brightest pixel, sum, mean,
 * rms over the rendered pixels, rms deviation over the region of interest.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* One work unit's (one panel row's) share of the statistics, summed along the row in
   column order. */
typedef struct {
    double sum, sumsqr, max_I, dev;
    long n, max_index, nroi;
} row_stats;

/* the data-array row s and columns f0..f1 (inclusive) of work unit u inside the
   region of interest; 0 when the unit lies outside it */
static int unit_span(const pb_plan *p, int u, int *s, int *f0, int *f1)
{
    const pb_geometry *g = &p->geo;
    const int panel = panel_of_unit(p, u);
    const pb_panel_geometry *pg = &p->panels[panel];
    *s = pg->data_slow + (u - p->unit_start[panel]);
    int s0 = g->roi[2] < 0 ? 0 : g->roi[2], s1 = g->roi[3] >= g->data_spixels ? g->data_spixels - 1 : g->roi[3];
    if (*s < s0 || *s > s1) return 0;
    int c0 = g->roi[0] < 0 ? 0 : g->roi[0], c1 = g->roi[1] >= g->data_fpixels ? g->data_fpixels - 1 : g->roi[1];
    int last = pg->data_fast + pg->fpixels - 1;
    *f0 = c0 > pg->data_fast ? c0 : pg->data_fast;
    *f1 = c1 < last ? c1 : last;
    return *f1 >= *f0;
}

static void row_moments(const pb_plan *p, const float *image, int u, row_stats *r)
{
    const pb_geometry *g = &p->geo;
    r->sum = r->sumsqr = r->max_I = 0.0;
    r->n = 0;
    r->max_index = -1;
    int s, f0, f1;
    if (!unit_span(p, u, &s, &f0, &f1)) return;
    for (int f = f0; f <= f1; ++f) {
        if (!pixel_selected(p, f, s)) continue;
        double v = image[(size_t)s * g->data_fpixels + f];
        if (v > r->max_I) {
            r->max_I = v;
            r->max_index = (long)s * g->data_fpixels + f;
        }
        r->sum += v;
        r->sumsqr += v * v;
        ++r->n;
    }
}

static void row_deviation(const pb_plan *p, const float *image, int u, double mean, row_stats *r)
{
    const pb_geometry *g = &p->geo;
    r->dev = 0.0;
    r->nroi = 0;
    int s, f0, f1;
    if (!unit_span(p, u, &s, &f0, &f1)) return;
    for (int f = f0; f <= f1; ++f) {
        double d = image[(size_t)s * g->data_fpixels + f] - mean;
        r->dev += d * d;
    }
    r->nroi = f1 - f0 + 1;
}

/* Statistics of the selected pixels of every panel, the way the reference reports
   them.  Every panel row is summed by one thread in column order and the rows are
   combined in panel and row order, so the numbers do not depend on the thread count;
   the brightest pixel is the first one in data-array order that reaches the maximum.
   The rms deviation runs over every panel pixel of the region of interest, mask or
   not.  PB_ERR_NOMEM without memory for the rows' partial sums. */
int stats_compute(const pb_plan *p, const float *image, pb_stats *st, int nthreads)
{
    const pb_geometry *g = &p->geo;
    const int units = p->unit_start[p->n_panels];
    row_stats *part = calloc(units > 0 ? (size_t)units : 1, sizeof *part);
    if (part == NULL) return PB_ERR_NOMEM;
    (void)nthreads; /* used by OpenMP only */

#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int u = 0; u < units; ++u) row_moments(p, image, u, &part[u]);
    double sum = 0.0, sumsqr = 0.0, max_I = 0.0;
    long n = 0, max_index = -1;
    for (int u = 0; u < units; ++u) {
        if (part[u].max_I > max_I || (part[u].max_I == max_I && max_I > 0.0 && part[u].max_index < max_index)) {
            max_I = part[u].max_I;
            max_index = part[u].max_index;
        }
        sum += part[u].sum;
        sumsqr += part[u].sumsqr;
        n += part[u].n;
    }
    long nmean = n <= 0 ? 1 : n;
    double mean = sum / nmean;
    long nrms = n <= 1 ? 2 : n;
    double rms = sqrt(sumsqr / (nrms - 1));

#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int u = 0; u < units; ++u) row_deviation(p, image, u, mean, &part[u]);
    double dev = 0.0;
    long nroi = 0;
    for (int u = 0; u < units; ++u) {
        dev += part[u].dev;
        nroi += part[u].nroi;
    }
    free(part);
    if (nroi <= 1) nroi = 2;
    st->max_I = max_I;
    st->max_I_index = max_index;
    st->max_I_fast = st->max_I_slow = 0.0;
    if (max_index >= 0) {
        /* the reference reports the last sub-pixel visited in that pixel */
        long fd = max_index % g->data_fpixels, sd = max_index / g->data_fpixels;
        const pb_panel_geometry *pg = &p->panels[panel_at(p, (int)fd, (int)sd)];
        int os = pg->oversample;
        double sub = pg->pixel_size / os;
        long f = fd - pg->data_fast, s = sd - pg->data_slow;
        st->max_I_fast = sub * (f * os + os - 1) + sub / 2.0;
        st->max_I_slow = sub * (s * os + os - 1) + sub / 2.0;
    }
    st->sum = sum;
    st->sumsqr = sumsqr;
    st->n = n;
    st->mean = mean;
    st->rms = rms;
    st->rmsd = sqrt(dev / (nroi - 1));
    return PB_OK;
}

int pb_stats_compute(const pb_plan *plan, const float *image, pb_stats *stats, pb_error *err)
{
    if (plan == NULL || image == NULL || stats == NULL)
        return pb_set_error(err, PB_ERR_INVALID, "statistics need a plan, an image and a pb_stats");
    memset(stats, 0, sizeof *stats);
    if (stats_compute(plan, image, stats, default_threads()) != PB_OK)
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the statistics of %d rows",
                            plan->unit_start[plan->n_panels]);
    return PB_OK;
}
