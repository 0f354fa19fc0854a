/* c3ae_mcu.h: the C3AE pipeline around the TFLM trunk graph. C99, no dynamic allocation, no globals written.
 *
 *   for s in 0..C3AE_MCU_CROPS-1:
 *       c3ae_crop(frame, w, h, stride, cx, cy, side, s, crop);      RGB888 frame + face box -> 64x64x3 uint8
 *       c3ae_quantize(crop, input_tensor->data.int8);               uint8 -> the graph's int8 input
 *       interpreter.Invoke();  memcpy(features[s], output->data.int8, C3AE_MCU_FEATURES);
 *   age = c3ae_decode(features, bins);                              W1 + softmax + W2 in float
 */
#ifndef C3AE_MCU_H
#define C3AE_MCU_H

#include <stdint.h>

#include "c3ae_mcu_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Crop ``scale_index`` of the face box (cx, cy, side: square box in frame pixels) out of an RGB888 frame
 * (``stride`` bytes per row), edge-padded, resized to SIZE x SIZE: area average when shrinking, bilinear
 * (11-bit fixed point) when enlarging, as the bundle's crop spec and reference_infer.py. Returns 0, or -1 on bad
 * arguments. */
int c3ae_crop(const uint8_t *rgb, int width, int height, int stride, double cx, double cy, double side,
              int scale_index, uint8_t out[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3]);

/* Row `row` (0..SIZE-1) of that crop, SIZE x 3 uint8: the same pixels c3ae_crop() gives, one row at a time (what
 * the C99 engine streams from the frame). Returns 0, or -1 on bad arguments. */
int c3ae_crop_row(const uint8_t *rgb, int width, int height, int stride, double cx, double cy, double side,
                  int scale_index, int row, uint8_t out[C3AE_MCU_SIZE * 3]);

/* The uint8 -> int8 input table of each colour channel: c3ae_quantize() is input[i] = table[i % 3][crop[i]]. */
void c3ae_quantize_table(int8_t table[3][256]);

/* x = (pixel / 255 - mean) / std, q = round_half_even(x / scale) + zero_point, clamped to int8. */
void c3ae_quantize(const uint8_t crop[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3], int8_t input[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3]);

/* The trunk's int8 features of every crop -> age in years (bins: the 12-bin distribution, may be NULL). */
float c3ae_decode(const int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES], float bins[C3AE_MCU_BINS]);

#ifdef __cplusplus
}
#endif

#endif /* C3AE_MCU_H */
