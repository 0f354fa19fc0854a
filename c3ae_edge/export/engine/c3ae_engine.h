/* c3ae_engine.h: the C3AE int8 trunk as plain C99, generated from the verified int8 graph; no runtime library, no
 * allocation, no writable globals. Bit-exact with TFLite Micro's reference kernels on the same int8 input.
 *
 *   static uint32_t work[C3AE_ENGINE_WORK_BYTES / 4];          one buffer, 4-byte aligned, reused by every call
 *   c3ae_box box = {cx, cy, side};                              square face box in frame pixels
 *   float age;
 *   if (c3ae_age(rgb, width, height, stride, &box, work, &age) == 0) ...
 *
 * Every crop runs through the trunk in `work` one after another; only their features are kept. The early layers
 * stream in row bands (the crop is produced row by row from the frame) and their whole maps never exist.
 */
#ifndef C3AE_ENGINE_H
#define C3AE_ENGINE_H

#include <stdint.h>

#include "c3ae_engine_model.h"
#include "c3ae_mcu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double cx, cy, side; /* square face box: centre and side, frame pixels */
} c3ae_box;

/* Age in years from an RGB888 frame (`stride` bytes per row) and a face box. `work`: C3AE_ENGINE_WORK_BYTES bytes,
 * 4-byte aligned. Returns 0, or -1 on bad arguments (nothing written to *age). */
int c3ae_age(const uint8_t *frame, int width, int height, int stride, const c3ae_box *box, void *work, float *age);

/* The trunk's int8 features of every crop (give them to c3ae_decode() for the age and the 12-bin distribution). */
int c3ae_features(const uint8_t *frame, int width, int height, int stride, const c3ae_box *box, void *work,
                  int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES]);

/* One already quantised crop (SIZE x SIZE x 3 int8, the graph's input) -> its int8 features: the trunk alone, what
 * TFLite Micro's interpreter computes from the same input. */
int c3ae_trunk(const int8_t input[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3], void *work, int8_t features[C3AE_MCU_FEATURES]);

/* ---- the generated tables (c3ae_engine_model.c) ---- */
typedef struct {
    const int8_t *w;      /* (cout, k, k, cin) or (cout, cin) */
    const int32_t *bias;  /* bias - input_zero_point * sum(w): the zero point folded in */
    const int32_t *mult;  /* per output channel fixed-point multiplier ... */
    const int8_t *shift;  /* ... and its power-of-two exponent */
    int16_t out_zp;
    int8_t act_min, act_max;
} c3ae_rq;

typedef struct {
    int32_t zp_count;     /* input zero point x values per mean */
    int32_t mean_mult;
    int8_t mean_shift, mean_zp, in_zp, scale_zp;
    uint16_t channels, hidden;
    c3ae_rq fc1, fc2;
    const int8_t *table;  /* fc2 output + 128 -> rescale factor (LOGISTIC, then QUANTIZE) */
    int32_t mul_mult;
    int8_t mul_shift, out_zp, act_min, act_max;
} c3ae_se;

enum { C3AE_INPUT = 0, C3AE_CONV = 1, C3AE_POOL = 2, C3AE_NO_SE = 255 };

typedef struct {
    uint8_t kind, k, stride, se;  /* se: index into c3ae_engine_se, or C3AE_NO_SE */
    uint16_t h, w, c, in_c;       /* output rows, columns, channels; input channels */
    uint16_t ring_rows;           /* rows held in the work buffer (h: the whole map is kept) */
    uint32_t offset;              /* where those rows sit in the work buffer */
    const c3ae_rq *rq;            /* convolution */
    int8_t act_min, act_max;      /* average pool clamp */
    const int8_t *table;          /* requantisation after the layer (QUANTIZE), or NULL */
} c3ae_layer;

typedef struct {
    uint8_t first, last;          /* re-run layers first..last, pulling every row of `last` */
} c3ae_pass;

extern const c3ae_layer c3ae_engine_layers[C3AE_ENGINE_LAYERS];
extern const c3ae_se c3ae_engine_se[C3AE_ENGINE_SE_SLOTS];  /* one unused entry when there is none */
extern const c3ae_pass c3ae_engine_passes[C3AE_ENGINE_PASSES];

#ifdef __cplusplus
}
#endif

#endif /* C3AE_ENGINE_H */
