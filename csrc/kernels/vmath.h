/* vmath.h: exp and log for the logcumsumexp kernels.
 * The scalar libm versions; a vectorisable polynomial replaces them where
 * the kernels stream rows (see the speed issue). */
#ifndef SCANAD_VMATH_H
#define SCANAD_VMATH_H
#include <math.h>

static inline double scan_exp(double x) { return exp(x); }
static inline double scan_log(double x) { return log(x); }

#endif
