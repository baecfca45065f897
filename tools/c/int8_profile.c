/* int8_profile: microseconds per image of each int8 layer kernel (and the fp32 ones beside
 * them) called straight through the kernel tables, no Python. A profile, not a check
 * (tests/engine/test_int8.py checks).
 *
 *     gcc -fPIC -fwrapv -O3 -std=gnu11 -fno-math-errno -fopenmp -Icsrc tools/c/int8_profile.c \
 *         csrc/[a-z]*.c csrc/kernels/[a-z]*.c -o /tmp/int8_profile -lm
 *     /tmp/int8_profile
 *
 * Rows: the scalar specification, then each int8 level this CPU runs at the avx512 level
 * (avx512vnni, amx), each followed by the fp32 kernels of the same ISA level.
 * Random int8 weights and pixels (the kernels' cost does not depend on the values). Each line
 * is the median of 31 samples of the calling thread's CPU time (min..max in brackets); "fwd"
 * is fl_net_forward on 1 image and on 256 (per image), 1 thread, logits out.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/int8.h"

static unsigned long long st = 12345;
static double urand(void) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(st >> 11) * 0x1.0p-53;
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define SAMPLES 31
typedef void (*bench_fn)(void *ctx);
static void report(const char *name, bench_fn f, void *ctx, int reps, int per) {
    double t[SAMPLES];
    for (int s = 0; s < SAMPLES; s++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++) f(ctx);
        t[s] = (now() - t0) / reps / per * 1e6;
    }
    qsort(t, SAMPLES, sizeof t[0], cmp);
    printf("  %-28s %8.3f us  [%.3f .. %.3f]\n", name, t[SAMPLES / 2], t[0], t[SAMPLES - 1]);
}

typedef struct {
    const fl_int8_kernels *k;
    const fl_kernels *fk;
    const fl_net *net;
    uint8_t img[FL_I8_IMG_LEN], s2[FL_I8_S2_LEN], s4[4][FL_I8_S4_LEN], c5[4][FL_I8_C5_LD];
    float f6[4][FL_F6_LD], logits[4][FL_OUT_BLOCK], fimg[1024], fs2[FL_S2_LEN], fs4[FL_S4_LEN];
    fl_input in;
    float out[256 * 10];
    int isa;
} ctx_t;

static void b_c1(void *p) { ctx_t *c = p; c->k->c1(c->net->q, c->img, c->s2); }
static void b_c3(void *p) { ctx_t *c = p; c->k->c3(c->net->q, c->s2, c->s4[0]); }
static void b_c5(void *p) { ctx_t *c = p; c->k->c5(c->net->q, c->s4[0], 4, c->c5[0]); }
static void b_f6(void *p) { ctx_t *c = p; c->k->f6(c->net->q, c->c5[0], 4, c->f6[0]); }
static void b_out(void *p) {
    ctx_t *c = p;
    c->k->output(c->f6[0], 4, FL_F6_LD, 84, c->net->out_wt, c->net->out_ld, c->net->out_b, 10,
                 c->logits[0], FL_OUT_BLOCK);
}
static void b_fc1(void *p) { ctx_t *c = p; c->fk->c1(c->net, c->fimg, c->fs2); }
static void b_fc3(void *p) { ctx_t *c = p; c->fk->c3(c->net, c->fs2, c->fs4); }
static void b_fwd1(void *p) {
    ctx_t *c = p;
    fl_net_forward(c->net, &c->in, 1, FL_OUT_LOGITS, c->out, NULL, 1, c->isa);
}
static void b_fwd256(void *p) {
    ctx_t *c = p;
    fl_net_forward(c->net, &c->in, 256, FL_OUT_LOGITS, c->out, NULL, 1, c->isa);
}

int main(void) {
    static float w[6 * 25 + 6 + 2400 + 16 + 48000 + 120 + 10080 + 84 + 840 + 10];
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = (float)(urand() - 0.5) * 0.2f;
    fl_weights fw;
    float *p = w;
    fw.c1_w = p; p += 150; fw.c1_b = p; p += 6; fw.c3_w = p; p += 2400; fw.c3_b = p; p += 16;
    fw.c5_w = p; p += 48000; fw.c5_b = p; p += 120; fw.f6_w = p; p += 10080; fw.f6_b = p; p += 84;
    fw.out_w = p; p += 840; fw.out_b = p;
    fw.in_channels = 1; fw.num_classes = 10;
    static int8_t q1[150], q3[2400], q5[48000], q6[10080];
    static int32_t b1[6], b3[16], b5[120], b6[84];
    static float s1[6], s3[16], s5[120], s6[84];
    for (int i = 0; i < 150; i++) q1[i] = (int8_t)(urand() * 255 - 127);
    for (int i = 0; i < 2400; i++) q3[i] = (int8_t)(urand() * 255 - 127);
    for (int i = 0; i < 48000; i++) q5[i] = (int8_t)(urand() * 255 - 127);
    for (int i = 0; i < 10080; i++) q6[i] = (int8_t)(urand() * 255 - 127);
    for (int i = 0; i < 120; i++) { b5[i] = 100; s5[i] = 1e-4f; }
    for (int i = 0; i < 84; i++) { b6[i] = 100; s6[i] = 1e-3f; }
    for (int i = 0; i < 16; i++) { b3[i] = 100; s3[i] = 1e-4f; }
    for (int i = 0; i < 6; i++) { b1[i] = 100; s1[i] = 1e-4f; }
    fl_int8_params qp = {q1, q3, q5, q6, b1, b3, b5, b6, s1, s3, s5, s6,
                         {127, 127, 127}, {128, 128, 128}, 1, 0,
                         getenv("RELU") ? FL_I8_CORE_RELU : FL_I8_CORE_TANH};
    fl_net *net = fl_net_create(&fw, FL_ACT_TANH, FL_POOL_AVG);
    fl_net *fnet = fl_net_create(&fw, FL_ACT_TANH, FL_POOL_AVG);
    if (!net || !fnet || fl_net_set_int8(net, &qp) != FL_OK) return 1;
    static uint8_t pix[256 * 1024];
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)(urand() * 256);
    static ctx_t c;
    c.net = net;
    memset(c.img, 0, sizeof c.img);
    memcpy(c.img, pix, 1024);
    for (int i = 0; i < 1024; i++) c.fimg[i] = pix[i] / 255.0f;
    fl_input in = {pix, FL_DTYPE_U8, 32, 1024, 32, 1, 1.0f / 255, 0, 1, 0, {0}, {0}};
    c.in = in;
    printf("int8 per image (the dense rows: one 4-image tile, per image)\n");
    for (int run = 0; run < 2 + FL_I8_COUNT; run++) {
        /* scalar, then the avx512 level at each int8 level above scalar */
        const int isa = run == 0 ? FL_ISA_SCALAR : FL_ISA_AVX512, cap = run == 0 ? 0 : run;
        if (isa > fl_isa_detect() || cap >= FL_I8_COUNT) continue;
        fl_int8_set_limit(cap);
        if (run > 0 && fl_int8_level(isa) != cap) continue; /* the CPU lacks that level */
        c.k = fl_int8_kernels_for(isa);
        c.isa = isa;
        printf("%s -> int8 %s\n", fl_isa_name(isa), fl_int8_name(fl_int8_level(isa)));
        const int reps = isa == FL_ISA_SCALAR ? 20 : 400;
        report("C1", b_c1, &c, reps, 1);
        report("C3", b_c3, &c, reps, 1);
        report("C5 (n=4)", b_c5, &c, reps, 4);
        report("F6 (n=4)", b_f6, &c, reps, 4);
        report("output (n=4, K=10)", b_out, &c, reps, 4);
        report("fwd n=1", b_fwd1, &c, reps, 1);
        report("fwd n=256", b_fwd256, &c, reps / 20 + 1, 256);
        c.net = fnet;
        c.fk = fl_kernels_for(isa);
        printf("  fp32 %s beside it:\n", fl_isa_name(isa));
        report("fp32 C1", b_fc1, &c, reps, 1);
        report("fp32 C3", b_fc3, &c, reps, 1);
        report("fp32 fwd n=1", b_fwd1, &c, reps, 1);
        report("fp32 fwd n=256", b_fwd256, &c, reps / 20 + 1, 256);
        c.net = net;
    }
    fl_net_free(net);
    fl_net_free(fnet);
    return 0;
}
