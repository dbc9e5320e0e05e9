/*
 * pybragg: C engine for absolute-scale diffraction images of small crystals.
 *
 * The one public header of the library.  Everything is in SI units (metres,
 * radians, photons per square metre) unless a field says otherwise.  The
 * library keeps no global state, never prints and never exits: every call
 * reports failure through its return code and a pb_error message.
 *
 * Life cycle:
 *   pb_config cfg; pb_config_init(&cfg);      defaults, as the reference has them
 *   ... set fields ...
 *   pb_plan *plan = pb_plan_create(&cfg, &inputs, &err);   resolve geometry,
 *                                               sources, mosaic domains
 *   pb_plan_geometry(plan) / pb_plan_sources(plan, ...) / pb_plan_mosaic(...)
 *   pb_render(plan, image, &stats, &opts, &err);           the pixel loop
 *   pb_noise(...);                                          Poisson image
 *   pb_plan_free(plan);
 */
#ifndef PYBRAGG_H
#define PYBRAGG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PB_API marks the library's public functions: the only symbols the shared
   library exports (it is built with hidden visibility by default). */
#if defined(_WIN32) || defined(__CYGWIN__)
#ifdef PB_BUILDING_LIBRARY
#define PB_API __declspec(dllexport)
#else
#define PB_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define PB_API __attribute__((visibility("default")))
#else
#define PB_API
#endif

#define PB_VERSION_MAJOR 0
#define PB_VERSION_MINOR 1

/* return codes */
enum {
    PB_OK = 0,
    PB_ERR_INVALID = 1, /* impossible or inconsistent configuration */
    PB_ERR_INPUT = 2,   /* input arrays do not fit the configuration */
    PB_ERR_NOMEM = 3,   /* out of memory */
    PB_ERR_LIMIT = 4,   /* the input needs more memory than pb_inputs.memory_limit allows */
    PB_ERR_CANCELLED = 5 /* pb_render_options.cancel was set: the render stopped early */
};

/* detector conventions: each fixes beam, detector, polarization, spindle and
   two-theta axes, how Xbeam/Ybeam map onto the detector and the pivot */
enum {
    PB_CONVENTION_CUSTOM = 0,
    PB_CONVENTION_ADXV = 1,
    PB_CONVENTION_MOSFLM = 2,
    PB_CONVENTION_XDS = 3,
    PB_CONVENTION_DIALS = 4,
    PB_CONVENTION_DENZO = 5
};

/* the axes a convention fixes, in the order pb_convention_axes writes them */
enum {
    PB_AXIS_BEAM = 0,     /* direction of the beam's travel */
    PB_AXIS_FDET = 1,     /* detector fast axis */
    PB_AXIS_SDET = 2,     /* detector slow axis */
    PB_AXIS_ODET = 3,     /* detector normal */
    PB_AXIS_TWOTHETA = 4, /* two-theta rotation axis */
    PB_AXIS_POLAR = 5,    /* polarization (E-vector) */
    PB_AXIS_SPINDLE = 6,  /* spindle */
    PB_N_AXES = 7
};

/* what stays fixed when the detector is rotated */
enum { PB_PIVOT_SAMPLE = 0, PB_PIVOT_BEAM = 1 };

/* lattice transform (spot shape) */
enum { PB_SHAPE_SQUARE = 0, PB_SHAPE_ROUND = 1, PB_SHAPE_GAUSS = 2, PB_SHAPE_TOPHAT = 3 };

/* crystal orientation source */
enum { PB_MISSET_NONE = 0, PB_MISSET_ANGLES = 1, PB_MISSET_RANDOM = 2 };

/* Unset floating-point fields are NaN; unset counts are <= 0 (or -1 where
   noted).  pb_config_init() writes the reference defaults. */
