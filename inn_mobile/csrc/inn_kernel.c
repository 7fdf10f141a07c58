/* The interpolation kernel, partitions and quadrature: inn_mobile/kernel.py in C, same op order. */
#include <math.h>

#include "inn.h"

#define A (-0.5)

/* A sample position this close to a node is the node: s = k (m-1)/(n-1) carries rounding error (13/95*95
 * is 13.000000000000002), which gave taps of weight 1e-15 beside the 1 and so a full-width layer that was
 * not its nodes, nor the identity the resampler streams without gathers. 2^-20 is far above that error
 * (at most a few ulps of m-1 <= 2^24, so below 2^-26) and far below any real offset between nodes. */
#define SNAP (1.0 / 1048576.0)

double inn_cubic(double s) {
    double x = fabs(s);
    if (x <= 1.0) return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    if (x < 2.0) return ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    return 0.0;
}

/* nearbyint(s) in the default rounding mode (half to even), inline: adding and subtracting 1.5 * 2^52 rounds
 * any |s| < 2^51 to an integer; the rare larger s (far outside a partition) go to libm. */
static double round_even(double s) {
    if (!(fabs(s) < 2251799813685248.0)) return nearbyint(s);
    return (s + 6755399441055744.0) - 6755399441055744.0;
}

static double point_at(const float *points, uint32_t n, uint32_t k) {
    if (points) return (double)points[k];
    if (n == 1) return 0.5;
    return (double)k / (double)(n - 1);
}

inn_status inn_check_partition(const float *points, uint32_t n) {
    if (!points || n < 2) return INN_ERR_ARG;
    if (points[0] != 0.0f || points[n - 1] != 1.0f) return INN_ERR_PARTITION;
    for (uint32_t k = 0; k < n; k++) {
        if (!isfinite(points[k])) return INN_ERR_PARTITION;
        if (k > 0 && points[k] < points[k - 1]) return INN_ERR_PARTITION;
    }
    return INN_OK;
}

/* inn_taps of a uniform partition at full width, where position k is node k: the general loop's values (its
 * on-node branch, s = base = k) without its per-position arithmetic. Every fill at full width builds these
 * for every layer's two axes, so they are written directly. */
static void identity_taps(uint32_t n, int32_t *idx, double *w) {
    for (uint32_t k = 0; k < n; k++)
        for (int b = 0; b < INN_TAPS; b++) {
            const int64_t raw = (int64_t)k + b - 1;
            idx[(size_t)k * INN_TAPS + b] = (int32_t)(raw < 0 ? 0 : raw > (int64_t)n - 1 ? (int64_t)n - 1 : raw);
            w[(size_t)k * INN_TAPS + b] = b == 1 ? 1.0 : 0.0;
        }
}

inn_status inn_taps(const float *points, uint32_t n, uint32_t m, int32_t *idx, double *w) {
    if (!idx || !w || n == 0 || m == 0 || m > INN_MAX_DIM || n > INN_MAX_DIM) return INN_ERR_ARG;
    if (!points && n == m) {
        identity_taps(n, idx, w);
        return INN_OK;
    }
    for (uint32_t k = 0; k < n; k++) {
        double s = point_at(points, n, k) * (double)(m - 1);
        if (!isfinite(s)) return INN_ERR_PARTITION; /* a NaN or inf point (converting it is undefined) */
        const double near = round_even(s);
        double off = s - near;
        if (fabs(off) <= SNAP) s = s - off; /* exactly the node (Sterbenz), as kernel.taps computes it */
        double fl = s == near ? near : floor(s);
        /* clamped in double first: a point far outside [0, 1] must not overflow the conversion */
        int64_t base = fl < 0.0 ? 0 : fl > (double)(m - 1) ? (int64_t)m - 1 : (int64_t)fl;
        /* on a node (every position at full width), s - raw is an exact integer and the kernel there is 1 at 0
         * and 0 elsewhere (inn_cubic(+-1) and inn_cubic(+-2) are exactly 0): the same weights, no evaluation */
        const int on_node = s == fl;
        for (int b = 0; b < INN_TAPS; b++) {
            int64_t raw = base + b - 1;
            int64_t c = raw < 0 ? 0 : (raw > (int64_t)m - 1 ? (int64_t)m - 1 : raw);
            idx[(size_t)k * INN_TAPS + b] = (int32_t)c;
            w[(size_t)k * INN_TAPS + b] = on_node ? (s == (double)raw ? 1.0 : 0.0) : inn_cubic(s - (double)raw);
        }
    }
    return INN_OK;
}

inn_status inn_quadrature_weights(const float *points, uint32_t n, inn_quadrature rule, double *q) {
    if (!q || n == 0) return INN_ERR_ARG;
    if (n == 1) {
        q[0] = 1.0;
        return INN_OK;
    }
    if (rule == INN_QUAD_TRAPEZOID) {
        for (uint32_t k = 0; k < n; k++) {
            double left = point_at(points, n, k == 0 ? 0 : k - 1);
            double right = point_at(points, n, k == n - 1 ? n - 1 : k + 1);
            q[k] = (right - left) * 0.5;
        }
        return INN_OK;
    }
    if (rule == INN_QUAD_RECTANGLE) {
        for (uint32_t k = 0; k < n; k++) q[k] = 1.0 / (double)n;
        return INN_OK;
    }
    if (rule == INN_QUAD_SIMPSON) {
        if (n < 3 || points) return INN_ERR_ARG; /* Simpson: uniform partitions of >= 3 points */
        double h = 1.0 / (double)(n - 1);
        uint32_t intervals = n - 1;
        uint32_t end = intervals % 2 == 0 ? intervals : intervals - 3;
        for (uint32_t k = 0; k < n; k++) q[k] = 0.0;
        for (uint32_t k = 0; k < end; k += 2) {
            q[k] += h / 3.0;
            q[k + 1] += 4.0 * h / 3.0;
            q[k + 2] += h / 3.0;
        }
        if (end != intervals) {
            static const double c[4] = {1.0, 3.0, 3.0, 1.0};
            for (uint32_t j = 0; j < 4; j++) q[end + j] += 3.0 * h / 8.0 * c[j];
        }
        return INN_OK;
    }
    return INN_ERR_ARG;
}
