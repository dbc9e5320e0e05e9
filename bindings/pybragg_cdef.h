/*
 * cffi declarations of csrc/pybragg.h, the engine's one public header.
 *
 * Keep this file in step with the header: cffi compiles it in API mode, so the C
 * compiler checks every function signature and struct field against the real
 * declarations, and the import checks struct sizes, field offsets and enum values.
 * No preprocessor directives other than "#define NAME ..." may appear here.
 */

#define PB_VERSION_MAJOR ...
#define PB_VERSION_MINOR ...

/* return codes */
enum {
    PB_OK = 0,
    PB_ERR_INVALID = 1,
    PB_ERR_INPUT = 2,
    PB_ERR_NOMEM = 3,
    PB_ERR_LIMIT = 4,
    PB_ERR_CANCELLED = 5
};

/* detector conventions */
enum {
    PB_CONVENTION_CUSTOM = 0,
    PB_CONVENTION_ADXV = 1,
    PB_CONVENTION_MOSFLM = 2,
    PB_CONVENTION_XDS = 3,
    PB_CONVENTION_DIALS = 4,
    PB_CONVENTION_DENZO = 5
};

enum {
    PB_AXIS_BEAM = 0,
    PB_AXIS_FDET = 1,
    PB_AXIS_SDET = 2,
    PB_AXIS_ODET = 3,
    PB_AXIS_TWOTHETA = 4,
    PB_AXIS_POLAR = 5,
    PB_AXIS_SPINDLE = 6,
    PB_N_AXES = 7
};

enum { PB_PIVOT_SAMPLE = 0, PB_PIVOT_BEAM = 1 };

enum { PB_SHAPE_SQUARE = 0, PB_SHAPE_ROUND = 1, PB_SHAPE_GAUSS = 2, PB_SHAPE_TOPHAT = 3 };

enum { PB_MISSET_NONE = 0, PB_MISSET_ANGLES = 1, PB_MISSET_RANDOM = 2 };

typedef struct pb_crystal {
    int has_cell;
    double cell[6];
    int has_matrix;
    double a_star[3];
    double b_star[3];
    double c_star[3];
    int misset_mode;
    double misset[3];
    long misset_seed;
    double N[3];
    double sample_size[3];
    int shape;
    double fudge;
    double default_F;
    int interpolate;
    double mosaic_spread;
    int mosaic_domains;
    long mosaic_seed;
    double phi0;
    double osc;
    double phistep;
    int phisteps;
    double spindle_axis[3];
} pb_crystal;

typedef struct pb_beam {
    double lambda0;
    double dispersion;
    int dispsteps;
    double hdivrange;
    double hdivstep;
    int hdivsteps;
    double vdivrange;
    double vdivstep;
    int vdivsteps;
    int round_div;
    double beam_vector[3];
    double polar_vector[3];
    double polarization;
    int nopolar;
    double fluence;
    double flux;
    double exposure;
    double beamsize;
    double water_size;
} pb_beam;

typedef struct pb_detector {
    int convention;
    int pivot;
    int fpixels;
    int spixels;
    double detsize_f;
    double detsize_s;
    double pixel_size;
    double distance;
    double close_distance;
    double Xbeam, Ybeam;
    double Xclose, Yclose;
    double ORGX, ORGY;
    double fdet_vector[3];
    double sdet_vector[3];
    double odet_vector[3];
    double twotheta_axis[3];
    int has_pix0;
    double pix0_vector[3];
    double rotx, roty, rotz;
    double twotheta;
    double thick;
    double mu;
    int thicksteps;
    int curved;
    int point_pixel;
    int oversample;
    int oversample_thick;
    int oversample_polar;
    int oversample_omega;
    double dmin;
    int roi[4];
} pb_detector;

typedef struct pb_config {
    pb_crystal crystal;
    pb_beam beam;
    pb_detector detector;
} pb_config;

typedef struct pb_panel {
    char name[32];
    int fpixels, spixels;
    double pixel_size;
    double origin[3];
    double fdet[3];
    double sdet[3];
    int data_fast, data_slow;
} pb_panel;

typedef struct pb_inputs {
    const double *fhkl;
    int h_min, k_min, l_min;
    int nh, nk, nl;
    const double *sources;
    int n_sources;
    const uint8_t *mask;
    int mask_fpixels, mask_spixels;
    const pb_panel *panels;
    int n_panels;
    double memory_limit;
} pb_inputs;

typedef struct pb_panel_geometry {
    char name[32];
    int fpixels, spixels;
    int data_fast, data_slow;
    double pixel_size;
    double pix0[3];
    double fdet[3], sdet[3], odet[3];
    double distance;
    double close_distance;
    double Fbeam, Sbeam;
    double Fclose, Sclose;
    int oversample;
    int64_t steps;
} pb_panel_geometry;