typedef struct pb_crystal {
    int has_cell;           /* 1: unit cell given in cell[] */
    double cell[6];         /* a, b, c (m); alpha, beta, gamma (rad) */
    int has_matrix;         /* 1: reciprocal vectors given (MOSFLM matrix / lambda) */
    double a_star[3];       /* reciprocal vectors (1/m) */
    double b_star[3];
    double c_star[3];
    int misset_mode;        /* PB_MISSET_* */
    double misset[3];       /* rotations about lab x, y, z (rad) */
    long misset_seed;       /* seed for -misset random, as given (> 0 typical) */
    double N[3];            /* unit cells along a, b, c */
    double sample_size[3];  /* crystal size along a, b, c (m); > 0 overrides N */
    int shape;              /* PB_SHAPE_* */
    double fudge;           /* scale of the lattice-transform radius */
    double default_F;       /* structure factor outside the table */
    int interpolate;        /* -1 auto (on when any N <= 2), 0 off, 1 tricubic */
    double mosaic_spread;   /* isotropic mosaic spread (rad); NaN unset */
    int mosaic_domains;     /* number of domains; <= 0 unset */
    long mosaic_seed;       /* as given; default 12345678 */
    double phi0;            /* spindle start (rad) */
    double osc;             /* oscillation range (rad); NaN unset */
    double phistep;         /* phi step (rad); NaN unset */
    int phisteps;           /* number of phi steps; <= -1 unset */
    double spindle_axis[3]; /* used by the CUSTOM convention */
} pb_crystal;

typedef struct pb_beam {
    double lambda0;         /* central wavelength (m) */
    double dispersion;      /* full spectral width, delta-lambda/lambda (fraction) */
    int dispsteps;          /* wavelengths across it; <= 0 unset */
    double hdivrange;       /* horizontal divergence (rad); NaN unset */
    double hdivstep;        /* (rad); NaN unset */
    int hdivsteps;          /* <= 0 unset */
    double vdivrange;
    double vdivstep;
    int vdivsteps;
    int round_div;          /* 1: cut the divergence raster to an ellipse */
    double beam_vector[3];  /* direction of travel (CUSTOM convention) */
    double polar_vector[3]; /* E-vector (CUSTOM convention) */
    double polarization;    /* Kahn factor */
    int nopolar;            /* 1: polarization factor 1 */
    double fluence;         /* photons/m^2 */
    double flux;            /* photons/s; > 0 with exposure and beamsize sets fluence */
    double exposure;        /* s */
    double beamsize;        /* m */
    double water_size;      /* water background path (m) */
} pb_beam;

typedef struct pb_detector {
    int convention;         /* PB_CONVENTION_* */
    int pivot;              /* PB_PIVOT_*; conventions other than CUSTOM impose their own */
    int fpixels;            /* pixels along fast axis; <= 0: from detsize_f */
    int spixels;            /* pixels along slow axis; <= 0: from detsize_s */
    double detsize_f;       /* m */
    double detsize_s;       /* m */
    double pixel_size;      /* m */
    double distance;        /* sample to beam spot along the beam (m) */
    double close_distance;  /* sample to detector plane (m); NaN unset */
    double Xbeam, Ybeam;    /* beam centre in the convention's frame (m); NaN unset */
    double Xclose, Yclose;  /* near point (m); NaN unset */
    double ORGX, ORGY;      /* XDS origin (pixels); NaN unset */
    double fdet_vector[3];  /* CUSTOM convention axes */
    double sdet_vector[3];
    double odet_vector[3];
    double twotheta_axis[3];
    int has_pix0;           /* 1: pix0_vector is the detector origin before rotations */
    double pix0_vector[3];  /* m */
    double rotx, roty, rotz;/* detector rotations about lab x, y, z (rad) */
    double twotheta;        /* rotation about twotheta_axis (rad) */
    double thick;           /* sensor thickness (m) */
    double mu;              /* attenuation coefficient (1/m); NaN unset */
    int thicksteps;         /* layers; <= 0 unset */
    int curved;             /* 1: every pixel at the same distance */
    int point_pixel;        /* 1: solid angle 1/R^2 (no obliquity) */
    int oversample;         /* sub-pixels per axis; <= 0 auto */
    int oversample_thick;   /* recompute capture fraction per sub-pixel */
    int oversample_polar;   /* recompute polarization per sub-pixel */
    int oversample_omega;   /* recompute solid angle per sub-pixel */
    double dmin;            /* resolution cut-off (m); 0 off */
    int roi[4];             /* xmin, xmax, ymin, ymax (pixels, inclusive); -1 unset */
} pb_detector;

