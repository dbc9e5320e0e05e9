/*
 * The crystal: unit cell or reciprocal matrix, misset (fixed or random),
 * real and reciprocal axes and the number of unit cells.
 */
#include "internal.h"

#include <float.h>

/* the reference draws a random misset as a rotation within a cap of this size */
#define PB_RANDOM_MISSET_CAP 90.0f

static double clamp_unit(double x)
{
    if (x > 1.0) return 1.0;
    if (x < -1.0) return -1.0;
    return x;
}

/* angles (rad) between two lattice vectors given their sine and cosine the way
   the reference reports them: clamp, then atan2 */
static double angle_from(double s, double c)
{
    s = clamp_unit(s);
    if (c * c > 1.0) c = 1.0;
    return atan2(s, c);
}

int crystal_resolve(const pb_config *cfg, pb_geometry *g, pb_error *err)
{
    const pb_crystal *c = &cfg->crystal;
    double a_star[3] = {0, 0, 0}, b_star[3] = {0, 0, 0}, c_star[3] = {0, 0, 0};
    double len[3] = {0, 0, 0}; /* direct cell lengths (Angstrom) */
    double V_cell = 0.0;

    if (!c->has_cell && !c->has_matrix)
        return pb_set_error(err, PB_ERR_INVALID, "no unit cell: give a cell or an orientation matrix");

    if (c->has_cell) {
        len[0] = c->cell[0] * PB_ANGSTROM_PER_M;
        len[1] = c->cell[1] * PB_ANGSTROM_PER_M;
        len[2] = c->cell[2] * PB_ANGSTROM_PER_M;
        double al = c->cell[3], be = c->cell[4], ga = c->cell[5];
        if (!(len[0] > 0.0)) return pb_set_error(err, PB_ERR_INVALID, "cell length a must be positive");
        if (len[1] <= 0.0) len[1] = len[0];
        if (len[2] <= 0.0) len[2] = len[0];
        if (al <= 0.0) al = M_PI / 2;
        if (be <= 0.0) be = M_PI / 2;
        if (ga <= 0.0) ga = M_PI / 2;
        /* volume from the angles */
        double half = (al + be + ga) / 2;
        double skew = sin(half) * sin(half - al) * sin(half - be) * sin(half - ga);
        if (skew < 0.0) skew = -skew;
        V_cell = 2.0 * len[0] * len[1] * len[2] * sqrt(skew);
        if (!(V_cell > 0.0)) return pb_set_error(err, PB_ERR_INVALID, "unit cell has no volume");
        double V_star = 1.0 / V_cell;
        double as = len[1] * len[2] * sin(al) * V_star;
        double bs = len[2] * len[0] * sin(be) * V_star;
        double cs = len[0] * len[1] * sin(ga) * V_star;
        if (!(as > 0.0) || !(bs > 0.0) || !(cs > 0.0))
            return pb_set_error(err, PB_ERR_INVALID, "unit cell angles are impossible");
        double sin_ga_s = clamp_unit(len[2] * V_star / as / bs);
        double cos_al_s = (cos(be) * cos(ga) - cos(al)) / (sin(be) * sin(ga));
        double cos_be_s = (cos(ga) * cos(al) - cos(be)) / (sin(ga) * sin(al));
        double cos_ga_s = (cos(al) * cos(be) - cos(ga)) / (sin(al) * sin(be));
        if (cos_al_s * cos_al_s > 1.0) cos_al_s = 1.0;
        if (cos_be_s * cos_be_s > 1.0) cos_be_s = 1.0;
        if (cos_ga_s * cos_ga_s > 1.0) cos_ga_s = 1.0;
        /* default orientation: a* along x, b* in the x-y plane */
        a_star[0] = as;
        b_star[0] = bs * cos_ga_s;
        b_star[1] = bs * sin_ga_s;
        c_star[0] = cs * cos_be_s;
        c_star[1] = cs * (cos_al_s - cos_be_s * cos_ga_s) / sin_ga_s;
        c_star[2] = cs * V_cell / (len[0] * len[1] * len[2] * sin_ga_s);
    }
    if (c->has_matrix) {
        /* given in 1/m; the engine works in 1/Angstrom here */
        v3_scale(c->a_star, PB_M_PER_ANGSTROM, a_star);
        v3_scale(c->b_star, PB_M_PER_ANGSTROM, b_star);
        v3_scale(c->c_star, PB_M_PER_ANGSTROM, c_star);
    }

    /* orientation */
    double misset[3] = {0, 0, 0};
    int misset_applied = 0;
    if (c->misset_mode == PB_MISSET_RANDOM) {
        pb_rng rng;
        double U[9];
        rng_seed(&rng, c->misset_seed);
        rng_cap_rotation(&rng, PB_RANDOM_MISSET_CAP, U);
        rotation_to_xyz_angles(U, misset);
        misset_applied = 1;
    } else if (c->misset_mode == PB_MISSET_ANGLES) {
        v3_copy(c->misset, misset);
        misset_applied = 1;
    }
    if (misset_applied) {
        v3_rotate_xyz(a_star, misset[0], misset[1], misset[2], a_star);
        v3_rotate_xyz(b_star, misset[0], misset[1], misset[2], b_star);
        v3_rotate_xyz(c_star, misset[0], misset[1], misset[2], c_star);
    }

    /* direct axes from the reciprocal ones */
    double bxc_s[3], cxa_s[3], axb_s[3];
    v3_cross(a_star, b_star, axb_s);
    v3_cross(b_star, c_star, bxc_s);
    v3_cross(c_star, a_star, cxa_s);
    double V_star = v3_dot(a_star, bxc_s);
    if (c->has_cell) {
        /* keep the user's cell lengths exactly */
        double n;
        n = v3_norm(bxc_s);
        v3_scale(bxc_s, len[0] / V_cell / (n > 0.0 ? n : 1.0), bxc_s);
        n = v3_norm(cxa_s);
        v3_scale(cxa_s, len[1] / V_cell / (n > 0.0 ? n : 1.0), cxa_s);
        n = v3_norm(axb_s);
        v3_scale(axb_s, len[2] / V_cell / (n > 0.0 ? n : 1.0), axb_s);
        V_star = 1.0 / V_cell;
    }
    if (!(V_star != 0.0) || !isfinite(V_star))
        return pb_set_error(err, PB_ERR_INVALID, "orientation matrix is singular");
    V_cell = 1.0 / V_star;
    double a[3], b[3], cc[3];
    v3_scale(bxc_s, V_cell, a);
    v3_scale(cxa_s, V_cell, b);
    v3_scale(axb_s, V_cell, cc);
    double axb[3], bxc[3], cxa[3];
    v3_cross(a, b, axb);
    v3_cross(b, cc, bxc);
    v3_cross(cc, a, cxa);
    v3_scale(bxc, V_star, a_star);
    v3_scale(cxa, V_star, b_star);
    v3_scale(axb, V_star, c_star);

    /* cell constants for reporting */
    double la = v3_norm(a), lb = v3_norm(b), lc = v3_norm(cc);
    double las = v3_norm(a_star), lbs = v3_norm(b_star), lcs = v3_norm(c_star);
    g->cell[0] = la;
    g->cell[1] = lb;
    g->cell[2] = lc;
    g->cell[3] = angle_from(las * V_cell / lb / lc, v3_dot(b, cc) / lb / lc) * PB_RAD2DEG;
    g->cell[4] = angle_from(lbs * V_cell / la / lc, v3_dot(a, cc) / la / lc) * PB_RAD2DEG;
    g->cell[5] = angle_from(lcs * V_cell / la / lb, v3_dot(a, b) / la / lb) * PB_RAD2DEG;
    g->recip_cell[0] = las;
    g->recip_cell[1] = lbs;
    g->recip_cell[2] = lcs;
    g->recip_cell[3] = angle_from(la * V_star / lbs / lcs, v3_dot(b_star, c_star) / lbs / lcs) * PB_RAD2DEG;
    g->recip_cell[4] = angle_from(lb * V_star / las / lcs, v3_dot(a_star, c_star) / las / lcs) * PB_RAD2DEG;
    g->recip_cell[5] = angle_from(lc * V_star / las / lbs, v3_dot(a_star, b_star) / las / lbs) * PB_RAD2DEG;
    g->volume = V_cell;
    v3_copy(a_star, g->a_star);
    v3_copy(b_star, g->b_star);
    v3_copy(c_star, g->c_star);
    v3_copy(misset, g->misset);
    g->misset_applied = misset_applied;

    /* to metres */
    v3_scale(a, PB_M_PER_ANGSTROM, g->a);
    v3_scale(b, PB_M_PER_ANGSTROM, g->b);
    v3_scale(cc, PB_M_PER_ANGSTROM, g->c);

    /* number of cells: from the crystal size where given (clipped by the beam) */
    double size[3];
    v3_copy(c->sample_size, size);
    const pb_beam *bm = &cfg->beam;
    if (bm->beamsize >= 0.0) {
        if (bm->beamsize < size[1]) size[1] = bm->beamsize;
        if (bm->beamsize < size[2]) size[2] = bm->beamsize;
    }
    double axis_len[3] = {v3_norm(g->a), v3_norm(g->b), v3_norm(g->c)};
    for (int i = 0; i < 3; ++i) {
        double n = c->N[i];
        if (size[i] > 0) n = ceil(size[i] / axis_len[i]);
        if (n <= 1.0) n = 1.0;
        g->N[i] = n;
        g->xtal_size[i] = axis_len[i] * n;
    }
    g->shape = c->shape;
    g->fudge = c->fudge;
    return PB_OK;
}
