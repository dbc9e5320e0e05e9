/*
 * Image statistics as the reference reports them: brightest pixel, sum, mean,
 * rms over the rendered pixels, rms deviation over the region of interest.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* One row's share of the statistics, summed along the row in column order. */
typedef struct {
    double sum, sumsqr, max_I, dev;
    long n, max_index, nroi;
} row_stats;

static void row_moments(const pb_plan *p, const float *image, int s, int f0, int f1, row_stats *r)
{
    const pb_geometry *g = &p->geo;
    r->sum = r->sumsqr = r->max_I = 0.0;
    r->n = 0;
    r->max_index = -1;
    for (int f = f0; f <= f1; ++f) {
        if (!pixel_selected(p, f, s)) continue;
        double v = image[(size_t)s * g->fpixels + f];
        if (v > r->max_I) {
            r->max_I = v;
            r->max_index = (long)s * g->fpixels + f;
        }
        r->sum += v;
        r->sumsqr += v * v;
        ++r->n;
    }
}

static void row_deviation(const pb_plan *p, const float *image, int s, int f0, int f1, double mean, row_stats *r)
{
    const pb_geometry *g = &p->geo;
    r->dev = 0.0;
    for (int f = f0; f <= f1; ++f) {
        double d = image[(size_t)s * g->fpixels + f] - mean;
        r->dev += d * d;
    }
    r->nroi = f1 >= f0 ? f1 - f0 + 1 : 0;
}

/* Statistics of the selected pixels, the way the reference reports them.  Every row
   is summed by one thread in column order and the rows are combined in row order, so
   the numbers do not depend on the thread count; the brightest pixel is the first
   one in row-major order that reaches the maximum.  PB_ERR_NOMEM without memory for
   the rows' partial sums. */
int stats_compute(const pb_plan *p, const float *image, pb_stats *st, int nthreads)
{
    const pb_geometry *g = &p->geo;
    int s0 = g->roi[2] < 0 ? 0 : g->roi[2], s1 = g->roi[3] >= g->spixels ? g->spixels - 1 : g->roi[3];
    int f0 = g->roi[0] < 0 ? 0 : g->roi[0], f1 = g->roi[1] >= g->fpixels ? g->fpixels - 1 : g->roi[1];
    int rows = s1 >= s0 ? s1 - s0 + 1 : 0;
    row_stats *part = calloc(rows > 0 ? (size_t)rows : 1, sizeof *part);
    if (part == NULL) return PB_ERR_NOMEM;
    (void)nthreads; /* used by OpenMP only */

#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int r = 0; r < rows; ++r) row_moments(p, image, s0 + r, f0, f1, &part[r]);
    double sum = 0.0, sumsqr = 0.0, max_I = 0.0;
    long n = 0, max_index = -1;
    for (int r = 0; r < rows; ++r) {
        if (part[r].max_I > max_I) {
            max_I = part[r].max_I;
            max_index = part[r].max_index;
        }
        sum += part[r].sum;
        sumsqr += part[r].sumsqr;
        n += part[r].n;
    }
    long nmean = n <= 0 ? 1 : n;
    double mean = sum / nmean;
    long nrms = n <= 1 ? 2 : n;
    double rms = sqrt(sumsqr / (nrms - 1));

    /* the deviation runs over the whole region of interest, mask or not */
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int r = 0; r < rows; ++r) row_deviation(p, image, s0 + r, f0, f1, mean, &part[r]);
    double dev = 0.0;
    long nroi = 0;
    for (int r = 0; r < rows; ++r) {
        dev += part[r].dev;
        nroi += part[r].nroi;
    }
    free(part);
    if (nroi <= 1) nroi = 2;
    st->max_I = max_I;
    st->max_I_index = max_index;
    st->max_I_fast = st->max_I_slow = 0.0;
    if (max_index >= 0) {
        /* the reference reports the last sub-pixel visited in that pixel */
        int os = g->oversample;
        double sub = g->pixel_size / os;
        long f = max_index % g->fpixels, s = max_index / g->fpixels;
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
        return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the statistics of %d rows", plan->geo.spixels);
    return PB_OK;
}