typedef struct pb_config {
    pb_crystal crystal;
    pb_beam beam;
    pb_detector detector;
} pb_config;

/* One flat panel of a detector given panel by panel (pb_inputs.panels).  Each is
   placed like a CUSTOM-convention detector with an explicit origin (-pix0_vector):
   its normal is fdet x sdet; the detector rotations (rotx, roty, rotz, twotheta)
   rotate its origin and axes about the sample; beam, polarization and spindle come
   from the configuration's convention. */
typedef struct pb_panel {
    char name[32];          /* for messages (NUL-terminated) */
    int fpixels, spixels;   /* pixels along the fast and slow axes (> 0) */
    double pixel_size;      /* m (> 0) */
    double origin[3];       /* corner of the first pixel (pix0) before detector rotations (m) */
    double fdet[3];         /* fast axis (normalised by the plan) */
    double sdet[3];         /* slow axis (not parallel to fdet) */
    int data_fast, data_slow; /* where the first pixel sits in the detector's data array */
} pb_panel;

/* Arrays that come from files.  Pointers may be NULL. */
typedef struct pb_inputs {
    const double *fhkl;     /* nh*nk*nl structure factors, [h-h_min][k-k_min][l-l_min] */
    int h_min, k_min, l_min;
    int nh, nk, nl;         /* 0 when there is no table */
    const double *sources;  /* n_sources x 5: X, Y, Z (m), weight, lambda (m); NaN = default */
    int n_sources;
    const uint8_t *mask;    /* data_fpixels*data_spixels, 0 = do not render; NULL = all */
    int mask_fpixels, mask_spixels;
    /* the detector's panels; n_panels 0: one panel from the detector configuration */
    const pb_panel *panels;
    int n_panels;
    /* bytes the plan may allocate for what grows with the input (sources, mosaic domains,
       orientations, panels, the table and mask copies, the image and the render's buffers),
       checked before each allocation; <= 0 (or NaN): no limit.  Over it: PB_ERR_LIMIT. */
    double memory_limit;
} pb_inputs;

/* One panel as the plan resolved it (after the detector rotations). */
typedef struct pb_panel_geometry {
    char name[32];
    int fpixels, spixels;
    int data_fast, data_slow;   /* position of its first pixel in the data array */
    double pixel_size;
    double pix0[3];             /* corner of its first pixel (m) */
    double fdet[3], sdet[3], odet[3];
    double distance;            /* sample to its plane along the beam (m) */
    double close_distance;      /* sample to its plane along its normal (m) */
    double Fbeam, Sbeam;        /* beam spot along fast and slow from pix0 (m) */
    double Fclose, Sclose;      /* near point along fast and slow from pix0 (m) */
    int oversample;             /* sub-pixels per pixel edge */
    int64_t steps;              /* sources * domains * phisteps * oversample^2 */
} pb_panel_geometry;

/* Everything the plan derived from the configuration. */
typedef struct pb_geometry {
    int convention, pivot;
    int fpixels, spixels;
    double pixel_size, detsize_f, detsize_s;
    double distance, close_distance;
    double Xbeam, Ybeam, Fbeam, Sbeam;
    double Xclose, Yclose, Fclose, Sclose;
    double ORGX, ORGY;
    double dials_origin[3];     /* mm, as the reference reports it */
    double fdet[3], sdet[3], odet[3];
    double beam[3], polar[3], vert[3], spindle[3], twotheta_axis[3];
    double pix0[3];             /* detector origin after rotations (m) */
    double twotheta, rotx, roty, rotz;
    /* crystal */
    double a[3], b[3], c[3];    /* real-space axes at phi=0 (m) */
    double a_star[3], b_star[3], c_star[3]; /* reciprocal axes (1/Angstrom) */
    double cell[6];             /* a, b, c (Angstrom), angles (deg) */
    double recip_cell[6];       /* 1/Angstrom, deg */
    double volume;              /* Angstrom^3 */
    double misset[3];           /* applied misset (rad) */
    int misset_applied;
    double N[3];
    double xtal_size[3];        /* m */
    int shape;
    double fudge;
    int interpolate;
    /* sampling */
    int oversample, recommended_oversample;
    int thicksteps;
    double thick, thickstep, mu;
    int phisteps;
    double phi0, osc, phistep;
    int mosaic_domains;
    double mosaic_spread;
    int sources, divsteps, hdivsteps, vdivsteps, dispsteps;
    double hdivrange, hdivstep, vdivrange, vdivstep, dispersion, dispstep;
    double lambda0;
    double fluence, flux, exposure, beamsize;
    double water_size, I_bg;
    double polarization;
    int nopolar, curved, point_pixel;
    int oversample_thick, oversample_polar, oversample_omega;
    double dmin;
    int roi[4];
    int64_t steps;              /* sources * domains * phisteps * oversample^2 */
    /* The detector fields above describe panel 0.  The image is the data array of
       data_spixels x data_fpixels pixels holding every panel (for a detector without
       explicit panels: the one panel, data_fpixels == fpixels, data_spixels == spixels). */
    int n_panels;
    int data_fpixels, data_spixels;
} pb_geometry;