typedef struct pb_geometry {
    int convention, pivot;
    int fpixels, spixels;
    double pixel_size, detsize_f, detsize_s;
    double distance, close_distance;
    double Xbeam, Ybeam, Fbeam, Sbeam;
    double Xclose, Yclose, Fclose, Sclose;
    double ORGX, ORGY;
    double dials_origin[3];
    double fdet[3], sdet[3], odet[3];
    double beam[3], polar[3], vert[3], spindle[3], twotheta_axis[3];
    double pix0[3];
    double twotheta, rotx, roty, rotz;
    double a[3], b[3], c[3];
    double a_star[3], b_star[3], c_star[3];
    double cell[6];
    double recip_cell[6];
    double volume;
    double misset[3];
    int misset_applied;
    double N[3];
    double xtal_size[3];
    int shape;
    double fudge;
    int interpolate;
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
    int64_t steps;
    int n_panels;
    int data_fpixels, data_spixels;
} pb_geometry;

typedef struct pb_stats {
    double max_I;
    double max_I_fast, max_I_slow;
    long max_I_index;
    double sum, sumsqr;
    long n;
    double mean, rms, rmsd;
    double omega_sum;
    long interpolation_fallbacks;
} pb_stats;

typedef struct pb_error {
    int code;
    char message[512];
} pb_error;

typedef struct pb_render_options {
    int nthreads;
    volatile long *progress;
    int row_begin, row_end;
    int code_path;
    volatile int *cancel;
} pb_render_options;

#define PB_MAX_THREADS ...

enum {
    PB_PATH_AUTO = 0,
    PB_PATH_PORTABLE = 1,
    PB_PATH_AVX2 = 2
};

int pb_code_path_supported(int path);

typedef struct pb_plan pb_plan;

typedef struct pb_constants {
    double r_e_sqr;
    double avogadro;
    double water_F;
    double water_mw;
    double water_density;
    double round_scale;
    double gauss_scale;
    double tophat_radius_sqr;
    double source_distance;
    double rad2deg;
} pb_constants;

typedef struct pb_trace_record {
    char name[24];
    int index[6];
    int n;
    double values[3];
} pb_trace_record;

const pb_constants *pb_get_constants(void);
int pb_convention_axes(int convention, double axes[7][3], pb_error *err);

void pb_config_init(pb_config *cfg);
pb_plan *pb_plan_create(const pb_config *cfg, const pb_inputs *inputs, pb_error *err);
void pb_plan_free(pb_plan *plan);
const pb_geometry *pb_plan_geometry(const pb_plan *plan);
const double *pb_plan_sources(const pb_plan *plan, int *n);
const double *pb_plan_mosaic(const pb_plan *plan, int *n);
const pb_panel_geometry *pb_plan_panels(const pb_plan *plan, int *n);

int pb_render(const pb_plan *plan, float *image, pb_stats *stats,
              const pb_render_options *opts, pb_error *err);

int pb_trace_pixel(const pb_plan *plan, int fpixel, int spixel, pb_trace_record *records, int capacity,
                   int *count, double *value, pb_error *err);

int pb_stats_compute(const pb_plan *plan, const float *image, pb_stats *stats, pb_error *err);

int pb_noise(const float *image, int fpixels, int spixels, const int roi[4],
             long seed, double adc_offset, uint16_t *out,
             double *photons, long *overloads, pb_error *err);

/* ---- detector response (response.c) ---- */
enum { PB_PSF_NONE = 0, PB_PSF_GAUSS = 1, PB_PSF_FIBER = 2 };

typedef struct pb_response_params {
    long seed, calib_seed;
    double flicker;
    double calibration;
    double gain;
    double adc_offset;
    double readout_noise;
    int psf_type;
    double psf_fwhm_pixels;
    int psf_radius;
    int calib_independent;
} pb_response_params;

typedef struct pb_response_stats {
    double photons_before_psf;
    double photons;
    double lost_photons;
    int psf_applied, psf_radius;
    long overloads16, overloads32;
} pb_response_stats;

int pb_response(const float *photons, int fpixels, int spixels, const int roi[4],
                const pb_response_params *params, float *signal, uint16_t *out16, uint32_t *out32,
                pb_response_stats *stats, pb_error *err);

int pb_response_psf(const float *in, int fpixels, int spixels, int type, double fwhm_pixels,
                    int radius, float *out, double *lost_total, int *radius_used, pb_error *err);
/* ---- end of detector response ---- */

int pb_random_uniform(long seed, int n, float *out, pb_error *err);

/* ---- amorphous background (background.c) ---- */
typedef struct pb_background {
    double thickness;
    double width, height;
    double density;
    double molecular_weight;
    double molecules;
    const double *stol;
    const double *F;
    int n;
} pb_background;

typedef struct pb_background_info {
    double thickness, width, height;
    double volume;
    double density;
    double molecules;
    int width_clipped, height_clipped;
} pb_background_info;

int pb_background_resolve(const pb_plan *plan, const pb_background *bg, pb_background_info *info,
                          pb_error *err);
int pb_render_background(const pb_plan *plan, const pb_background *bg, float *image, pb_stats *stats,
                         const pb_render_options *opts, pb_error *err);
/* ---- end of amorphous background ---- */

const char *pb_version(void);
