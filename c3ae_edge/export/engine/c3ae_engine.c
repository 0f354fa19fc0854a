/* c3ae_engine.c: the int8 trunk executor (see c3ae_engine.h). C99; the network itself is data in
 * c3ae_engine_model.c. The arithmetic is TFLite's for int8 kernels: int32 accumulation, per-channel fixed-point
 * requantisation (rounding doubling high multiply, then a rounding divide by a power of two), integer average pool
 * rounding half away from zero, integer mean, and 256-entry tables for LOGISTIC and QUANTIZE.
 *
 * Layers produce rows on demand: asking a layer for row y makes it ask its input for the rows its kernel needs,
 * down to the crop, which is cut from the frame one row at a time. Each layer keeps `ring_rows` rows in the work
 * buffer; a kept layer keeps them all. A pass pulls every row of one layer (c3ae_engine_passes); a squeeze-excite
 * block on a streamed layer gets one pass for its channel means, then the next pass applies it.
 * Needs >> on negative int32 to be arithmetic (GCC, Clang, IAR, Arm Compiler, MSVC all do).
 */
#include "c3ae_engine.h"

#include <stddef.h>
#include <string.h>

typedef void (*c3ae_row_fn)(const void *ctx, int row, int8_t *out);

typedef struct {
    uint8_t *work;
    c3ae_row_fn src;
    const void *src_ctx;
    int16_t next[C3AE_ENGINE_LAYERS];   /* next row each layer will produce */
    uint8_t ready[C3AE_ENGINE_SE_SLOTS]; /* squeeze-excite factors known */
} c3ae_run;

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* (a * b * 2) >> 32 rounded to nearest (ties toward +infinity); saturates the one overflowing case. */
static inline int32_t srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^e rounded to nearest, ties away from zero. */
static inline int32_t rdbpot(int32_t x, int e)
{
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask, threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > threshold ? 1 : 0);
}