typedef struct pb_stats {
    double max_I;               /* brightest pixel */
    double max_I_fast, max_I_slow; /* its last sub-pixel position in its panel (m) */
    long max_I_index;           /* slow*data_fpixels + fast; -1 when nothing rendered */
    double sum, sumsqr;         /* over rendered pixels */
    long n;                     /* rendered pixels */
    double mean, rms, rmsd;     /* as the reference reports them */
    double omega_sum;           /* summed solid angle over sub-pixels */
    long interpolation_fallbacks; /* evaluations that fell back to nearest F */
} pb_stats;

typedef struct pb_error {
    int code;
    char message[512];
} pb_error;

/* optional per-call settings of pb_render */
typedef struct pb_render_options {
    int nthreads;               /* <= 0: OpenMP default */
    volatile long *progress;    /* if set, incremented once per finished panel row */
    int row_begin, row_end;     /* data-array rows to render; row_end <= 0: all */
    int code_path;              /* PB_PATH_*: machine code of the pixel kernel; 0 (auto): the
                                   fastest this processor runs.  Every path gives the same image. */
    volatile int *cancel;       /* if set and *cancel becomes non-zero (from another thread), the
                                   rows not yet started are skipped and the call returns
                                   PB_ERR_CANCELLED; the image is then incomplete */
} pb_render_options;

/* the most threads pb_render_options.nthreads may ask for */
#define PB_MAX_THREADS 4096

/* code paths of the pixel kernel (pb_render_options.code_path) */
enum {
    PB_PATH_AUTO = 0,
    PB_PATH_PORTABLE = 1, /* plain C, any processor */
    PB_PATH_AVX2 = 2      /* x86-64 AVX2 (GCC or Clang on x86-64 only) */
};

/* 1 if this build and this processor can run code path `path` (PB_PATH_*), else 0 */
PB_API int pb_code_path_supported(int path);

typedef struct pb_plan pb_plan;

/* Physical and numerical constants of the engine, for other engines to share. */
typedef struct pb_constants {
    double r_e_sqr;           /* Thomson cross-section, classical electron radius squared (m^2) */
    double avogadro;          /* Avogadro's number (1/mol) */
    double water_F;           /* structure factor of a water molecule (background) */
    double water_mw;          /* molecular weight of water (g/mol) */
    double water_density;     /* density of water (g/m^3) */
    double round_scale;       /* PB_SHAPE_ROUND: scale of the sphere transform */
    double gauss_scale;       /* PB_SHAPE_GAUSS: F = N exp(-(r*^2 / gauss_scale * fudge)) */
    double tophat_radius_sqr; /* PB_SHAPE_TOPHAT: F = N where r*^2 * fudge < tophat_radius_sqr */
    double source_distance;   /* distance of generated sources from the sample (m) */
    double rad2deg;           /* degrees per radian, exactly as the engine converts */
} pb_constants;

/* One intermediate quantity of a traced pixel (see pb_trace_pixel).  index
   holds the loop position: sensor layer, sub-pixel slow, sub-pixel fast,
   source, phi step, mosaic domain; -1 where the quantity does not depend on it. */
