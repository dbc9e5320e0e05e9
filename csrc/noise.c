/*
 * Photon-counting noise: a Poisson deviate per pixel drawn from one stream in
 * file order, exactly as the reference draws them.
 */
#include "internal.h"

/* the largest count an unsigned 16-bit pixel holds */
#define PB_NOISE_MAX 65535.0

int pb_noise(const float *image, int fpixels, int spixels, const int roi[4], long seed, double adc_offset,
             uint16_t *out, double *photons, long *overloads, pb_error *err)
{
    if (image == NULL || out == NULL || fpixels <= 0 || spixels <= 0)
        return pb_set_error(err, PB_ERR_INVALID, "noise needs an image and an output buffer");
    int xmin = 0, xmax = fpixels, ymin = 0, ymax = spixels;
    if (roi != NULL) {
        xmin = roi[0] < 0 ? 0 : roi[0];
        xmax = roi[1] < 0 ? fpixels : roi[1];
        ymin = roi[2] < 0 ? 0 : roi[2];
        ymax = roi[3] < 0 ? spixels : roi[3];
    }
    pb_rng rng;
    rng_seed(&rng, seed);
    double total = 0.0;
    long over = 0;
    for (int s = 0; s < spixels; ++s)
        for (int f = 0; f < fpixels; ++f) {
            size_t idx = (size_t)s * fpixels + f;
            if (f < xmin || f > xmax || s < ymin || s > ymax) {
                out[idx] = 0;
                continue;
            }
            double counts = rng_poisson(&rng, image[idx]);
            total += counts;
            counts += adc_offset;
            if (counts > PB_NOISE_MAX) {
                counts = PB_NOISE_MAX;
                ++over;
            }
            out[idx] = (uint16_t)counts;
        }
    if (photons) *photons = total;
    if (overloads) *overloads = over;
    return PB_OK;
}
