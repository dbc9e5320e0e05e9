/* Internal declarations shared by the engine's source files (not installed). */
#ifndef PYBRAGG_INTERNAL_H
#define PYBRAGG_INTERNAL_H

#include "pybragg.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* physical constants */
#define PB_R_E_SQR 7.94079248018965e-30 /* Thomson cross-section (m^2) */
#define PB_AVOGADRO 6.02214179e23       /* 1/mol */
#define PB_WATER_F 2.57                 /* structure factor of a water molecule */
#define PB_WATER_MW 18.0                /* molecular weight of water (g/mol) */
#define PB_WATER_DENSITY 1e6            /* g/m^3 */
#define PB_SOURCE_DISTANCE 10.0         /* m, for generated sources */

/* spot shapes: the round transform's scale, so that its integral matches the
   square one's; the Gaussian's width and the top hat's squared radius (0.63^2) */
#define PB_ROUND_SCALE 0.723601254558268
#define PB_GAUSS_SCALE 0.63
#define PB_TOPHAT_RADIUS_SQR 0.3969

/* units */
#define PB_RAD2DEG (180.0 * 0.318309886183790671538) /* degrees per radian, as the reference has it */
#define PB_ANGSTROM_PER_M 1e10
#define PB_M_PER_ANGSTROM 1e-10

/* "unset" tests for configuration values */
#define PB_UNSET_OR_NEG(x) (isnan(x) || (x) < 0.0)
#define PB_UNSET_OR_NONPOS(x) (isnan(x) || (x) <= 0.0)

/* The most sources, mosaic domains and crystal orientations (phi steps x domains) a plan may
   have: the pixel loop indexes their arrays (5 and 9 doubles each) with int arithmetic. */
#define PB_MAX_COUNT (INT_MAX / 16)

/* a * b for non-negative 64-bit counts; -1 when either is negative or the product overflows */
static inline int64_t count_mul(int64_t a, int64_t b)
{
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* always inlined, also into the kernel's AVX2 functions, whose target differs (GCC does not
   inline a function of the default target into them otherwise) */
#if defined(__GNUC__)
#define PB_ALWAYS_INLINE __attribute__((always_inline))
#else
#define PB_ALWAYS_INLINE
#endif

