/* Preprocessing internals shared inside the C engine (not part of fastlenet.h): the fields
 * search (fields.c) reads, thresholds and preprocesses the way single digits are. */
#ifndef FASTLENET_PREPROCESS_H
#define FASTLENET_PREPROCESS_H

#include <stdint.h>
#include <string.h>

#include "fastlenet.h"

/* Ink contrast below this (of the unit range): a blank picture, digit or field. */
#define FL_MIN_CONTRAST 0.08

/* A pixel of an fl_image (at p, of `dtype`) times scale, clipped to [0, 1]; NaN is 0. */
static inline double fl_unit_pixel(const char *p, int dtype, double scale) {
    double v;
    switch (dtype) {
    case FL_PIX_U8: v = (double)*(const unsigned char *)p; break;
    case FL_PIX_U16: { uint16_t u; memcpy(&u, p, sizeof u); v = (double)u; break; }
    case FL_PIX_F32: { float f; memcpy(&f, p, sizeof f); v = (double)f; break; }
    default: { memcpy(&v, p, sizeof v); break; }
    }
    v *= scale;
    if (!(v > 0.0)) return 0.0; /* also NaN */
    return v > 1.0 ? 1.0 : v;
}

/* Otsu's threshold over a 256-level histogram: the level t (classes <= t and > t) that
 * maximises the between-class variance, ties to the lowest; -1 when there is one class only. */
int fl_otsu(const size_t hist[256]);

/* An ink map (h x w floats in [0, 1]: one digit's pixels only, paper 0) -> out, by the
 * reference's last steps (thicken, centre, resample): what the fields search feeds the engine. */
int fl_preprocess_ink(const float *ink, int h, int w, int size, int light_on_dark, float *out);

#endif
