/*
 * The detector's response (noisify): source flicker, per-pixel calibration
 * error, photon counting, point-spread function, gain, ADC offset, read-out
 * noise and the integer cast, with the random draws in the reference's order.
 *
 * The reference keeps one generator whose shuffle table and Box-Muller spare
 * are shared by all of its seeds; only the congruential state differs per
 * seed.  pybragg reproduces that exactly: one pb_rng holds the shared table and
 * spare, and each stream (photon noise, calibration) keeps its own state,
 * swapped in for every draw.  This file is compiled without contraction into
 * fused multiply-adds, like random.c.
 */
#include "internal.h"

#include <stdlib.h>

#define RESP_MAX16 65535.0
#define RESP_MAX32 2147483647.0
/* photons whose loss is below a tenth of their own noise are not rendered */
#define PSF_LOSS_FACTOR 10.0
/* fwhm -> fiber PSF distance g: fwhm = 2 sqrt(2^(2/3) - 1) g */
#define FIBER_G_PER_FWHM 0.652383013252053

enum { STREAM_PHOTONS = 0, STREAM_CALIB = 1 };

typedef struct {
    pb_rng shared; /* shuffle table and Gaussian spare, common to both streams */
    long state[2]; /* each stream's congruential state */
    int own_calib; /* the calibration stream has a generator of its own */
    pb_rng calib;
} resp_streams;

static float stream_gauss(resp_streams *s, int which)
{
    if (which == STREAM_CALIB && s->own_calib) return rng_gauss(&s->calib);
    s->shared.idum = s->state[which];
    float g = rng_gauss(&s->shared);
    s->state[which] = s->shared.idum;
    return g;
}

static float stream_poisson(resp_streams *s, float mean)
{
    s->shared.idum = s->state[STREAM_PHOTONS];
    float k = rng_poisson(&s->shared, mean);
    s->state[STREAM_PHOTONS] = s->shared.idum;
    return k;
}

/* ---- point-spread functions, integrated over one pixel (distances in pixels) ---- */

static double gauss_corner(double x, double y)
{
    /* integral of a unit-volume Gaussian of fwhm 1 from the origin to (x, y) */
    return 0.125 * (erf(2 * x * sqrt(log(2))) * erf(y * sqrt(log(16))) * sqrt(log(16) / log(2)));
}

static double gauss_over_pixel(double dx, double dy, double fwhm)
{
    double x = dx / fwhm, y = dy / fwhm, h = (1.0 / fwhm) / 2.;
    return gauss_corner(x + h, y + h) - gauss_corner(x + h, y - h) - gauss_corner(x - h, y + h) +
           gauss_corner(x - h, y - h);
}

static double fiber_corner(double x, double y, double g)
{
    return atan((x * y) / (g * sqrt(g * g + x * x + y * y))) / 2.0 / M_PI;
}

static double fiber_over_pixel(double x, double y, double g)
{
    double h = 1.0 / 2.;
    return fiber_corner(x + h, y + h, g) - fiber_corner(x + h, y - h, g) - fiber_corner(x - h, y + h, g) +
           fiber_corner(x - h, y - h, g);
}

/* rendering radius for a pixel of `photons` (auto mode): where the lost photons
   fall below a tenth of the pixel's own Poisson noise */
/* the largest radius any pixel's spread is computed with (2 r + 1 must fit an int) */
#define PSF_MAX_RADIUS (INT_MAX / 4)

static int psf_auto_radius(int type, double photons, double fwhm, double g, int global)
{
    double lost = sqrt(photons) / PSF_LOSS_FACTOR;
    double r = 0.0;
    if (type == PB_PSF_GAUSS) {
        if (global)
            r = 1 + ceil(sqrt(-log(lost / photons) / log(4) / 2) * fwhm);
        else
            r = 1 + ceil(sqrt(-log(lost / photons) / log(16)) * fwhm);
    } else {
        r = 1 + ceil(g * (photons / lost));
    }
    /* the caller clips it to the detector's width; beyond this it must not overflow an int first */
    return r < PSF_MAX_RADIUS ? (int)r : PSF_MAX_RADIUS;
}