typedef struct pb_trace_record {
    char name[24];
    int index[6];
    int n;                  /* number of values used */
    double values[3];
} pb_trace_record;

/* The engine's constants (static, never NULL). */
PB_API const pb_constants *pb_get_constants(void);

/* The axes of a named convention (PB_CONVENTION_ADXV .. DENZO): axes[PB_AXIS_*],
   unit vectors in the lab frame.  PB_ERR_INVALID for PB_CONVENTION_CUSTOM (its axes
   come from the configuration), an unknown convention or no output array. */
PB_API int pb_convention_axes(int convention, double axes[7][3], pb_error *err);

PB_API void pb_config_init(pb_config *cfg);
PB_API pb_plan *pb_plan_create(const pb_config *cfg, const pb_inputs *inputs, pb_error *err);
PB_API void pb_plan_free(pb_plan *plan);
PB_API const pb_geometry *pb_plan_geometry(const pb_plan *plan);
/* n x 5 array: unit direction from sample to source (x, y, z), weight, lambda (m) */
PB_API const double *pb_plan_sources(const pb_plan *plan, int *n);
/* n x 9 row-major rotation matrices, the first is the identity */
PB_API const double *pb_plan_mosaic(const pb_plan *plan, int *n);
/* the n resolved panels (n >= 1) */
PB_API const pb_panel_geometry *pb_plan_panels(const pb_plan *plan, int *n);

/* Render every panel into image, the data array (data_fpixels*data_spixels floats,
   slow-major); pixels outside the ROI, the mask or every panel are left untouched
   (callers pass a zeroed buffer).  The ROI and the mask are in data-array pixels. */
PB_API int pb_render(const pb_plan *plan, float *image, pb_stats *stats,
                     const pb_render_options *opts, pb_error *err);

/* Evaluate one pixel (fast, slow; data-array coordinates, in the panel that covers
   it: PB_ERR_INVALID where none does) and report its intermediate quantities in
   loop order: detector origin and axes, then per layer and sub-pixel the
   position, diffracted direction, solid angle and capture fraction, per source
   the incident direction, wavelength, scattering vector and polarization, per
   phi step and domain the fractional and nearest h,k,l, the lattice factors,
   F_cell and the running sum, and finally the scale and the pixel value.
   Writes at most `capacity` records; *count receives how many there are.
   The pixel loop of pb_render does not trace and pays nothing for it. */
PB_API int pb_trace_pixel(const pb_plan *plan, int fpixel, int spixel, pb_trace_record *records, int capacity,
                          int *count, double *value, pb_error *err);

/* Statistics of an image rendered for this plan, as pb_render reports them
   (omega_sum and interpolation_fallbacks are left 0).  PB_ERR_INVALID without a plan,
   image or stats, PB_ERR_NOMEM without memory for one row's partial sums per row. */
PB_API int pb_stats_compute(const pb_plan *plan, const float *image, pb_stats *stats, pb_error *err);

/* Poisson noise image as the reference draws it, pixel by pixel in file order
   inside the ROI: out = min(65535, poisson(image) + adc), 0 outside the ROI. */
PB_API int pb_noise(const float *image, int fpixels, int spixels, const int roi[4],
                    long seed, double adc_offset, uint16_t *out,
                    double *photons, long *overloads, pb_error *err);

/* ---- detector response (noisify's physics; response.c) --------------------------
   Per pixel in file order inside the ROI: expected photons times (1 + flicker g1) and
   (1 + calibration g2), a Poisson deviate of that (float), then (after every pixel) the
   point-spread function, then adu = counts * gain + adc_offset + readout_noise g3, cut to
   [0, 2^31 - 1] for 32 bits and [0, 65535] for 16 bits; 0 outside the ROI.  g1, g3 come from
   the stream of `seed`, g2 from that of `calib_seed` (both negated, as typed by the user),
   sharing the generator's shuffle table and Gaussian spare as the reference's do. */
enum { PB_PSF_NONE = 0, PB_PSF_GAUSS = 1, PB_PSF_FIBER = 2 };

