/* Internal declarations shared by the engine's source files (not installed). */
#ifndef PYBRAGG_INTERNAL_H
#define PYBRAGG_INTERNAL_H

#include "pybragg.h"

#include <math.h>
#include <stdarg.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* physical constants */
#define PB_R_E_SQR 7.94079248018965e-30 /* Thomson cross-section (m^2) */
#define PB_AVOGADRO 6.02214179e23
#define PB_WATER_F 2.57
#define PB_WATER_MW 18.0
#define PB_SOURCE_DISTANCE 10.0        /* m, for generated sources */

/* "unset" tests for configuration values */
#define PB_UNSET_OR_NEG(x) (isnan(x) || (x) < 0.0)
#define PB_UNSET_OR_NONPOS(x) (isnan(x) || (x) <= 0.0)

/* ---- small 3-vector helpers (inline: they sit in the pixel loop) ---- */
static inline double v3_dot(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static inline void v3_cross(const double a[3], const double b[3], double out[3])
{
    double x = a[1] * b[2] - a[2] * b[1];
    double y = a[2] * b[0] - a[0] * b[2];
    double z = a[0] * b[1] - a[1] * b[0];
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

static inline double v3_norm(const double a[3])
{
    return sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
}

/* out = a / |a|, returns |a|; a zero vector gives a zero result */
static inline double v3_unit(const double a[3], double out[3])
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

static inline void v3_scale(const double a[3], double s, double out[3])
{
    out[0] = s * a[0];
    out[1] = s * a[1];
    out[2] = s * a[2];
}

static inline void v3_copy(const double a[3], double out[3])
{
    out[0] = a[0];
    out[1] = a[1];
    out[2] = a[2];
}

/* ---- rotations (vec.c) ---- */
/* rotations about lab x, then y, then z (angles that are exactly 0 are skipped) */
void v3_rotate_xyz(const double v[3], double rx, double ry, double rz, double out[3]);
/* right-handed rotation of v by angle phi about the unit vector axis */
void v3_rotate_axis(const double v[3], const double axis[3], double phi, double out[3]);
/* out = U v for a row-major 3x3 matrix U */
void v3_matvec(const double U[9], const double v[3], double out[3]);

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
/* rotation matrix -> angles about x, y, z (the inverse of v3_rotate_xyz) */
void rotation_to_xyz_angles(const double U[9], double angles[3]);

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
    uint8_t *mask;
};

int pb_set_error(pb_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* resolve detector size, convention, axes and origin */
int geometry_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err);
/* resolve phi, divergence, dispersion, thickness and mosaic step counts */
void sampling_resolve(const pb_config *cfg, pb_geometry *g);
/* build the crystal axes (and random misset) */
int crystal_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err);
/* sources from the configuration or the user's list */
int sources_build(const pb_config *cfg, const pb_inputs *in, pb_geometry *g,
                  double **out, int *n, pb_error *err);
/* mosaic domain rotations */
int mosaic_build(const pb_config *cfg, const pb_geometry *g, double **out, pb_error *err);

#endif
