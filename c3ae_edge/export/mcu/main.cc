/* main.cc: on-board runner for the C3AE TFLM bundle (C++17, TFLM + CMSIS-NN kernels).
 *
 * Crops a face from a frame, runs the trunk once per crop, decodes the age, and prints one JSON line with the
 * per-inference cycle counts of the core's own counter:
 *   {"runner": "tflm-board", "model": ..., "backend": "tflm", "precision": "int8", "cycles": [...], "cpu_hz": ..., "age": ...}
 * Cycle counter: Cortex-M3/M4/M7/M33/M55: the DWT cycle counter (DWT_CYCCNT); ESP-IDF (ESP32-S3 Xtensa LX7: the
 * CCOUNT special register; ESP32-C3: its performance counter): esp_cpu_get_cycle_count(). On ESP-IDF the entry
 * point is app_main(). C3AE_CPU_HZ (c3ae_model.h) is the target's core clock; define your own to override it.
 * Build: add this file, c3ae_mcu.c, c3ae_mcu_model.c and TFLM (CMSIS-NN / esp-nn kernels) to your firmware and
 * provide c3ae_frame()/c3ae_face_box() (your camera and detector) and printf (your UART).
 */
#include <stdio.h>
#include <string.h>

#include "c3ae_mcu.h"
#include "c3ae_model.h"
#include "c3ae_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

#define C3AE_RUNS 20

#if defined(ESP_PLATFORM)
#include "esp_cpu.h"
static void cycles_init(void) {}
static uint32_t cycles(void) { return (uint32_t)esp_cpu_get_cycle_count(); }
#else
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
static void cycles_init(void)
{
    DEMCR |= 1u << 24;  /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;     /* CYCCNTENA */
}
static uint32_t cycles(void) { return DWT_CYCCNT; }
#endif

extern "C" const uint8_t *c3ae_frame(int *width, int *height, int *stride);      /* RGB888 */
extern "C" void c3ae_face_box(double *cx, double *cy, double *side);

alignas(16) static uint8_t arena[C3AE_TFLM_ARENA_BYTES];
static uint8_t crop[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3];
static int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES];

static int run(void)
{
    cycles_init();
    static C3aeOpResolver ops;
    if (!c3ae_register_ops(ops)) return 1;
    static tflite::MicroInterpreter it(tflite::GetModel(c3ae_trunk_tflite), ops, arena, sizeof arena);
    if (it.AllocateTensors() != kTfLiteOk) return 2;
    int w, h, stride;
    double cx, cy, side;
    const uint8_t *frame = c3ae_frame(&w, &h, &stride);
    c3ae_face_box(&cx, &cy, &side);
    uint32_t spent[C3AE_RUNS];
    float age = 0.0f;
    for (int r = 0; r < C3AE_RUNS; r++) {
        uint32_t t0 = cycles();
        for (int s = 0; s < C3AE_MCU_CROPS; s++) {
            c3ae_crop(frame, w, h, stride, cx, cy, side, s, crop);
            c3ae_quantize(crop, it.input(0)->data.int8);
            if (it.Invoke() != kTfLiteOk) return 3;
            memcpy(features[s], it.output(0)->data.int8, C3AE_MCU_FEATURES);
        }
        age = c3ae_decode(features, NULL);
        spent[r] = cycles() - t0;
    }
    printf("{\"runner\": \"tflm-board\", \"model\": \"%s\", \"backend\": \"tflm\", \"precision\": \"int8\", \"arena_bytes\": %u, "
           "\"arena_used_bytes\": %u, \"cpu_hz\": %u, \"age\": %.3f, \"cycles\": [", C3AE_MODEL_NAME, (unsigned)sizeof arena,
           (unsigned)it.arena_used_bytes(), (unsigned)C3AE_CPU_HZ, (double)age);
    for (int r = 0; r < C3AE_RUNS; r++) printf("%s%lu", r ? ", " : "", (unsigned long)spent[r]);
    printf("]}\n");
    return 0;
}

#if defined(ESP_PLATFORM)
extern "C" void app_main(void) { run(); }
#else
int main(void) { return run(); }
#endif
