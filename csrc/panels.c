/*
 * The detector as a list of panels: the one panel the detector flags define, or
 * panels given explicitly, each placed like a CUSTOM-convention detector with an
 * explicit origin; the data array that holds them, the region of interest over
 * it and the (panel, row) work units of the pixel loop.
 */
#include "internal.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the most pixels the data array may have (its indices must fit an int) */
#define PB_MAX_DATA_PIXELS 2.0e9
/* the most explicit panels (their overlap check compares every pair) */
#define PB_MAX_PANELS 16384
/* fast and slow axes closer to parallel than this (|f x s| of the unit vectors) are refused */
#define PB_MIN_AXIS_SINE 1e-9

static void copy_name(char dst[32], const char *src)
{
    size_t n = 0;
    if (src != NULL)
        while (n < 31 && src[n] != '\0') ++n;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* panel geometry from a resolved single-panel geometry */
static void panel_from_geometry(const pb_geometry *g, const char *name, int data_fast, int data_slow,
                                pb_panel_geometry *pg)
{
    memset(pg, 0, sizeof *pg);
    copy_name(pg->name, name);
    pg->fpixels = g->fpixels;
    pg->spixels = g->spixels;
    pg->data_fast = data_fast;
    pg->data_slow = data_slow;
    pg->pixel_size = g->pixel_size;
    v3_copy(g->pix0, pg->pix0);
    v3_copy(g->fdet, pg->fdet);
    v3_copy(g->sdet, pg->sdet);
    v3_copy(g->odet, pg->odet);
    pg->distance = g->distance;
    pg->close_distance = g->close_distance;
    pg->Fbeam = g->Fbeam;
    pg->Sbeam = g->Sbeam;
    pg->Fclose = g->Fclose;
    pg->Sclose = g->Sclose;
}

/* "panel i (name): " in front of the message err holds */
static int panel_error(pb_error *err, int code, int i, const pb_panel *panel)
{
    if (err == NULL) return code;
    char msg[sizeof err->message];
    memcpy(msg, err->message, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    return pb_set_error(err, code, "panel %d (%.31s): %s", i, panel->name, msg);
}

static int finite3(const double v[3])
{
    return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]);
}

/* what can be said about one panel before it is placed */
static int check_panel(const pb_panel *pn, int i, pb_error *err)
{
    const char *name = pn->name;
    if (pn->fpixels <= 0 || pn->spixels <= 0)
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): pixel counts must be positive (got %d x %d)", i,
                            name, pn->fpixels, pn->spixels);
    if (!(pn->pixel_size > 0.0) || !isfinite(pn->pixel_size))
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): pixel size must be positive (got %g m)", i, name,
                            pn->pixel_size);
    if (pn->data_fast < 0 || pn->data_slow < 0)
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): data-array position (%d, %d) is negative", i,
                            name, pn->data_fast, pn->data_slow);
    if (!finite3(pn->origin) || !finite3(pn->fdet) || !finite3(pn->sdet))
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): origin and axes must be finite", i, name);
    double f[3], s[3], fxs[3];
    if (v3_unit(pn->fdet, f) == 0.0)
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): fast axis is zero", i, name);
    if (v3_unit(pn->sdet, s) == 0.0)
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): slow axis is zero", i, name);
    v3_cross(f, s, fxs);
    if (!(v3_norm(fxs) >= PB_MIN_AXIS_SINE))
        return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s): fast and slow axes are parallel", i, name);
    return PB_OK;
}

/* two panels' rectangles in the data array share a pixel */
static int overlap(const pb_panel *a, const pb_panel *b)
{
    long long af1 = (long long)a->data_fast + a->fpixels, as1 = (long long)a->data_slow + a->spixels;
    long long bf1 = (long long)b->data_fast + b->fpixels, bs1 = (long long)b->data_slow + b->spixels;
    return a->data_fast < bf1 && b->data_fast < af1 && a->data_slow < bs1 && b->data_slow < as1;
}

/* A panel seen from behind (fs x ss pointing towards the sample, as real geometry files have them)
   takes the opposite normal: the normal points away from the sample, so that the close distance,
   every solid angle and the sensor's depth come out as for a panel seen from the front.  The
   distance along the beam is unchanged (both its close distance and its cosine change sign). */
static void face_the_sample(pb_geometry *g)
{
    if (g->close_distance < 0.0) {
        v3_scale(g->odet, -1.0, g->odet);
        g->close_distance = -g->close_distance;
    }
}

