/*
 * Detector geometry: pixel counts, the six axis conventions, pivots,
 * detector rotations, two-theta and the detector origin.
 */
#include "internal.h"

#include <float.h>

/* the most pixels a detector may have (its indices must fit an int) */
#define PB_MAX_PIXELS 2.0e9
/* fast and slow axes closer to parallel than this (|f x s| of the unit vectors) are refused */
#define PB_MIN_AXIS_SINE 1e-9

typedef struct convention_axes {
    double beam[3], fdet[3], sdet[3], odet[3], twotheta_axis[3], polar[3], spindle[3];
} convention_axes;

/* axes of the named conventions, indexed by PB_CONVENTION_* (CUSTOM unused) */
static const convention_axes CONVENTION_AXES[6] = {
    [PB_CONVENTION_ADXV] = {{0, 0, 1}, {1, 0, 0}, {0, -1, 0}, {0, 0, 1}, {-1, 0, 0}, {1, 0, 0}, {1, 0, 0}},
    [PB_CONVENTION_MOSFLM] = {{1, 0, 0}, {0, 0, 1}, {0, -1, 0}, {1, 0, 0}, {0, 0, -1}, {0, 0, 1}, {0, 0, 1}},
    [PB_CONVENTION_DENZO] = {{1, 0, 0}, {0, 0, 1}, {0, -1, 0}, {1, 0, 0}, {0, 0, -1}, {0, 0, 1}, {0, 0, 1}},
    [PB_CONVENTION_XDS] = {{0, 0, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}},
    [PB_CONVENTION_DIALS] = {{0, 0, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 0}, {0, 1, 0}},
};

int pb_convention_axes(int convention, double axes[7][3], pb_error *err)
{
    if (axes == NULL) return pb_set_error(err, PB_ERR_INVALID, "no array for the axes");
    if (convention == PB_CONVENTION_CUSTOM)
        return pb_set_error(err, PB_ERR_INVALID, "the CUSTOM convention takes its axes from the configuration");
    if (convention < PB_CONVENTION_CUSTOM || convention > PB_CONVENTION_DENZO)
        return pb_set_error(err, PB_ERR_INVALID, "unknown detector convention %d", convention);
    const convention_axes *ax = &CONVENTION_AXES[convention];
    const double *src[PB_N_AXES] = {ax->beam, ax->fdet, ax->sdet, ax->odet, ax->twotheta_axis, ax->polar, ax->spindle};
    for (int i = 0; i < PB_N_AXES; ++i) v3_copy(src[i], axes[i]);
    return PB_OK;
}

static int finite3(const double v[3])
{
    return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]);
}

/* A finite direction whose length overflows (1e300 1e300 1e300) or underflows (1e-300 ...) is
   divided by its largest component first, so that it normalises to a unit vector rather than to
   zero; other vectors are left exactly as they are. */
static void rescale_direction(double v[3])
{
    double m = fmax(fabs(v[0]), fmax(fabs(v[1]), fabs(v[2])));
    double len = v3_norm(v);
    if (m > 0.0 && isfinite(m) && (!isfinite(len) || len < 1e-150)) v3_scale(v, 1.0 / m, v);
}

