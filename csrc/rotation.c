/* Rotations of 3-vectors used by the geometry and the crystal set-up. */
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
