/* dwc's roofline probe: the FMA peak and the streaming bandwidth of this machine, per thread count.
 *
 * usage: roofline fma THREADS            -> prints "gflops <value>"
 *        roofline copy THREADS BYTES     -> prints "gbytes_per_s <value>" (bytes read + written)
 * Built by dwc_compiler/benchmarking/roofline.py with -O3 -march=native -fopenmp. The FMA loop
 * keeps 12 independent accumulators (one vector register each) per thread, enough to hide the FMA
 * latency on every x86 core dwc targets; the copy loop streams a working set of BYTES (read once,
 * written once) repeatedly.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCUMULATORS 12
/* One accumulator is one vector register: 16 floats with AVX-512 (32 registers), 8 with AVX2 (16
 * registers), 4 otherwise. Accumulators of 16 floats on AVX2 took two registers each, and 24 of
 * them spilled half to the stack: the loop then measured store forwarding, 40-87 GFLOP/s from one
 * run to the next on the 2-core znver3 machine, whose kernels reach 67. */
#if defined(__AVX512F__)
#define VECTOR 16
#elif defined(__AVX__)
#define VECTOR 8
#else
#define VECTOR 4
#endif

static double now(void) { return omp_get_wtime(); }

static double fma_peak(int threads) {
  const long iterations = 20000000;
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    double start = now();
#pragma omp parallel num_threads(threads)
    {
      float acc[ACCUMULATORS][VECTOR];
      float scale[VECTOR], shift[VECTOR];
      for (int v = 0; v < VECTOR; ++v) {
        scale[v] = 0.9999f;
        shift[v] = 0.0001f * (omp_get_thread_num() + 1);  /* never 0: a decaying sum turns denormal, and Intel cores then run microcode assists */
        for (int a = 0; a < ACCUMULATORS; ++a) acc[a][v] = (float)a;
      }
      for (long i = 0; i < iterations / ACCUMULATORS; ++i) {
        for (int a = 0; a < ACCUMULATORS; ++a) {
#pragma omp simd
          for (int v = 0; v < VECTOR; ++v) acc[a][v] = acc[a][v] * scale[v] + shift[v];
        }
      }
      float sum = 0;
      for (int a = 0; a < ACCUMULATORS; ++a)
        for (int v = 0; v < VECTOR; ++v) sum += acc[a][v];
      if (sum == 12345.678f) printf("unlikely\n");
    }
    double seconds = now() - start;
    double gflops = 2.0 * VECTOR * (double)(iterations / ACCUMULATORS) * ACCUMULATORS * threads / seconds / 1e9;
    if (gflops > best) best = gflops;
  }
  return best;
}

static double copy_bandwidth(int threads, long bytes) {
  long count = bytes / 2 / sizeof(float);
  float* source = aligned_alloc(64, count * sizeof(float));
  float* destination = aligned_alloc(64, count * sizeof(float));
  for (long i = 0; i < count; ++i) { source[i] = (float)i; destination[i] = 0; }
  double best = 0;
  int passes = (int)(4e9 / (double)bytes) + 1;
  for (int trial = 0; trial < 5; ++trial) {
    double start = now();
    for (int pass = 0; pass < passes; ++pass) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
      for (long i = 0; i < count; ++i) destination[i] = source[i] * 1.0001f;
    }
    double seconds = now() - start;
    double rate = (double)passes * 2.0 * count * sizeof(float) / seconds / 1e9;
    if (rate > best) best = rate;
  }
  if (destination[count - 1] == -1.0f) printf("unlikely\n");
  free(source);
  free(destination);
  return best;
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "fma") == 0) {
    printf("gflops %.3f\n", fma_peak(atoi(argv[2])));
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "copy") == 0) {
    printf("gbytes_per_s %.3f\n", copy_bandwidth(atoi(argv[2]), atol(argv[3])));
    return 0;
  }
  fprintf(stderr, "usage: roofline fma THREADS | roofline copy THREADS BYTES\n");
  return 2;
}
