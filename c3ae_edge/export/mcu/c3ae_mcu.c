/* c3ae_mcu.c: crop, quantise and decode for C3AE on a microcontroller (see c3ae_mcu.h). C99, no allocation. */
#include "c3ae_mcu.h"

#include <math.h>
#include <stddef.h>

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Python's round(): half to even (the default FE_TONEAREST mode of rint). */
static int round_even(double v) { return (int)rint(v); }

static const uint8_t *px(const uint8_t *rgb, int width, int height, int stride, int x, int y)
{
    return rgb + (size_t)clampi(y, 0, height - 1) * (size_t)stride + (size_t)clampi(x, 0, width - 1) * 3u;
}

/* Area weight of source index j for output i (overlap of [i*scale, (i+1)*scale) with [j, j+1), over scale). */
static double area_w(int i, int j, double scale)
{
    double a = i * scale, b = (i + 1) * scale;
    double lo = a > j ? a : (double)j, hi = b < j + 1 ? b : (double)(j + 1);
    return (hi - lo) / scale;
}

/* Output row i of the area resize (n x n source pixels at x0, y0 -> SIZE x SIZE). */
static void area_row(const uint8_t *rgb, int width, int height, int stride, int x0, int y0, int n, int i, uint8_t *out)
{
    const int size = C3AE_MCU_SIZE;
    double scale = (double)n / size;
    int k0 = (int)floor(i * scale), k1 = (int)ceil((i + 1) * scale);
    if (k1 > n) k1 = n;
    for (int l = 0; l < size; l++) {
        int j0 = (int)floor(l * scale), j1 = (int)ceil((l + 1) * scale);
        if (j1 > n) j1 = n;
        double acc[3] = {0.0, 0.0, 0.0};
        for (int j = j0; j < j1; j++) {
            double col[3] = {0.0, 0.0, 0.0};
            for (int k = k0; k < k1; k++) {
                const uint8_t *p = px(rgb, width, height, stride, x0 + j, y0 + k);
                double w = area_w(i, k, scale);
                col[0] += w * p[0]; col[1] += w * p[1]; col[2] += w * p[2];
            }
            double w = area_w(l, j, scale);
            acc[0] += w * col[0]; acc[1] += w * col[1]; acc[2] += w * col[2];
        }
        for (int c = 0; c < 3; c++)
            out[l * 3 + c] = (uint8_t)clampi((int)floor(acc[c] + 0.5), 0, 255);
    }
}

/* Bilinear taps, half-pixel centres, borders clamped: source k, k+1 and their 2048-scaled weights. */
static void taps(int i, int n, int *k0, int *k1, int c[2])
{
    double scale = (double)n / C3AE_MCU_SIZE;
    float f = (float)((i + 0.5) * scale - 0.5);
    int k = (int)floorf(f);
    double t = (double)f - k;
    if (k < 0) { k = 0; t = 0.0; }
    if (k >= n - 1) { k = n - 1; t = 0.0; }
    *k0 = k;
    *k1 = k + 1 < n ? k + 1 : n - 1;
    c[0] = round_even((1.0 - t) * 2048.0);
    c[1] = round_even(t * 2048.0);
}

/* Output row i of the bilinear enlargement. */
static void enlarge_row(const uint8_t *rgb, int width, int height, int stride, int x0, int y0, int n, int i, uint8_t *out)
{
    const int size = C3AE_MCU_SIZE;
    int r0, r1, cy[2];
    taps(i, n, &r0, &r1, cy);
    for (int l = 0; l < size; l++) {
        int q0, q1, cx[2];
        taps(l, n, &q0, &q1, cx);
        for (int c = 0; c < 3; c++) {
            int32_t h0 = (px(rgb, width, height, stride, x0 + q0, y0 + r0)[c] * cx[0] + px(rgb, width, height, stride, x0 + q1, y0 + r0)[c] * cx[1]) >> 4;
            int32_t h1 = (px(rgb, width, height, stride, x0 + q0, y0 + r1)[c] * cx[0] + px(rgb, width, height, stride, x0 + q1, y0 + r1)[c] * cx[1]) >> 4;
            int32_t v = ((h0 * cy[0]) >> 16) + ((h1 * cy[1]) >> 16);
            out[l * 3 + c] = (uint8_t)clampi((v + 2) >> 2, 0, 255);
        }
    }
}

int c3ae_crop_row(const uint8_t *rgb, int width, int height, int stride, double cx, double cy, double side,
                  int scale_index, int row, uint8_t out[C3AE_MCU_SIZE * 3])
{
    if (!rgb || !out || width < 1 || height < 1 || stride < 3 * width || scale_index < 0 || scale_index >= C3AE_MCU_CROPS || !(side > 0.0) || row < 0 || row >= C3AE_MCU_SIZE)
        return -1;
    int n = round_even(side * c3ae_crop_scales[scale_index]);
    if (n < 2) n = 2;
    int x0 = round_even(cx - n / 2.0), y0 = round_even(cy - n / 2.0);
    if (n < C3AE_MCU_SIZE)
        enlarge_row(rgb, width, height, stride, x0, y0, n, row, out);
    else
        area_row(rgb, width, height, stride, x0, y0, n, row, out);
    return 0;
}

int c3ae_crop(const uint8_t *rgb, int width, int height, int stride, double cx, double cy, double side,
              int scale_index, uint8_t out[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3])
{
    if (!out) return -1;
    for (int i = 0; i < C3AE_MCU_SIZE; i++)
        if (c3ae_crop_row(rgb, width, height, stride, cx, cy, side, scale_index, i, out + i * C3AE_MCU_SIZE * 3))
            return -1;
    return 0;
}

void c3ae_quantize_table(int8_t table[3][256])
{
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = ((float)v / 255.0f - c3ae_mean[c]) / c3ae_std[c];
            table[c][v] = (int8_t)clampi((int)rintf(x / C3AE_MCU_INPUT_SCALE) + C3AE_MCU_INPUT_ZERO_POINT, -128, 127);
        }
}

void c3ae_quantize(const uint8_t crop[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3], int8_t input[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3])
{
    int8_t lut[3][256];  /* one table per channel: 768 bytes of stack instead of 12 K divisions */
    c3ae_quantize_table(lut);
    for (int i = 0; i < C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3; i++)
        input[i] = lut[i % 3][crop[i]];
}

float c3ae_decode(const int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES], float bins[C3AE_MCU_BINS])
{
    float logits[C3AE_MCU_BINS], p[C3AE_MCU_BINS], top = -INFINITY, sum = 0.0f, age = c3ae_b2;
    for (int o = 0; o < C3AE_MCU_BINS; o++) {
        float acc = 0.0f;
        for (int s = 0; s < C3AE_MCU_CROPS; s++)
            for (int i = 0; i < C3AE_MCU_FEATURES; i++) {
                float f = (float)(features[s][i] - C3AE_MCU_FEATURE_ZERO_POINT) * C3AE_MCU_FEATURE_SCALE;
                acc += (float)c3ae_w1[o][s * C3AE_MCU_FEATURES + i] * f;
            }
        logits[o] = acc * c3ae_w1_scale[o] + c3ae_b1[o];
        if (logits[o] > top) top = logits[o];
    }
    for (int o = 0; o < C3AE_MCU_BINS; o++) { p[o] = expf(logits[o] - top); sum += p[o]; }
    for (int o = 0; o < C3AE_MCU_BINS; o++) {
        p[o] /= sum;
        age += p[o] * c3ae_w2[o];
        if (bins) bins[o] = p[o];
    }
    return age;
}
