/* selftest.c: runs the engine on the embedded faces (selftest_data.c: real frames with their face boxes, and the
 * features TFLite Micro computed from the same crops at export) and prints one JSON line per face, then a summary
 * line: {"core", "faces", "bit_exact", "instructions", "trunk_instructions", "work_bytes", "guard_intact", ...}.
 *
 * Built for this host (make host-test) or for an emulated core (make qemu-m4 / qemu-m7 / qemu-rv32). Under QEMU with
 * -icount shift=0 every guest instruction advances the virtual clock by exactly 1 ns, so a timer on that clock
 * counts instructions: the MPS2 boards' CMSDK timer 0 runs at 25 MHz (one tick = 40 instructions), and RISC-V's
 * minstret counter reads the instruction count itself. These are emulated instruction counts, not time: no
 * pipeline, cache or flash wait state is modelled. A calibration loop of known length checks the conversion.
 * Output goes through semihosting (printf of picolibc's semihost library); the firmware ends with a semihosting
 * exit call, since QEMU keeps running when main returns.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "c3ae_engine.h"
#include "selftest_data.h"

#ifndef C3AE_SELFTEST_CORE
#define C3AE_SELFTEST_CORE "host"
#endif
#define GUARD_WORDS 16
#define GUARD 0xA5C3AE5Au
#define WORK_WORDS (C3AE_ENGINE_WORK_BYTES / 4)
#define CAL_LOOPS 1048576u

static uint32_t arena[GUARD_WORDS + WORK_WORDS + GUARD_WORDS];

#if defined(C3AE_COUNT_MPS2_TIMER) /* CMSDK APB timer 0 of the MPS2 FPGA images: 32-bit down counter, 25 MHz */
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)
#define INSTR_PER_TICK 40u /* 1 ns per instruction (-icount shift=0), 40 ns per 25 MHz tick */
static void counter_init(void)
{
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1u;
}
static uint64_t counter(void) { return (uint64_t)(0xFFFFFFFFu - TIMER0_VALUE) * INSTR_PER_TICK; }
#define HAVE_COUNTER 1
#elif defined(C3AE_COUNT_MINSTRET) /* RISC-V minstret/minstreth (csrr, encoded for assemblers without zicsr) */
static void counter_init(void) {}
static uint32_t csr_instret(void)
{
    uint32_t v;
    __asm__ volatile(".insn i 0x73, 2, %0, x0, -1278" : "=r"(v)); /* csrr v, minstret */
    return v;
}
static uint32_t csr_instreth(void)
{
    uint32_t v;
    __asm__ volatile(".insn i 0x73, 2, %0, x0, -1150" : "=r"(v)); /* csrr v, minstreth */
    return v;
}
static uint64_t counter(void)
{
    uint32_t hi, lo;
    do {
        hi = csr_instreth();
        lo = csr_instret();
    } while (hi != csr_instreth());
    return ((uint64_t)hi << 32) | lo;
}
#define HAVE_COUNTER 1
#else
static void counter_init(void) {}
static uint64_t counter(void) { return 0; }
#define HAVE_COUNTER 0
#endif

/* A loop of exactly 2 instructions per iteration, to check the instruction count. */
static void known_loop(uint32_t n)
{
#if defined(__arm__) && HAVE_COUNTER
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
#elif defined(__riscv) && HAVE_COUNTER
    __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(n));
#else
    (void)n;
#endif
}

#if defined(__arm__) || defined(__riscv)
static long semihost(long op, const void *arg)
{
#if defined(__arm__)
    register long r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
#else
    register long a0 __asm__("a0") = op;
    register const void *a1 __asm__("a1") = arg;
    __asm__ volatile(".option push\n\t.option norvc\n\t.balign 16\n\tslli zero, zero, 0x1f\n\tebreak\n\t"
                     "srai zero, zero, 7\n\t.option pop"
                     : "+r"(a0)
                     : "r"(a1)
                     : "memory");
    return a0;
#endif
}
static int finish(int code)
{
    long block[2] = {0x20026, code}; /* ADP_Stopped_ApplicationExit, exit code: SYS_EXIT_EXTENDED */
    fflush(stdout);
    semihost(0x20, block);
    for (;;) {
    }
    return code; /* not reached: QEMU stops at the exit call */
}
#else
static int finish(int code) { return code; }
#endif

static uint32_t fnv1a(uint32_t h, const int8_t *p, int n)
{
    for (int i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static void print_count(const char *key, uint64_t v)
{
    if (HAVE_COUNTER)
        printf(", \"%s\": %lu", key, (unsigned long)v);
    else
        printf(", \"%s\": null", key);
}

int main(void)
{
    static int8_t feats[C3AE_MCU_CROPS][C3AE_MCU_FEATURES];
    int exact = 1;
    uint64_t total = 0;
    uint32_t digest = 2166136261u;
    void *work = &arena[GUARD_WORDS];
    for (int i = 0; i < GUARD_WORDS + WORK_WORDS + GUARD_WORDS; i++) arena[i] = GUARD;
    counter_init();
    uint64_t c0 = counter();
    known_loop(CAL_LOOPS);
    uint64_t cal = counter() - c0;
    for (int f = 0; f < C3AE_SELFTEST_FACES; f++) {
        const c3ae_selftest_face *face = &c3ae_selftest_faces[f];
        float age = 0.0f;
        uint64_t t0 = counter();
        int rc = c3ae_features(face->rgb, face->width, face->height, face->width * 3, &face->box, work, feats);
        if (rc == 0) age = c3ae_decode((const int8_t (*)[C3AE_MCU_FEATURES])feats, NULL);
        uint64_t n = counter() - t0;
        int same = rc == 0 && memcmp(feats, face->golden, sizeof feats) == 0;
        exact &= same;
        total += n;
        digest = fnv1a(digest, &feats[0][0], (int)sizeof feats);
        printf("{\"face\": %d, \"file\": \"%s\", \"bit_exact\": %s", f, face->name, same ? "true" : "false");
        print_count("instructions", n);
        printf(", \"age\": %.4f, \"golden_age\": %.4f}\n", (double)age, (double)face->golden_age);
    }
    int8_t one[C3AE_MCU_FEATURES];
    uint64_t t0 = counter();
    int rc = c3ae_trunk(c3ae_selftest_crop, work, one);
    uint64_t trunk = counter() - t0;
    exact &= rc == 0 && memcmp(one, c3ae_selftest_crop_golden, sizeof one) == 0;
    int intact = 1;
    for (int i = 0; i < GUARD_WORDS; i++) intact &= arena[i] == GUARD && arena[GUARD_WORDS + WORK_WORDS + i] == GUARD;
    printf("{\"core\": \"%s\", \"faces\": %d, \"bit_exact\": %s", C3AE_SELFTEST_CORE, C3AE_SELFTEST_FACES,
           exact ? "true" : "false");
    print_count("instructions", total / C3AE_SELFTEST_FACES);
    print_count("trunk_instructions", trunk);
    print_count("calibration_instructions", cal);
    printf(", \"calibration_expected\": %lu, \"work_bytes\": %d, \"guard_intact\": %s, \"digest\": \"%08lx\"}\n",
           (unsigned long)(2u * CAL_LOOPS), C3AE_ENGINE_WORK_BYTES, intact ? "true" : "false",
           (unsigned long)digest);
    return finish(exact && intact ? 0 : 1);
}