/* ---- small 3-vector helpers (inline: they sit in the pixel loop) ---- */
PB_ALWAYS_INLINE static inline double v3_dot(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

PB_ALWAYS_INLINE static inline void v3_cross(const double a[3], const double b[3], double out[3])
{
    double x = a[1] * b[2] - a[2] * b[1];
    double y = a[2] * b[0] - a[0] * b[2];
    double z = a[0] * b[1] - a[1] * b[0];
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

PB_ALWAYS_INLINE static inline double v3_norm(const double a[3])
{
    return sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
}

/* out = a / |a|, returns |a|; a zero vector gives a zero result */
PB_ALWAYS_INLINE static inline double v3_unit(const double a[3], double out[3])
{
    double len = v3_norm(a);
    if (len != 0.0) {
        out[0] = a[0] / len;
        out[1] = a[1] / len;
        out[2] = a[2] / len;
    } else {
        out[0] = out[1] = out[2] = 0.0;
    }
    return len;
}

PB_ALWAYS_INLINE static inline void v3_scale(const double a[3], double s, double out[3])
{
    out[0] = s * a[0];
    out[1] = s * a[1];
    out[2] = s * a[2];
}

PB_ALWAYS_INLINE static inline void v3_copy(const double a[3], double out[3])
{
    out[0] = a[0];
    out[1] = a[1];
    out[2] = a[2];
}

/* polarization factor for an incident and a diffracted direction (kernel.c, background.c) */
static inline double polarization_factor(double kahn, const double incident_in[3], const double diffracted_in[3],
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

/* ---- rotations (rotation.c) ---- */
/* rotations about lab x, then y, then z (angles that are exactly 0 are skipped) */
void v3_rotate_xyz(const double v[3], double rx, double ry, double rz, double out[3]);
/* right-handed rotation of v by angle phi about the unit vector axis */
void v3_rotate_axis(const double v[3], const double axis[3], double phi, double out[3]);
/* out = U v for a row-major 3x3 matrix U */
void v3_matvec(const double U[9], const double v[3], double out[3]);
/* row-major rotation matrix by angle (rad) about the unit vector (ux, uy, uz) */
void rotation_from_axis_angle(double ux, double uy, double uz, double angle, double U[9]);
/* rotation matrix -> angles about x, y, z (the inverse of v3_rotate_xyz) */
void rotation_to_xyz_angles(const double U[9], double angles[3]);

/* ---- random numbers (random.c) ---- */
typedef struct pb_rng {
    long idum;      /* the reference's generator state (negative: reseed) */
    long iy;
    long iv[32];
    int gauss_ready; /* Box-Muller spare */
    float gauss_spare;
} pb_rng;

/* seed as the reference does with "-seed S": internal state -S */
void rng_seed(pb_rng *r, long user_seed);
float rng_uniform(pb_rng *r);
float rng_gauss(pb_rng *r);
float rng_poisson(pb_rng *r, float mean);
/* random rotation within a spherical cap of the given angular size (rad) */
void rng_cap_rotation(pb_rng *r, float spread, double U[9]);

/* ---- the plan (plan.c, geometry.c, crystal.c, sources.c) ---- */
struct pb_plan {
    pb_config cfg;
    pb_geometry geo;
    /* sources: unit vector from sample towards the source, weight, lambda */
    double *sources; /* n x 5 */
    int n_sources;
    double *mosaic;  /* n x 9 */
    int n_mosaic;
    /* real-space axes (m) for every (phi step, mosaic domain): [phi][dom][a|b|c][xyz] */
    double *axes;
    /* structure factors */
    double *fhkl;
    int h_min, k_min, l_min, nh, nk, nl;
    int has_table;
    uint8_t *mask;   /* data array sized */
    /* the panels; work units (panel, row): unit_start[i] is panel i's first unit,
       unit_start[n_panels] the number of units (rows over all panels) */
    pb_panel_geometry *panels;
    int n_panels;
    int *unit_start;
    /* the memory rule: bytes the plan may allocate (<= 0: no limit) and has reserved so far */
    double memory_limit, memory_used;
};

/* Reserve nbytes of the plan's memory limit for an allocation, before it is made: PB_ERR_LIMIT
   "<what> needs 51.2 GiB, more than the 12.0 GiB available" (what: printf format naming the flag
   or file and the quantity) when the limit would be exceeded, else PB_OK. */
int plan_reserve(pb_plan *p, double nbytes, pb_error *err, const char *what_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* nbytes as pybragg.memory.format_bytes writes it ("51.2 GiB", "12 bytes") */
void format_bytes(double nbytes, char *out, size_t size);

int pb_set_error(pb_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* resolve detector size, convention, axes and origin */
int geometry_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err);
/* resolve the detector: the flag-defined panel or the explicit panels of `in`,
   the data array, the ROI and the work units (panels.c) */
int detector_resolve(pb_plan *p, const pb_config *cfg, const pb_inputs *in, pb_error *err);
/* the index of the panel covering data-array pixel (f, s), -1 if none */
int panel_at(const pb_plan *p, int f, int s);
/* resolve phi, divergence, dispersion, thickness and mosaic step counts; PB_ERR_INVALID
   naming the flags when a count is beyond PB_MAX_COUNT or a range is not finite */
int sampling_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err);
/* build the crystal axes (and random misset) */
int crystal_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err);
/* sources from the configuration or the user's list (p->sources, p->n_sources; memory from p's limit) */
int sources_build(pb_plan *p, const pb_config *cfg, const pb_inputs *in, pb_error *err);
/* mosaic domain rotations (p->mosaic) */
int mosaic_build(pb_plan *p, const pb_config *cfg, pb_error *err);

/* ---- the pixel loop and the statistics (kernel.c, stats.c) ---- */
/* OpenMP's default number of threads; 1 without OpenMP */
static inline int default_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* what a pb_render_options asks of a pass over the data array: its rows [row_begin, row_end),
   the threads (OpenMP's default for <= 0; 1 without OpenMP), the progress counter and the
   cancellation flag */
typedef struct render_span {
    int row_begin, row_end, nthreads;
    volatile long *progress;
    volatile int *cancel;
} render_span;

/* PB_ERR_INVALID for options no pass can honour (more than PB_MAX_THREADS threads) */
static inline int render_options_check(const pb_render_options *opts, pb_error *err)
{
    if (opts != NULL && opts->nthreads > PB_MAX_THREADS)
        return pb_set_error(err, PB_ERR_INVALID, "--threads: %d is too large (at most %d)", opts->nthreads,
                            PB_MAX_THREADS);
    return PB_OK;
}

/* whether the caller asked the pass to stop */
static inline int render_cancelled(const render_span *r)
{
    return r->cancel != NULL && *r->cancel != 0;
}

static inline render_span render_span_of(const pb_geometry *g, const pb_render_options *opts)
{
    render_span r = {0, g->data_spixels, 0, NULL, NULL};
    if (opts != NULL) {
        r.nthreads = opts->nthreads;
        r.progress = opts->progress;
        r.cancel = opts->cancel;
        if (opts->row_end > 0) {
            r.row_begin = opts->row_begin < 0 ? 0 : opts->row_begin;
            r.row_end = opts->row_end > g->data_spixels ? g->data_spixels : opts->row_end;
        }
    }
    if (r.nthreads <= 0) r.nthreads = default_threads();
#ifndef _OPENMP
    r.nthreads = 1;
#endif
    return r;
}

/* whether pixel (f, s) is rendered: inside the region of interest and the mask */
static inline int pixel_selected(const pb_plan *p, int f, int s)
{
    const pb_geometry *g = &p->geo;
    if (f < g->roi[0] || f > g->roi[1] || s < g->roi[2] || s > g->roi[3]) return 0;
    if (p->mask != NULL && p->mask[(size_t)s * g->data_fpixels + f] == 0) return 0;
    return 1;
}

/* the panel of work unit u (binary search over unit_start) */
static inline int panel_of_unit(const pb_plan *p, int u)
{
    int lo = 0, hi = p->n_panels - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p->unit_start[mid] <= u)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* statistics of the selected pixels of image (all but omega_sum and the
   interpolation fallbacks); PB_ERR_NOMEM without memory for the rows' partial sums */
int stats_compute(const pb_plan *p, const float *image, pb_stats *st, int nthreads);

#endif
