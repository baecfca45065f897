/* layer_profile: microseconds per image of each layer kernel of the given ISA levels, called
 * straight through the kernel table (no Python), so that a change to one kernel shows in its
 * own line. A profile, not a check (tools/c/kernel_check.c checks).
 *
 *     gcc -fPIC -fwrapv -O3 -std=gnu11 -fno-math-errno -fopenmp -Icsrc tools/c/layer_profile.c \
 *         csrc/[a-z]*.c csrc/kernels/[a-z]*.c -o /tmp/layer_profile -lm
 *     /tmp/layer_profile 0 1 2          # ISA numbers: 0 scalar, 1 generic, 2 avx2, 3 avx512
 *
 * (-fPIC -fwrapv: the flags the Python extension is built with.) Each line is the median of 31
 * samples of the calling thread's CPU time, with the spread; every kernel runs on the same
 * buffers again and again, so its data is in L1/L2 as in a long batch. "no act" runs C1 / C3
 * with the activation off, so the difference to the line above is the activation's cost;
 * "n=4" is one 4-image tile of the dense kernel, per image; "fwd" is fl_net_forward on 1 image
 * and on 256 (per image), 1 thread, logits out.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static unsigned long long st = 12345;
static double urand(void) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(st >> 11) * 0x1.0p-53;
}
static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++) {
        const double u = urand(), v = urand();
        x[i] = (float)(sqrt(-2 * log(1 - u)) * cos(6.283185307179586 * v) * s);
    }
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmpd(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
#define NS 31
#define TIME(name, reps, div, stmt)                                                           \
    do {                                                                                      \
        double s_[NS];                                                                        \
        for (int k_ = 0; k_ < NS; k_++) {                                                     \
            const double t0 = now();                                                          \
            for (int r_ = 0; r_ < (reps); r_++) { stmt; }                                     \
            s_[k_] = (now() - t0) / (reps) / (div);                                           \
        }                                                                                     \
        qsort(s_, NS, sizeof(double), cmpd);                                                  \
        printf("  %-16s %8.2f us  (quartiles %.2f..%.2f)\n", name, s_[NS / 2] * 1e6,          \
               s_[NS / 4] * 1e6, s_[3 * NS / 4] * 1e6);                                       \
    } while (0)

int main(int argc, char **argv) {
    static float c1w[150], c1b[6], c3w[2400], c3b[16], c5w[48000], c5b[120], f6w[10080],
        f6b[84], ow[840], ob[10];
    fill(c1w, 150, 0.2); fill(c1b, 6, 0.1); fill(c3w, 2400, 1 / sqrt(150.0)); fill(c3b, 16, 0.1);
    fill(c5w, 48000, 0.05); fill(c5b, 120, 0.1); fill(f6w, 10080, 1 / sqrt(120.0));
    fill(f6b, 84, 0.1); fill(ow, 840, 1 / sqrt(84.0)); fill(ob, 10, 0.1);
    const fl_weights fw = {c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, ow, ob, 1, 10};
    fl_net *net = fl_net_create(&fw, FL_ACT_TANH, FL_POOL_AVG);
    if (!net) return 2;
    static float img[1024] FL_ALIGNED, s2[FL_S2_LEN] FL_ALIGNED, s4[4][FL_S4_LEN] FL_ALIGNED;
    static float c5[4][FL_C5_LD] FL_ALIGNED, f6[4][FL_F6_LD] FL_ALIGNED;
    static float lg[4][FL_OUT_BLOCK] FL_ALIGNED, xa[5376] FL_ALIGNED, ya[5376] FL_ALIGNED;
    static float batch[256 * 1024], out[256 * 10];
    fill(img, 1024, 1); fill(batch, 256 * 1024, 1); fill(s2, FL_S2_LEN, 0.5);
    fill(s4[0], 4 * FL_S4_LEN, 0.5); fill(c5[0], 4 * FL_C5_LD, 0.5); fill(f6[0], 4 * FL_F6_LD, 0.5);
    fill(xa, 5376, 2);
    fl_input in;
    memset(&in, 0, sizeof in);
    in.channels = 1; in.data = batch; in.dtype = FL_DTYPE_F32; in.size = 32; in.scale = 1;
    in.stride_n = 4096; in.stride_h = 128; in.stride_w = 4;
    volatile float sink = 0;
    for (int a = 1; a < argc; a++) {
        const int isa = atoi(argv[a]);
        const fl_kernels *k = fl_kernels_for(isa);
        if (!k) continue;
        printf("%s, us per image\n", fl_isa_name(isa));
        TIME("C1", 300, 1, k->c1(net, img, s2); sink += s2[3]);
        net->act = FL_ACT_NONE;
        TIME("C1 no act", 300, 1, k->c1(net, img, s2); sink += s2[3]);
        net->act = FL_ACT_TANH;
        TIME("C3", 300, 1, k->c3(net, s2, s4[0]); sink += s4[0][3]);
        net->act = FL_ACT_NONE;
        TIME("C3 no act", 300, 1, k->c3(net, s2, s4[0]); sink += s4[0][3]);
        net->act = FL_ACT_TANH;
        for (int n = 1; n <= 4; n += 3) { /* one image, then a tile of 4 */
            const int reps = n == 1 ? 1000 : 500;
            char c5n[16], f6n[16], outn[16];
            snprintf(c5n, sizeof c5n, "C5 n=%d", n);
            snprintf(f6n, sizeof f6n, "F6 n=%d", n);
            snprintf(outn, sizeof outn, "OUT n=%d", n);
            TIME(c5n, reps, n, k->dense(FL_ACT_TANH, s4[0], n, FL_S4_LEN, 400, net->c5_wt,
                                        FL_C5_LD, net->c5_b, 120, c5[0], FL_C5_LD);
                 sink += c5[0][1]);
            TIME(f6n, reps, n, k->dense(FL_ACT_TANH, c5[0], n, FL_C5_LD, 120, net->f6_wt,
                                        FL_F6_LD, net->f6_b, 84, f6[0], FL_F6_LD);
                 sink += f6[0][1]);
            TIME(outn, reps, n, k->dense(FL_ACT_NONE, f6[0], n, FL_F6_LD, 84, net->out_wt,
                                         net->out_ld, net->out_b, 10, lg[0], FL_OUT_BLOCK);
                 sink += lg[0][1]);
        }
        TIME("tanh 5376 floats", 300, 1, k->activation(FL_ACT_TANH, xa, ya, 5376); sink += ya[5]);
        TIME("fwd batch 1", 300, 1,
             fl_net_forward(net, &in, 1, FL_OUT_LOGITS, out, NULL, 1, isa); sink += out[1]);
        TIME("fwd batch 256", 4, 256,
             fl_net_forward(net, &in, 256, FL_OUT_LOGITS, out, NULL, 1, isa); sink += out[1]);
    }
    fl_net_free(net);
    return 0;
}
