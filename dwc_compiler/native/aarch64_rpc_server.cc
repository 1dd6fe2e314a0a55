// dwc's RPC session server for a foreign CPU: serves one TVM RPC session on a socket it inherits,
// with the TVM runtime alone. Cross-compiled for aarch64 and run under qemu-user by
// dwc_compiler/rpc_qemu.py, which does the tracker registration and the handshake in Python on
// the host and hands each accepted connection to a fresh copy of this program.
//
// usage: rpc_server SOCKET_FD WORK_DIR
//   Provides what TVM's Python server registers for a session (the work directory, loading an
//   uploaded module, and random argument filling for MetaSchedule's runner), then runs the
//   runtime's RPC server loop on SOCKET_FD until the client ends the session.
#include <dlfcn.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dwc-rpc-server: %s\n", message.c_str());
  return 1;
}

// Fills a CPU tensor with values MetaSchedule's runner can measure on: uniform in [-1, 1) for
// floating-point tensors (16, 32 or 64 bits), small integers otherwise.
void RandomFill(DLTensor* tensor) {
  int64_t elements = 1;
  for (int d = 0; d < tensor->ndim; ++d) elements *= tensor->shape[d];
  char* base = static_cast<char*>(tensor->data) + tensor->byte_offset;
  std::mt19937 generator(20261122);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int bits = tensor->dtype.bits * tensor->dtype.lanes;
  if (tensor->dtype.code == kDLFloat && bits == 32) {
    float* values = reinterpret_cast<float*>(base);
    for (int64_t i = 0; i < elements; ++i) values[i] = uniform(generator);
  } else if (tensor->dtype.code == kDLFloat && bits == 64) {
    double* values = reinterpret_cast<double*>(base);
    for (int64_t i = 0; i < elements; ++i) values[i] = uniform(generator);
  } else if (tensor->dtype.code == kDLFloat && bits == 16) {
    // Half precision: random mantissas with an exponent of 2^-1 keep every value finite.
    uint16_t* values = reinterpret_cast<uint16_t*>(base);
    for (int64_t i = 0; i < elements; ++i) values[i] = static_cast<uint16_t>(0x3800 | (generator() & 0x3ff));
  } else {
    const int64_t bytes = elements * ((bits + 7) / 8);
    for (int64_t i = 0; i < bytes; ++i) base[i] = static_cast<char>(generator() & 0x7);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return Fail("usage: rpc_server SOCKET_FD WORK_DIR");
  // The RPC server loop, and modules' workspace and parallel-launch hooks, live in the runtime.
  if (!dlopen("libtvm_runtime.so", RTLD_NOW | RTLD_GLOBAL)) return Fail(dlerror());
  const int socket_fd = std::atoi(argv[1]);
  const std::string work_dir = argv[2];
  try {
    using tvm::ffi::Function;
    Function::SetGlobal("tvm.rpc.server.workpath",
                        Function::FromTyped([work_dir](tvm::ffi::String name) -> tvm::ffi::String {
                          return work_dir + "/" + std::string(name);
                        }),
                        true);
    Function::SetGlobal("tvm.rpc.server.load_module",
                        Function::FromTyped([work_dir](tvm::ffi::String name) -> tvm::ffi::Module {
                          return tvm::ffi::Module::LoadFromFile(work_dir + "/" + std::string(name));
                        }),
                        true);
    Function::SetGlobal("tvm.contrib.random.random_fill_for_measure",
                        Function::FromTyped([](DLTensor* tensor) { RandomFill(tensor); }), true);
    Function server_loop = Function::GetGlobalRequired("rpc.ServerLoop");
    server_loop(static_cast<int64_t>(socket_fd));
  } catch (const std::exception& error) {
    return Fail(error.what());
  }
  return 0;
}
