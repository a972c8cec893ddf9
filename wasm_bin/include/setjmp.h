/* Minimal <setjmp.h> for building flite against wasi-libc, which has none.
 *
 * flite only uses longjmp in cst_error(), and only when cst_errjmp is set;
 * nothing in the flite program ever sets it, so that path exits via exit(-1).
 * Should it ever be reached, aborting (a wasm trap) is the honest outcome.
 * Written for gflite; not flite code.
 */
#ifndef GFLITE_WASI_SETJMP_H
#define GFLITE_WASI_SETJMP_H

#include <stdlib.h>

typedef long jmp_buf[1];

#define setjmp(env) ((void)(env), 0)
#define longjmp(env, val) ((void)(env), (void)(val), abort())

#endif