/* The detector the flags define faces away from the sample (its normal, fdet x sdet or -odet_vector,
   points towards it, so that every solid angle would be negative): name the flags that turned it. */
static int facing_away(const pb_config *cfg, const pb_geometry *g, pb_error *err)
{
    const pb_detector *d = &cfg->detector;
    char flags[160] = "";
    size_t used = 0;
    const struct {
        int set;
        const char *name;
        double value;
    } turns[] = {
        {d->twotheta != 0.0, "-twotheta", d->twotheta * PB_RAD2DEG},
        {d->rotx != 0.0, "-detector_rotx", d->rotx * PB_RAD2DEG},
        {d->roty != 0.0, "-detector_roty", d->roty * PB_RAD2DEG},
        {d->rotz != 0.0, "-detector_rotz", d->rotz * PB_RAD2DEG},
    };
    for (size_t i = 0; i < sizeof turns / sizeof turns[0]; ++i)
        if (turns[i].set && used < sizeof flags)
            used += (size_t)snprintf(flags + used, sizeof flags - used, "%s%s %g", used ? ", " : "", turns[i].name,
                                     turns[i].value);
    if (used == 0)
        snprintf(flags, sizeof flags, "%s", d->has_pix0 ? "-pix0_vector" : "-fdet_vector/-sdet_vector/-odet_vector");
    const char *hint = g->pivot == PB_PIVOT_BEAM && d->twotheta != 0.0
                           ? " (the detector turns about the beam spot here, pivot BEAM: two-theta must stay within "
                             "90 degrees)"
                           : "";
    return pb_set_error(err, PB_ERR_INVALID,
                        "%s: the detector faces away from the sample, which is %g mm behind its plane: every solid "
                        "angle would be negative%s",
                        flags, -1000.0 * g->close_distance, hint);
}

/* the configuration that places panel pn exactly as a one-panel CUSTOM detector
   with -pix0_vector would be placed, with the beam, polarization, spindle and
   two-theta axes of the configured convention */
static void panel_config(const pb_config *cfg, const pb_panel *pn, pb_config *out)
{
    *out = *cfg;
    pb_detector *d = &out->detector;
    int conv = cfg->detector.convention;
    if (conv != PB_CONVENTION_CUSTOM) {
        double axes[PB_N_AXES][3];
        if (pb_convention_axes(conv, axes, NULL) == PB_OK) {
            v3_copy(axes[PB_AXIS_BEAM], out->beam.beam_vector);
            v3_copy(axes[PB_AXIS_POLAR], out->beam.polar_vector);
            v3_copy(axes[PB_AXIS_SPINDLE], out->crystal.spindle_axis);
            v3_copy(axes[PB_AXIS_TWOTHETA], d->twotheta_axis);
        }
    }
    d->convention = PB_CONVENTION_CUSTOM;
    d->pivot = PB_PIVOT_SAMPLE;
    d->fpixels = pn->fpixels;
    d->spixels = pn->spixels;
    d->pixel_size = pn->pixel_size;
    v3_copy(pn->fdet, d->fdet_vector);
    v3_copy(pn->sdet, d->sdet_vector);
    /* not a unit vector: the normal is rebuilt as unit(unit(fdet) x unit(sdet)) */
    d->odet_vector[0] = d->odet_vector[1] = d->odet_vector[2] = 0.0;
    d->has_pix0 = 1;
    v3_copy(pn->origin, d->pix0_vector);
}

