/* A stand-in for the CUDA driver (libcuda.so.1) on machines without an NVIDIA GPU.
 *
 * TVM's CUDA runtime library links against the driver; without one it cannot load, and TVM then
 * emits CUDA modules that hold only source. dwc loads this stub in its place at build time, so
 * that device code is compiled by nvcc here and exported as machine code. Every call reports
 * CUDA_ERROR_NO_DEVICE (100): nothing can run on it, and nothing tries to.
 * Built by dwc_compiler/cuda_runtime.py with: gcc -shared -fPIC -Wl,-soname,libcuda.so.1
 */
#include <stddef.h>

#define CUDA_ERROR_NO_DEVICE 100

static const char kNoDevice[] = "CUDA_ERROR_NO_DEVICE (dwc's build-time stand-in for libcuda.so.1)";

int cuGetErrorName(int error, const char** name) {
  (void)error;
  if (name != NULL) *name = kNoDevice;
  return 0;
}

int cuGetErrorString(int error, const char** text) {
  (void)error;
  if (text != NULL) *text = kNoDevice;
  return 0;
}

int cuDeviceGetName(void) { return CUDA_ERROR_NO_DEVICE; }
int cuFuncSetAttribute(void) { return CUDA_ERROR_NO_DEVICE; }
int cuLaunchKernelEx(void) { return CUDA_ERROR_NO_DEVICE; }
int cuModuleGetFunction(void) { return CUDA_ERROR_NO_DEVICE; }
int cuModuleLoadData(void) { return CUDA_ERROR_NO_DEVICE; }
int cuModuleUnload(void) { return CUDA_ERROR_NO_DEVICE; }
int cuTensorMapEncodeTiled(void) { return CUDA_ERROR_NO_DEVICE; }
