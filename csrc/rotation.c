/*
 * Rotation maths: rotations of 3-vectors about the lab axes and about an
 * arbitrary axis, matrix products, rotation matrices from an axis and angle and
 * back to angles about x, y, z.
 */
#include "internal.h"

void v3_rotate_xyz(const double v[3], double rx, double ry, double rz, double out[3])
{
    double x = v[0], y = v[1], z = v[2];
    if (rx != 0.0) {
        double c = cos(rx), s = sin(rx);
        double ny = y * c + z * (-s);
        double nz = y * s + z * c;
        y = ny;
        z = nz;
    }
    if (ry != 0.0) {
        double c = cos(ry), s = sin(ry);
        double nx = x * c + y * 0.0 + z * s;
        double nz = x * (-s) + y * 0.0 + z * c;
        x = nx;
        z = nz;
    }
    if (rz != 0.0) {
        double c = cos(rz), s = sin(rz);
        double nx = x * c + y * (-s);
        double ny = x * s + y * c;
        x = nx;
        y = ny;
    }
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

void v3_rotate_axis(const double v[3], const double axis[3], double phi, double out[3])
{
    double s = sin(phi), c = cos(phi);
    double along = (axis[0] * v[0] + axis[1] * v[1] + axis[2] * v[2]) * (1.0 - c);
    double x = axis[0] * along + v[0] * c + (-axis[2] * v[1] + axis[1] * v[2]) * s;
    double y = axis[1] * along + v[1] * c + (axis[2] * v[0] - axis[0] * v[2]) * s;
    double z = axis[2] * along + v[2] * c + (-axis[1] * v[0] + axis[0] * v[1]) * s;
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

void v3_matvec(const double U[9], const double v[3], double out[3])
{
    double x = U[0] * v[0] + U[1] * v[1] + U[2] * v[2];
    double y = U[3] * v[0] + U[4] * v[1] + U[5] * v[2];
    double z = U[6] * v[0] + U[7] * v[1] + U[8] * v[2];
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

void rotation_from_axis_angle(double ux, double uy, double uz, double angle, double U[9])
{
    double c = cos(angle), s = sin(angle), omc = 1.0 - c;
    double omc_x = omc * ux;
    double xy = omc_x * uy, xz = omc_x * uz, yz = omc * uy * uz;
    double sx = s * ux, sy = s * uy, sz = s * uz;
    U[0] = c + omc * (ux * ux);
    U[1] = xy - sz;
    U[2] = xz + sy;
    U[3] = xy + sz;
    U[4] = c + omc * (uy * uy);
    U[5] = yz - sx;
    U[6] = xz - sy;
    U[7] = yz + sx;
    U[8] = c + omc * (uz * uz);
}

static void normalize_rows(double m[9])
{
    for (int i = 0; i < 3; ++i) {
        double len = sqrt(m[3 * i] * m[3 * i] + m[3 * i + 1] * m[3 * i + 1] + m[3 * i + 2] * m[3 * i + 2]);
        if (len > 0) {
            m[3 * i] /= len;
            m[3 * i + 1] /= len;
            m[3 * i + 2] /= len;
        }
    }
}

void rotation_to_xyz_angles(const double U[9], double angles[3])
{
    double m[9];
    for (int i = 0; i < 9; ++i) m[i] = U[i];
    normalize_rows(m);
    normalize_rows(m);
    double zx = m[6], zy = m[7], zz = m[8];
    if (zx * zx < 1.0) {
        angles[0] = atan2(zy, zz);
        angles[1] = atan2(-zx, sqrt(zy * zy + zz * zz));
        angles[2] = atan2(m[3], m[0]);
    } else {
        angles[0] = M_PI;
        angles[1] = M_PI / 2;
        angles[2] = atan2(m[1], -m[4]);
    }
}