typedef struct pb_response_params {
    long seed, calib_seed;  /* as typed: the streams start from -seed, -calib_seed */
    double flicker;         /* fractional source flicker (>= 0) */
    double calibration;     /* fractional per-pixel calibration error (>= 0) */
    double gain;            /* ADU per photon */
    double adc_offset;      /* ADU */
    double readout_noise;   /* ADU rms (>= 0) */
    int psf_type;           /* PB_PSF_* */
    double psf_fwhm_pixels; /* fwhm of the PSF in pixels (<= 0: none) */
    int psf_radius;         /* rendering radius in pixels, 0: automatic */
    int calib_independent;  /* 1: the calibration stream gets a generator of its own, so the
                               error map depends on calib_seed only (0: the reference's sharing) */
} pb_response_params;

typedef struct pb_response_stats {
    double photons_before_psf; /* sum of the Poisson counts */
    double photons;            /* sum of the signal after the PSF */
    double lost_photons;       /* photons beyond the PSF radius, spread back evenly */
    int psf_applied, psf_radius;
    long overloads16, overloads32;
} pb_response_stats;

/* The whole response; signal (photons after noise and PSF), out16 and out32 may be NULL. */
PB_API int pb_response(const float *photons, int fpixels, int spixels, const int roi[4],
                       const pb_response_params *params, float *signal, uint16_t *out16, uint32_t *out32,
                       pb_response_stats *stats, pb_error *err);

/* The point-spread function alone: out = in blurred (fwhm in pixels, radius 0: automatic),
   photons beyond the radius spread evenly; lost_total and radius_used may be NULL. */
PB_API int pb_response_psf(const float *in, int fpixels, int spixels, int type, double fwhm_pixels,
                           int radius, float *out, double *lost_total, int *radius_used, pb_error *err);
/* ---- end of detector response ---- */

/* The reference's uniform generator, exposed for tests: n deviates from seed.
   PB_ERR_INVALID for n < 0 or no output buffer. */
PB_API int pb_random_uniform(long seed, int n, float *out, pb_error *err);

/* ---- amorphous background (nonBragg's physics; background.c) -------------------
   The diffuse scattering of an amorphous sample (water, air, a solvent) from a table of
   F of one molecule against sin(theta)/lambda, times the molecules in the illuminated
   volume, on the plan's panels with its sources, polarization, solid angle, curved or
   point pixels and sub-pixels.  Per pixel: the sum over sub-pixels, sensor layers and
   sources of sign(F) F^2 * polarization * solid angle * source weight * capture fraction
   (each factor evaluated per sub-pixel), times r_e^2 * fluence * molecules / steps with
   steps = sources * oversample^2; F is the cubic (4-point Lagrange) interpolation of
   the table, padded with its end values at +-1e98 and +-1e99. */
typedef struct pb_background {
    double thickness;        /* sample along the beam (m) */
    double width, height;    /* sample across the beam (m); each clipped to the beam size */
    double density;          /* g/m^3 */
    double molecular_weight; /* g/mol */
    double molecules;        /* > 0: number of molecules (the density follows); 0: from density */
    const double *stol;      /* n values of sin(theta)/lambda (1/m), strictly increasing */
    const double *F;         /* n structure factors of one molecule (electrons) */
    int n;                   /* >= 1 */
} pb_background;

/* the sample as the background stage resolves it */
typedef struct pb_background_info {
    double thickness, width, height; /* after clipping by the beam size (m) */
    double volume;                   /* m^3 */
    double density;                  /* g/m^3 */
    double molecules;
    int width_clipped, height_clipped;
} pb_background_info;

/* Resolve the sample of `bg` against the plan's beam size (no rendering). */
PB_API int pb_background_resolve(const pb_plan *plan, const pb_background *bg, pb_background_info *info,
                                  pb_error *err);

/* Add the background to image (the data array, as pb_render): each selected pixel becomes
   image + (float)background in single precision, so rendering it onto a Bragg image equals
   the float sum of the two stages.  stats (may be NULL) describe the resulting image, with
   omega_sum summed over the background's sub-pixels. */
PB_API int pb_render_background(const pb_plan *plan, const pb_background *bg, float *image, pb_stats *stats,
                                const pb_render_options *opts, pb_error *err);
/* ---- end of amorphous background ---- */

PB_API const char *pb_version(void);

#ifdef __cplusplus
}
#endif
#endif
