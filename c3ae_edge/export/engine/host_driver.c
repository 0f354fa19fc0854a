/* host_driver.c: c3ae-edge's host harness for a bundle's engine (export verification and `c3ae-edge verify`).
 * stdin "trunk N\n" + N int8 crops  -> stdout N x FEATURES int8 (c3ae_trunk)
 * stdin "frame W H CX CY SIDE\n" + W*H*3 RGB bytes -> stdout CROPS int8 inputs (c3ae_crop + c3ae_quantize), CROPS x
 *       FEATURES int8 (c3ae_features: rows streamed from the frame), the age as float32 (c3ae_decode)
 * The work buffer is malloc'd at exactly C3AE_ENGINE_WORK_BYTES, so an address sanitizer build catches any overrun. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c3ae_engine.h"

#define CROP_BYTES (C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3)

static int trunk(long n, void *work)
{
    static int8_t in[CROP_BYTES];
    int8_t f[C3AE_MCU_FEATURES];
    for (long i = 0; i < n; i++) {
        if (fread(in, 1, sizeof in, stdin) != sizeof in) return 2;
        if (c3ae_trunk(in, work, f)) return 3;
        fwrite(f, 1, sizeof f, stdout);
    }
    return 0;
}

static int frame(void *work)
{
    int w, h;
    c3ae_box box;
    if (scanf("%d %d %lf %lf %lf", &w, &h, &box.cx, &box.cy, &box.side) != 5 || w < 1 || h < 1) return 1;
    getchar();
    uint8_t *rgb = malloc((size_t)w * h * 3), crop[CROP_BYTES];
    int8_t q[CROP_BYTES], f[C3AE_MCU_CROPS][C3AE_MCU_FEATURES];
    if (!rgb || fread(rgb, 1, (size_t)w * h * 3, stdin) != (size_t)w * h * 3) return 2;
    for (int s = 0; s < C3AE_MCU_CROPS; s++) {
        if (c3ae_crop(rgb, w, h, w * 3, box.cx, box.cy, box.side, s, crop)) return 3;
        c3ae_quantize(crop, q);
        fwrite(q, 1, sizeof q, stdout);
    }
    if (c3ae_features(rgb, w, h, w * 3, &box, work, f)) return 4;
    float age = c3ae_decode((const int8_t (*)[C3AE_MCU_FEATURES])f, NULL);
    fwrite(f, 1, sizeof f, stdout);
    fwrite(&age, sizeof age, 1, stdout);
    free(rgb);
    return 0;
}

int main(void)
{
    char mode[16];
    long n = 0;
    void *work = malloc(C3AE_ENGINE_WORK_BYTES);
    if (!work || scanf("%15s", mode) != 1) return 1;
    int rc;
    if (strcmp(mode, "trunk") == 0) {
        if (scanf("%ld", &n) != 1) return 1;
        getchar();
        rc = trunk(n, work);
    } else {
        rc = frame(work);
    }
    free(work);
    return rc;
}