static inline int32_t mbqm(int32_t x, int32_t mult, int shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int32_t requant(const c3ae_rq *q, int oc, int32_t acc)
{
    return clamp32(mbqm(acc, q->mult[oc], q->shift[oc]) + q->out_zp, q->act_min, q->act_max);
}

static int8_t *ring_row(const c3ae_run *r, int li, int y)
{
    const c3ae_layer *L = &c3ae_engine_layers[li];
    return (int8_t *)(r->work + L->offset) + (size_t)(y % L->ring_rows) * L->w * L->c;
}

/* Four output channels at a time: each input byte is loaded once for four multiply-accumulates. */
static void conv4(const c3ae_layer *L, const int8_t *const *in, int x, int oc, int8_t *out)
{
    const c3ae_rq *q = L->rq;
    const int span = L->k * L->in_c, per_oc = L->k * span;
    const int8_t *w0 = q->w + oc * per_oc, *w1 = w0 + per_oc, *w2 = w1 + per_oc, *w3 = w2 + per_oc;
    int32_t a0 = q->bias[oc], a1 = q->bias[oc + 1], a2 = q->bias[oc + 2], a3 = q->bias[oc + 3];
    for (int ky = 0; ky < L->k; ky++) {
        const int8_t *p = in[ky] + x * L->stride * L->in_c;
        for (int i = 0; i < span; i++) {
            const int32_t v = p[i];
            a0 += w0[i] * v;
            a1 += w1[i] * v;
            a2 += w2[i] * v;
            a3 += w3[i] * v;
        }
        w0 += span, w1 += span, w2 += span, w3 += span;
    }
    out[oc] = (int8_t)requant(q, oc, a0);
    out[oc + 1] = (int8_t)requant(q, oc + 1, a1);
    out[oc + 2] = (int8_t)requant(q, oc + 2, a2);
    out[oc + 3] = (int8_t)requant(q, oc + 3, a3);
}

static void conv_row(const c3ae_layer *L, const int8_t *const *in, int8_t *out)
{
    const c3ae_rq *q = L->rq;
    const int span = L->k * L->in_c, step = L->stride * L->in_c, blocked = L->c & ~3;
    for (int x = 0; x < L->w; x++, out += L->c) {
        for (int oc = 0; oc < blocked; oc += 4) conv4(L, in, x, oc, out);
        for (int oc = blocked; oc < L->c; oc++) {  /* the channels left over */
            const int8_t *w = q->w + oc * L->k * span;
            int32_t acc = q->bias[oc];
            for (int ky = 0; ky < L->k; ky++, w += span) {
                const int8_t *p = in[ky] + x * step;
                for (int i = 0; i < span; i++) acc += (int32_t)w[i] * p[i];
            }
            out[oc] = (int8_t)requant(q, oc, acc);
        }
    }
}

static void pool_row(const c3ae_layer *L, const int8_t *const *in, int8_t *out)
{
    const int c = L->c, n = L->k * L->k;
    for (int x = 0; x < L->w; x++)
        for (int ch = 0; ch < c; ch++) {
            int32_t acc = 0;
            for (int ky = 0; ky < L->k; ky++)
                for (int kx = 0; kx < L->k; kx++) acc += in[ky][(x * L->stride + kx) * c + ch];
            acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
            out[x * c + ch] = (int8_t)clamp32(acc, L->act_min, L->act_max);
        }
}

static void dense(const c3ae_rq *q, const int8_t *in, int n_in, int8_t *out, int n_out)
{
    for (int o = 0; o < n_out; o++) {
        int32_t acc = q->bias[o];
        for (int i = 0; i < n_in; i++) acc += (int32_t)q->w[o * n_in + i] * in[i];
        out[o] = (int8_t)requant(q, o, acc);
    }
}

static int16_t *se_factors(const c3ae_run *r, int se)
{
    return (int16_t *)(r->work + C3AE_ENGINE_OFF_SCALES) + se * C3AE_ENGINE_CMAX;
}

/* Channel means of the map (from the sums of its rows), two small layers, the sigmoid table: the factors. */
static void se_compute(c3ae_run *r, int se)
{
    const c3ae_se *s = &c3ae_engine_se[se];
    const int32_t *sums = (const int32_t *)(r->work + C3AE_ENGINE_OFF_SUMS);
    int8_t mean[C3AE_ENGINE_CMAX], hid[C3AE_ENGINE_CMAX], out[C3AE_ENGINE_CMAX];
    for (int c = 0; c < s->channels; c++)
        mean[c] = (int8_t)clamp32(mbqm(sums[c] - s->zp_count, s->mean_mult, s->mean_shift) + s->mean_zp, -128, 127);
    dense(&s->fc1, mean, s->channels, hid, s->hidden);
    dense(&s->fc2, hid, s->hidden, out, s->channels);
    int16_t *f = se_factors(r, se);
    for (int c = 0; c < s->channels; c++) f[c] = (int16_t)(s->table[out[c] + 128] - s->scale_zp);
}

static void se_apply(const c3ae_run *r, int se, int8_t *x, int pixels)
{
    const c3ae_se *s = &c3ae_engine_se[se];
    const int16_t *f = se_factors(r, se);
    for (int p = 0; p < pixels; p++, x += s->channels)
        for (int c = 0; c < s->channels; c++) {
            int32_t v = mbqm((x[c] - s->in_zp) * f[c], s->mul_mult, s->mul_shift) + s->out_zp;
            x[c] = (int8_t)clamp32(v, s->act_min, s->act_max);
        }
}

/* After a row is made: its requantisation table, then its squeeze-excite (sums while the factors are unknown). */
static void post_row(c3ae_run *r, const c3ae_layer *L, int8_t *x)
{
    const int n = L->w * L->c;
    if (L->table)
        for (int i = 0; i < n; i++) x[i] = L->table[x[i] + 128];
    if (L->se == C3AE_NO_SE) return;
    if (r->ready[L->se]) {
        se_apply(r, L->se, x, L->w);
        return;
    }
    int32_t *sums = (int32_t *)(r->work + C3AE_ENGINE_OFF_SUMS);
    for (int i = 0; i < n; i++) sums[i % L->c] += x[i];
}

static const int8_t *get_row(c3ae_run *r, int li, int y);

static void make_row(c3ae_run *r, int li, int y)
{
    const c3ae_layer *L = &c3ae_engine_layers[li];
    int8_t *out = ring_row(r, li, y);
    if (L->kind == C3AE_INPUT) {
        r->src(r->src_ctx, y, out);
    } else {
        const int8_t *in[C3AE_ENGINE_MAX_K];
        const int y0 = y * L->stride;
        get_row(r, li - 1, y0 + L->k - 1);  /* makes every row up to the last one the kernel needs */
        for (int i = 0; i < L->k; i++) in[i] = ring_row(r, li - 1, y0 + i);
        if (L->kind == C3AE_CONV)
            conv_row(L, in, out);
        else
            pool_row(L, in, out);
    }
    post_row(r, L, out);
}

static const int8_t *get_row(c3ae_run *r, int li, int y)
{
    while (r->next[li] <= y) {
        int row = r->next[li]++;
        make_row(r, li, row);
    }
    return ring_row(r, li, y);
}

static void run_pass(c3ae_run *r, const c3ae_pass *p)
{
    const c3ae_layer *L = &c3ae_engine_layers[p->last];
    const int fresh = L->se != C3AE_NO_SE && !r->ready[L->se];
    for (int i = p->first; i <= p->last; i++) r->next[i] = 0;
    if (fresh) memset(r->work + C3AE_ENGINE_OFF_SUMS, 0, 4 * C3AE_ENGINE_CMAX);
    get_row(r, p->last, L->h - 1);
    if (!fresh) return;
    se_compute(r, L->se);
    r->ready[L->se] = 1;
    if (L->ring_rows == L->h) se_apply(r, L->se, ring_row(r, p->last, 0), L->h * L->w);  /* kept: in place */
}

static void run_trunk(c3ae_row_fn src, const void *ctx, void *work, int8_t *features)
{
    c3ae_run r;
    memset(&r, 0, sizeof r);
    r.work = (uint8_t *)work;
    r.src = src;
    r.src_ctx = ctx;
    for (int p = 0; p < C3AE_ENGINE_PASSES; p++) run_pass(&r, &c3ae_engine_passes[p]);
    memcpy(features, ring_row(&r, C3AE_ENGINE_LAYERS - 1, 0), C3AE_MCU_FEATURES);
}

static void array_row(const void *ctx, int row, int8_t *out)
{
    memcpy(out, (const int8_t *)ctx + (size_t)row * C3AE_MCU_SIZE * 3, C3AE_MCU_SIZE * 3);
}

int c3ae_trunk(const int8_t input[C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3], void *work, int8_t features[C3AE_MCU_FEATURES])
{
    if (!input || !work || !features || ((uintptr_t)work & 3u)) return -1;
    run_trunk(array_row, input, work, features);
    return 0;
}

typedef struct {
    const uint8_t *frame;
    int width, height, stride, scale;
    const c3ae_box *box;
    const int8_t (*table)[256];
} c3ae_frame_src;

/* One crop row straight from the frame, quantised in place through the per-channel input table. */
static void frame_row(const void *ctx, int row, int8_t *out)
{
    const c3ae_frame_src *f = (const c3ae_frame_src *)ctx;
    uint8_t *px = (uint8_t *)out;
    c3ae_crop_row(f->frame, f->width, f->height, f->stride, f->box->cx, f->box->cy, f->box->side, f->scale, row, px);
    for (int i = 0; i < C3AE_MCU_SIZE * 3; i++) out[i] = f->table[i % 3][px[i]];
}

int c3ae_features(const uint8_t *frame, int width, int height, int stride, const c3ae_box *box, void *work,
                  int8_t features[C3AE_MCU_CROPS][C3AE_MCU_FEATURES])
{
    if (!frame || !box || !work || !features || ((uintptr_t)work & 3u) || width < 1 || height < 1 ||
        stride < 3 * width || !(box->side > 0.0))
        return -1;
    int8_t (*table)[256] = (int8_t (*)[256])((uint8_t *)work + C3AE_ENGINE_OFF_QLUT);
    c3ae_quantize_table(table);
    c3ae_frame_src src = {frame, width, height, stride, 0, box, (const int8_t (*)[256])table};
    for (int s = 0; s < C3AE_MCU_CROPS; s++) {
        src.scale = s;
        run_trunk(frame_row, &src, work, features[s]);
    }
    return 0;
}

int c3ae_age(const uint8_t *frame, int width, int height, int stride, const c3ae_box *box, void *work, float *age)
{
    if (!age || !work || ((uintptr_t)work & 3u)) return -1;
    int8_t (*feats)[C3AE_MCU_FEATURES] = (int8_t (*)[C3AE_MCU_FEATURES])((uint8_t *)work + C3AE_ENGINE_OFF_FEATURES);
    if (c3ae_features(frame, width, height, stride, box, work, feats)) return -1;
    *age = c3ae_decode((const int8_t (*)[C3AE_MCU_FEATURES])feats, NULL);
    return 0;
}
