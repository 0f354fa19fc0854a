/* main.cc: on-board runner for the C3AE TFLM bundle (C++17, TFLM + CMSIS-NN kernels).
 *
 * Crops a face from a frame, runs the trunk once per crop, decodes the age, and prints one line of the bench's
 * JSON schema with per-inference cycles from the DWT cycle counter, so `c3ae-edge bench merge` can take it:
 *   {"runner": "tflm-board", "model": ..., "backend": "tflm", "precision": "int8", "cycles": [...], "cpu_hz": ..., "age": ...}
 * Build: add this file, c3ae_mcu.c, c3ae_mcu_model.c and TFLM (with CMSIS-NN) to your firmware; define
 * C3AE_CPU_HZ and provide c3ae_frame()/c3ae_face_box() (your camera and detector) and printf (your UART).
 */
#include <stdio.h>
#include <string.h>

#include "c3ae_mcu.h"
#include "c3ae_model.h"
#include "c3ae_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

#ifndef C3AE_CPU_HZ
#define C3AE_CPU_HZ 480000000u
#endif
#define C3AE_RUNS 20

#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)

extern "C" const uint8_t *c3ae_frame(int *width, int *height, int *stride);      /* RGB888 */
extern "C" void c3ae_face_box(double *cx, double *cy, double *side);

alignas(16) static uint8_t arena[C3AE_TFLM_ARENA_BYTES];
static uint8_t crop[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3];
static int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES];

int main(void)
{
    DEMCR |= 1u << 24;  /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;     /* CYCCNTENA */
    static C3aeOpResolver ops;
    if (!c3ae_register_ops(ops)) return 1;
    static tflite::MicroInterpreter it(tflite::GetModel(c3ae_trunk_tflite), ops, arena, sizeof arena);
    if (it.AllocateTensors() != kTfLiteOk) return 2;
    int w, h, stride;
    double cx, cy, side;
    const uint8_t *frame = c3ae_frame(&w, &h, &stride);
    c3ae_face_box(&cx, &cy, &side);
    uint32_t cycles[C3AE_RUNS];
    float age = 0.0f;
    for (int r = 0; r < C3AE_RUNS; r++) {
        uint32_t t0 = DWT_CYCCNT;
        for (int s = 0; s < C3AE_MCU_CROPS; s++) {
            c3ae_crop(frame, w, h, stride, cx, cy, side, s, crop);
            c3ae_quantize(crop, it.input(0)->data.int8);
            if (it.Invoke() != kTfLiteOk) return 3;
            memcpy(features[s], it.output(0)->data.int8, C3AE_MCU_FEATURES);
        }
        age = c3ae_decode(features, NULL);
        cycles[r] = DWT_CYCCNT - t0;
    }
    printf("{\"runner\": \"tflm-board\", \"model\": \"%s\", \"backend\": \"tflm\", \"precision\": \"int8\", \"arena_bytes\": %u, "
           "\"arena_used_bytes\": %u, \"cpu_hz\": %u, \"age\": %.3f, \"cycles\": [", C3AE_MODEL_NAME, (unsigned)sizeof arena,
           (unsigned)it.arena_used_bytes(), (unsigned)C3AE_CPU_HZ, (double)age);
    for (int r = 0; r < C3AE_RUNS; r++) printf("%s%lu", r ? ", " : "", (unsigned long)cycles[r]);
    printf("]}\n");
    return 0;
}
