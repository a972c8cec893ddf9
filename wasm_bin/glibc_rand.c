/* rand()/srand() with glibc's exact output sequence, linked into flite.wasm.
 *
 * Why: the clustergen voices (slt, rms, awb) draw excitation noise from libc
 * rand() in src/cg/cst_mlsa.c. wasi-libc (musl) uses a different generator, so
 * without this the wasm build's audio differs from Debian's native flite.
 * This reimplements glibc's default generator (random(3) TYPE_3: an additive
 * lagged-Fibonacci generator x[n] = x[n-3] + x[n-31] mod 2^32, returning
 * bits 31..1, with the state seeded by a Lehmer LCG and the first 310 outputs
 * discarded). Before any srand() call glibc behaves as after srand(1).
 * Written for gflite from the published algorithm; not flite code.
 */
#include <stdint.h>
#include <stdlib.h>

#define DEG 31   /* degree of the trinomial x^31 + x^3 + 1 */
#define SEP 3

static uint32_t state[DEG];
static int front;   /* index of x[n-3] in glibc's terms (its fptr) */
static int rear;    /* index of x[n-31] (its rptr) */
static int seeded;

static uint32_t next_output(void)
{
    state[front] += state[rear];
    uint32_t result = state[front] >> 1;
    front = (front + 1) % DEG;
    rear = (rear + 1) % DEG;
    return result;
}

void srand(unsigned int seed)
{
    /* glibc keeps the LCG value in an int32_t and its quotient and remainder
     * in `long` (64-bit on x86_64); seeds >= 2^31 thus start negative. */
    int32_t word;
    int i;

    if (seed == 0)
        seed = 1;
    state[0] = (uint32_t)seed;
    word = (int32_t)seed;
    for (i = 1; i < DEG; i++) {
        /* 16807 * word % (2^31 - 1) by Schrage's method, as glibc does. */
        int64_t hi = word / 127773;
        int64_t lo = word % 127773;
        word = (int32_t)(16807 * lo - 2836 * hi);
        if (word < 0)
            word += 2147483647;
        state[i] = (uint32_t)word;
    }
    front = SEP;
    rear = 0;
    for (i = 0; i < 10 * DEG; i++)
        (void)next_output();
    seeded = 1;
}

int rand(void)
{
    if (!seeded)
        srand(1);
    return (int)next_output();
}