int pb_response_psf(const float *in, int fpixels, int spixels, int type, double fwhm_pixels, int user_radius,
                    float *out, double *lost_total, int *radius_used, pb_error *err)
{
    if (in == NULL || out == NULL || fpixels <= 0 || spixels <= 0)
        return pb_set_error(err, PB_ERR_INVALID, "the point-spread function needs an image and an output buffer");
    if (type != PB_PSF_GAUSS && type != PB_PSF_FIBER)
        return pb_set_error(err, PB_ERR_INVALID, "unknown point-spread function type %d", type);
    if (!(fwhm_pixels > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "the point-spread function's fwhm must be > 0");
    if (user_radius < 0)
        return pb_set_error(err, PB_ERR_INVALID, "the point-spread function's radius must not be negative");
    size_t pixels = (size_t)fpixels * (size_t)spixels;
    double g = fwhm_pixels * FIBER_G_PER_FWHM;
    int maxwidth = fpixels > spixels ? fpixels : spixels;
    for (size_t i = 0; i < pixels; ++i) out[i] = 0.0f;
    if (lost_total) *lost_total = 0.0;

    int radius = user_radius;
    if (radius == 0) {
        double max_i = 0.0;
        for (size_t i = 0; i < pixels; ++i)
            if (max_i < in[i]) max_i = in[i];
        if (max_i <= 0.0) {
            /* nothing to blur: the reference returns an empty image */
            if (radius_used) *radius_used = 0;
            return PB_OK;
        }
        radius = psf_auto_radius(type, max_i, fwhm_pixels, g, 1);
        if (radius == 0) radius = 1;
    }
    if (radius > maxwidth) radius = maxwidth;
    if (radius > PSF_MAX_RADIUS) radius = PSF_MAX_RADIUS;
    if (radius_used) *radius_used = radius;
    int size = 2 * radius + 1;
    double *kernel = calloc((size_t)size * (size_t)size, sizeof(double));
    if (kernel == NULL) return pb_set_error(err, PB_ERR_NOMEM, "no memory for a %d x %d PSF kernel", size, size);
    for (int dy = -radius; dy <= radius; ++dy)
        for (int dx = -radius; dx <= radius; ++dx) {
            if ((long long)dx * dx + (long long)dy * dy > (long long)radius * radius) continue;
            size_t k = (size_t)size * (size_t)(radius + dy) + (size_t)(radius + dx);
            kernel[k] = type == PB_PSF_GAUSS ? gauss_over_pixel(dx, dy, fwhm_pixels) : fiber_over_pixel(dx, dy, g);
        }

    double total_lost = 0.0;
    for (size_t i = 0; i < pixels; ++i) {
        double value = in[i];
        if (value <= 0.0) continue;
        int x0 = (int)(i % (size_t)fpixels), y0 = (int)(i / (size_t)fpixels);
        int r = user_radius;
        if (r == 0) r = psf_auto_radius(type, value, fwhm_pixels, g, 0);
        if (r == 0) r = 1;
        if (r > maxwidth) r = maxwidth;
        if (r > radius) r = radius; /* never beyond the kernel (the reference reads past it) */
        double lost;
        if (type == PB_PSF_GAUSS) {
            double q = r;
            q = q / fwhm_pixels;
            q = q * q;
            lost = value * exp(-log(16) * q);
        } else {
            lost = value * g / sqrt(g * g + (double)r * r);
        }
        total_lost += lost;
        for (int dx = -r; dx <= r; ++dx)
            for (int dy = -r; dy <= r; ++dy) {
                size_t k = (size_t)size * (size_t)(radius + dy) + (size_t)(radius + dx);
                if (kernel[k] == 0.0) continue;
                if ((long long)dx * dx + (long long)dy * dy > (long long)r * r) continue;
                int x = x0 + dx, y = y0 + dy;
                /* as in the reference, x == fpixels lands on the first pixel of the next row */
                if (x < 0 || x > fpixels || y < 0 || y > spixels) continue;
                long long j = (long long)y * fpixels + x;
                if (j < 0 || j >= (long long)pixels) continue;
                out[j] = (float)(out[j] + value * kernel[k]);
            }
    }
    free(kernel);
    /* the photons beyond the radius come back evenly everywhere */
    double even = total_lost / (double)pixels;
    for (size_t i = 0; i < pixels; ++i) out[i] = (float)(out[i] + even);
    if (lost_total) *lost_total = total_lost;
    return PB_OK;
}

int pb_response(const float *photons, int fpixels, int spixels, const int roi[4], const pb_response_params *p,
                float *signal, uint16_t *out16, uint32_t *out32, pb_response_stats *stats, pb_error *err)
{
    if (photons == NULL || p == NULL || fpixels <= 0 || spixels <= 0)
        return pb_set_error(err, PB_ERR_INVALID, "the detector response needs an image and its parameters");
    if (p->flicker < 0 || p->calibration < 0 || p->readout_noise < 0)
        return pb_set_error(err, PB_ERR_INVALID, "noise levels must not be negative");
    if (p->psf_type != PB_PSF_NONE && p->psf_type != PB_PSF_GAUSS && p->psf_type != PB_PSF_FIBER)
        return pb_set_error(err, PB_ERR_INVALID, "unknown point-spread function type %d", p->psf_type);
    int xmin = 0, xmax = fpixels, ymin = 0, ymax = spixels;
    if (roi != NULL) {
        xmin = roi[0] < 0 ? 0 : roi[0];
        xmax = roi[1] < 0 ? fpixels : roi[1];
        ymin = roi[2] < 0 ? 0 : roi[2];
        ymax = roi[3] < 0 ? spixels : roi[3];
    }
    size_t pixels = (size_t)fpixels * (size_t)spixels;
    float *counted = malloc(pixels * sizeof(float));
    if (counted == NULL) return pb_set_error(err, PB_ERR_NOMEM, "no memory for a %zu-pixel image", pixels);

    resp_streams s;
    rng_seed(&s.shared, p->seed);
    s.state[STREAM_PHOTONS] = -p->seed;
    s.state[STREAM_CALIB] = -p->calib_seed;
    s.own_calib = p->calib_independent != 0;
    rng_seed(&s.calib, p->calib_seed);

    pb_response_stats st = {0};
    double total = 0.0;
    for (int y = 0; y < spixels; ++y)
        for (int x = 0; x < fpixels; ++x) {
            size_t i = (size_t)y * fpixels + x;
            if (x < xmin || x > xmax || y < ymin || y > ymax) {
                counted[i] = 0.0f;
                continue;
            }
            double expected = photons[i];
            if (p->flicker > 0.0) expected *= (1.0 + p->flicker * stream_gauss(&s, STREAM_PHOTONS));
            if (p->calibration > 0.0) expected *= (1.0 + p->calibration * stream_gauss(&s, STREAM_CALIB));
            counted[i] = stream_poisson(&s, (float)expected);
            total += counted[i];
        }
    st.photons_before_psf = total;

    if (p->psf_type != PB_PSF_NONE && p->psf_fwhm_pixels > 0.0) {
        float *blurred = malloc(pixels * sizeof(float));
        if (blurred == NULL) {
            free(counted);
            return pb_set_error(err, PB_ERR_NOMEM, "no memory for a %zu-pixel image", pixels);
        }
        int code = pb_response_psf(counted, fpixels, spixels, p->psf_type, p->psf_fwhm_pixels, p->psf_radius,
                                   blurred, &st.lost_photons, &st.psf_radius, err);
        free(counted);
        if (code != PB_OK) {
            free(blurred);
            return code;
        }
        counted = blurred;
        st.psf_applied = 1;
    }

    total = 0.0;
    for (int y = 0; y < spixels; ++y)
        for (int x = 0; x < fpixels; ++x) {
            size_t i = (size_t)y * fpixels + x;
            int inside = !(x < xmin || x > xmax || y < ymin || y > ymax);
            if (signal) signal[i] = counted[i];
            if (!inside) {
                if (out16) out16[i] = 0;
                if (out32) out32[i] = 0;
                continue;
            }
            total += counted[i];
            double adu = counted[i] * p->gain + p->adc_offset;
            if (p->readout_noise > 0.0) adu += p->readout_noise * stream_gauss(&s, STREAM_PHOTONS);
            /* a negative value is cast to 0 (the reference's cast of a negative number is undefined) */
            if (adu < 0.0) adu = 0.0;
            if (adu > RESP_MAX32) {
                adu = RESP_MAX32;
                ++st.overloads32;
            }
            if (out32) out32[i] = (uint32_t)adu;
            if (adu > RESP_MAX16) {
                adu = RESP_MAX16;
                ++st.overloads16;
            }
            if (out16) out16[i] = (uint16_t)adu;
        }
    st.photons = total;
    free(counted);
    if (stats) *stats = st;
    return PB_OK;
}