static int explicit_panels(pb_plan *p, const pb_config *cfg, const pb_panel *panels, int n, pb_error *err)
{
    pb_geometry *g = &p->geo;
    int conv = cfg->detector.convention;
    if (conv < PB_CONVENTION_CUSTOM || conv > PB_CONVENTION_DENZO)
        return pb_set_error(err, PB_ERR_INVALID, "unknown detector convention %d", conv);
    if (n > PB_MAX_PANELS)
        return pb_set_error(err, PB_ERR_INVALID, "-geom/-expt: %d panels are too many (at most %d)", n, PB_MAX_PANELS);
    long long data_f = 0, data_s = 0;
    for (int i = 0; i < n; ++i) {
        if (check_panel(&panels[i], i, err) != PB_OK) return PB_ERR_INVALID;
        long long f1 = (long long)panels[i].data_fast + panels[i].fpixels;
        long long s1 = (long long)panels[i].data_slow + panels[i].spixels;
        if (f1 > data_f) data_f = f1;
        if (s1 > data_s) data_s = s1;
    }
    if ((double)data_f * (double)data_s > PB_MAX_DATA_PIXELS)
        return pb_set_error(err, PB_ERR_INVALID, "a data array of %lld x %lld pixels is impossible", data_f, data_s);
    int rc = plan_reserve(p, (double)sizeof *p->panels * n, err, "%d detector panels", n);
    if (rc != PB_OK) return rc;
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j)
            if (overlap(&panels[i], &panels[j]))
                return pb_set_error(err, PB_ERR_INVALID, "panel %d (%.31s) overlaps panel %d (%.31s) in the data array",
                                    j, panels[j].name, i, panels[i].name);

    p->panels = calloc((size_t)n, sizeof *p->panels);
    if (p->panels == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for %d panels", n);
    p->n_panels = n;
    for (int i = 0; i < n; ++i) {
        pb_config pc;
        panel_config(cfg, &panels[i], &pc);
        /* panel 0 fills the plan's geometry; the others a scratch copy */
        pb_geometry scratch;
        memset(&scratch, 0, sizeof scratch);
        pb_geometry *gi = i == 0 ? g : &scratch;
        int code = geometry_resolve(&pc, gi, err);
        if (code != PB_OK) return panel_error(err, code, i, &panels[i]);
        face_the_sample(gi);
        panel_from_geometry(gi, panels[i].name, panels[i].data_fast, panels[i].data_slow, &p->panels[i]);
    }
    /* the convention supplied beam, polarization and spindle; the origins are fixed */
    g->convention = cfg->detector.convention;
    g->pivot = PB_PIVOT_SAMPLE;
    g->data_fpixels = (int)data_f;
    g->data_spixels = (int)data_s;
    return PB_OK;
}

int detector_resolve(pb_plan *p, const pb_config *cfg, const pb_inputs *in, pb_error *err)
{
    pb_geometry *g = &p->geo;
    int n = in != NULL ? in->n_panels : 0;
    if (n < 0 || (n > 0 && in->panels == NULL))
        return pb_set_error(err, PB_ERR_INPUT, "panel list of %d panels is missing", n);
    if (n == 0) {
        /* the panel the detector configuration defines */
        int code = geometry_resolve(cfg, g, err);
        if (code != PB_OK) return code;
        if (g->close_distance < 0.0) return facing_away(cfg, g, err);
        p->panels = calloc(1, sizeof *p->panels);
        if (p->panels == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the panel");
        p->n_panels = 1;
        panel_from_geometry(g, "p0", 0, 0, &p->panels[0]);
        g->data_fpixels = g->fpixels;
        g->data_spixels = g->spixels;
    } else {
        int code = explicit_panels(p, cfg, in->panels, n, err);
        if (code != PB_OK) return code;
    }
    g->n_panels = p->n_panels;

    /* region of interest over the data array */
    const int *roi = cfg->detector.roi;
    g->roi[0] = roi[0] < 0 ? 0 : roi[0];
    g->roi[1] = roi[1] < 0 ? g->data_fpixels : roi[1];
    g->roi[2] = roi[2] < 0 ? 0 : roi[2];
    g->roi[3] = roi[3] < 0 ? g->data_spixels : roi[3];

    /* work units: every row of every panel */
    p->unit_start = malloc(sizeof *p->unit_start * ((size_t)p->n_panels + 1));
    if (p->unit_start == NULL) return pb_set_error(err, PB_ERR_NOMEM, "out of memory for the work units");
    int units = 0;
    for (int i = 0; i < p->n_panels; ++i) {
        p->unit_start[i] = units;
        units += p->panels[i].spixels; /* no overlap: at most the data array's pixels */
    }
    p->unit_start[p->n_panels] = units;
    return PB_OK;
}

int panel_at(const pb_plan *p, int f, int s)
{
    for (int i = 0; i < p->n_panels; ++i) {
        const pb_panel_geometry *pg = &p->panels[i];
        if (f >= pg->data_fast && f - pg->data_fast < pg->fpixels && s >= pg->data_slow &&
            s - pg->data_slow < pg->spixels)
            return i;
    }
    return -1;
}

const pb_panel_geometry *pb_plan_panels(const pb_plan *plan, int *n)
{
    if (n) *n = plan ? plan->n_panels : 0;
    return plan ? plan->panels : NULL;
}