int geometry_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err)
{
    const pb_detector *d = &cfg->detector;
    const pb_beam *b = &cfg->beam;
    double px = d->pixel_size;

    if (!(px > 0.0) || !isfinite(px))
        return pb_set_error(err, PB_ERR_INVALID, "pixel size must be positive (got %g m)", px);
    if (d->convention < PB_CONVENTION_CUSTOM || d->convention > PB_CONVENTION_DENZO)
        return pb_set_error(err, PB_ERR_INVALID, "unknown detector convention %d", d->convention);

    /* detector size: pixel counts win over sizes */
    double detsize_f = d->detsize_f, detsize_s = d->detsize_s;
    if (d->fpixels > 0) detsize_f = px * d->fpixels;
    if (d->spixels > 0) detsize_s = px * d->spixels;
    if (!(detsize_f > 0.0) || !(detsize_s > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "detector size must be positive");
    double nf = ceil(detsize_f / px - 0.5), ns = ceil(detsize_s / px - 0.5);
    if (!(nf >= 1) || !(ns >= 1) || !(nf * ns <= PB_MAX_PIXELS))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-detpixels/-detsize/-pixel: a detector of %g x %g pixels is impossible (at most %g "
                            "pixels)", nf, ns, PB_MAX_PIXELS);
    g->fpixels = (int)nf;
    g->spixels = (int)ns;
    g->pixel_size = px;
    g->detsize_f = detsize_f;
    g->detsize_s = detsize_s;

    /* near point and beam centre defaults */
    double Fclose = NAN, Sclose = NAN;
    if (!isnan(d->ORGX)) Fclose = (d->ORGX - 0.5) * px;
    if (!isnan(d->ORGY)) Sclose = (d->ORGY - 0.5) * px;
    if (isnan(Fclose)) Fclose = detsize_f / 2.0;
    if (isnan(Sclose)) Sclose = detsize_s / 2.0;
    double Xclose = isnan(d->Xclose) ? Fclose : d->Xclose;
    double Yclose = isnan(d->Yclose) ? Sclose : d->Yclose;
    double Xbeam = d->Xbeam, Ybeam = d->Ybeam;
    double Fbeam = Fclose, Sbeam = Sclose;

    /* region of interest */
    g->roi[0] = d->roi[0] < 0 ? 0 : d->roi[0];
    g->roi[1] = d->roi[1] < 0 ? g->fpixels : d->roi[1];
    g->roi[2] = d->roi[2] < 0 ? 0 : d->roi[2];
    g->roi[3] = d->roi[3] < 0 ? g->spixels : d->roi[3];

    /* axes */
    double beam[3], fdet[3], sdet[3], odet[3], tt_axis[3], polar[3], spindle[3];
    int pivot = d->pivot;
    int conv = d->convention;
    if (conv == PB_CONVENTION_CUSTOM) {
        v3_copy(b->beam_vector, beam);
        v3_copy(d->fdet_vector, fdet);
        v3_copy(d->sdet_vector, sdet);
        v3_copy(d->odet_vector, odet);
        v3_copy(d->twotheta_axis, tt_axis);
        v3_copy(b->polar_vector, polar);
        v3_copy(cfg->crystal.spindle_axis, spindle);
        if (isnan(Xbeam)) Xbeam = Xclose;
        if (isnan(Ybeam)) Ybeam = Yclose;
        Fbeam = Xbeam;
        Sbeam = Ybeam;
        Fclose = Xbeam;
        Sclose = Ybeam;
    } else {
        const convention_axes *ax = &CONVENTION_AXES[conv];
        v3_copy(ax->beam, beam);
        v3_copy(ax->fdet, fdet);
        v3_copy(ax->sdet, sdet);
        v3_copy(ax->odet, odet);
        v3_copy(ax->twotheta_axis, tt_axis);
        v3_copy(ax->polar, polar);
        v3_copy(ax->spindle, spindle);
        switch (conv) {
        case PB_CONVENTION_ADXV:
            if (isnan(Xbeam)) Xbeam = (detsize_f + px) / 2.0;
            if (isnan(Ybeam)) Ybeam = (detsize_s - px) / 2.0;
            Fbeam = Xbeam;
            Sbeam = detsize_s - Ybeam;
            pivot = PB_PIVOT_BEAM;
            break;
        case PB_CONVENTION_MOSFLM:
        case PB_CONVENTION_DENZO: {
            /* MOSFLM counts pixel centres from 0.5; DENZO from 0 */
            double half = conv == PB_CONVENTION_MOSFLM ? 0.5 * px : 0.0 * px;
            if (isnan(Xbeam)) Xbeam = (detsize_s + px) / 2.0;
            if (isnan(Ybeam)) Ybeam = (detsize_f + px) / 2.0;
            Fbeam = Ybeam + half;
            Sbeam = Xbeam + half;
            pivot = PB_PIVOT_BEAM;
            break;
        }
        default: /* XDS, DIALS */
            if (isnan(Xbeam)) Xbeam = Xclose;
            if (isnan(Ybeam)) Ybeam = Yclose;
            Fbeam = Xbeam;
            Sbeam = Ybeam;
            pivot = PB_PIVOT_SAMPLE;
            break;
        }
    }
    if (!finite3(beam) || !finite3(fdet) || !finite3(sdet) || !finite3(odet) || !finite3(tt_axis) ||
        !finite3(polar) || !finite3(spindle))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-beam_vector/-fdet_vector/-sdet_vector/-odet_vector/-twotheta_axis/-polar_vector/"
                            "-spindle_axis: axis vectors must be finite");
    if (!isfinite(d->rotx) || !isfinite(d->roty) || !isfinite(d->rotz) || !isfinite(d->twotheta))
        return pb_set_error(err, PB_ERR_INVALID, "-detector_rotx/-detector_roty/-detector_rotz/-twotheta: the "
                            "detector rotations must be finite");
    if (d->has_pix0 && !finite3(d->pix0_vector))
        return pb_set_error(err, PB_ERR_INVALID, "-pix0_vector: the detector origin must be finite");

    double *directions[] = {beam, fdet, sdet, odet, tt_axis, polar, spindle};
    for (size_t i = 0; i < sizeof directions / sizeof directions[0]; ++i) rescale_direction(directions[i]);

    /* unit vectors; a detector normal that is not exactly unit is rebuilt from f x s */
    if (!(v3_unit(beam, beam) > 0.0)) return pb_set_error(err, PB_ERR_INVALID, "-beam_vector: the beam direction is zero");
    if (!(v3_unit(fdet, fdet) > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "-fdet_vector: the fast detector axis is zero");
    if (!(v3_unit(sdet, sdet) > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "-sdet_vector: the slow detector axis is zero");
    double fxs[3];
    v3_cross(fdet, sdet, fxs);
    if (!(v3_norm(fxs) >= PB_MIN_AXIS_SINE))
        return pb_set_error(err, PB_ERR_INVALID,
                            "-fdet_vector/-sdet_vector: the fast and slow detector axes are parallel");
    if (d->twotheta != 0.0 && !(v3_norm(tt_axis) > 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "-twotheta_axis: the two-theta axis is zero");
    if (v3_unit(odet, odet) != 1.0) {
        v3_cross(fdet, sdet, odet);
        v3_unit(odet, odet);
    }
    v3_unit(polar, polar);
    v3_unit(spindle, spindle);
    double vert[3];
    v3_cross(beam, polar, vert);
    v3_unit(vert, vert);

    /* how the two beam centres relate: cosine between beam and un-two-thetaed normal */
    double rot_odet[3];
    v3_rotate_xyz(odet, d->rotx, d->roty, d->rotz, rot_odet);
    double ratio = v3_dot(beam, rot_odet);
    if (ratio == 0.0) ratio = DBL_MIN;
    double close_distance = d->close_distance;
    double distance = d->distance;
    if (isnan(close_distance)) close_distance = fabs(ratio * distance);
    distance = close_distance / ratio;

    double pix0[3];
    if (d->has_pix0) {
        v3_copy(d->pix0_vector, pix0);
    } else if (pivot == PB_PIVOT_SAMPLE) {
        for (int i = 0; i < 3; ++i)
            pix0[i] = -Fclose * fdet[i] - Sclose * sdet[i] + close_distance * odet[i];
    }
    if (d->has_pix0 || pivot == PB_PIVOT_SAMPLE) {
        v3_rotate_xyz(pix0, d->rotx, d->roty, d->rotz, pix0);
        v3_rotate_axis(pix0, tt_axis, d->twotheta, pix0);
    }
    double *axes[3] = {fdet, sdet, odet};
    for (int i = 0; i < 3; ++i) {
        v3_rotate_xyz(axes[i], d->rotx, d->roty, d->rotz, axes[i]);
        v3_rotate_axis(axes[i], tt_axis, d->twotheta, axes[i]);
    }
    if (!d->has_pix0 && pivot == PB_PIVOT_BEAM) {
        for (int i = 0; i < 3; ++i)
            pix0[i] = -Fbeam * fdet[i] - Sbeam * sdet[i] + distance * beam[i];
    }

    /* derived: near point, beam spot, distances */
    Fclose = -v3_dot(pix0, fdet);
    Sclose = -v3_dot(pix0, sdet);
    close_distance = v3_dot(pix0, odet);
    double hit[3];
    for (int i = 0; i < 3; ++i) hit[i] = close_distance / ratio * beam[i] - pix0[i];
    Fbeam = v3_dot(fdet, hit);
    Sbeam = v3_dot(sdet, hit);
    distance = close_distance / ratio;
    const char *placed_by = d->has_pix0 ? "-pix0_vector" : "-distance/-close_distance";
    if (!(close_distance > 0.0) && !(close_distance < 0.0))
        return pb_set_error(err, PB_ERR_INVALID, "%s: the detector plane passes through the sample", placed_by);
    if (!isfinite(distance) || !isfinite(close_distance))
        return pb_set_error(err, PB_ERR_INVALID, "%s: the detector distance is not finite", placed_by);

    g->convention = conv;
    g->pivot = pivot;
    g->distance = distance;
    g->close_distance = close_distance;
    g->Xbeam = Xbeam;
    g->Ybeam = Ybeam;
    g->Fbeam = Fbeam;
    g->Sbeam = Sbeam;
    g->Xclose = Xclose;
    g->Yclose = Yclose;
    g->Fclose = Fclose;
    g->Sclose = Sclose;
    g->ORGX = Fclose / px + 0.5;
    g->ORGY = Sclose / px + 0.5;
    g->dials_origin[0] = 1000.0 * pix0[2];
    g->dials_origin[1] = 1000.0 * pix0[1];
    g->dials_origin[2] = 1000.0 * -pix0[0];
    v3_copy(fdet, g->fdet);
    v3_copy(sdet, g->sdet);
    v3_copy(odet, g->odet);
    v3_copy(beam, g->beam);
    v3_copy(polar, g->polar);
    v3_copy(vert, g->vert);
    v3_copy(spindle, g->spindle);
    v3_copy(tt_axis, g->twotheta_axis);
    v3_copy(pix0, g->pix0);
    g->twotheta = d->twotheta;
    g->rotx = d->rotx;
    g->roty = d->roty;
    g->rotz = d->rotz;
    g->curved = d->curved;
    g->point_pixel = d->point_pixel;
    g->oversample_thick = d->oversample_thick;
    g->oversample_polar = d->oversample_polar;
    g->oversample_omega = d->oversample_omega;
    g->dmin = d->dmin;
    return PB_OK;
}
