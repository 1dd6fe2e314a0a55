// dwc's runner for modules of a foreign CPU: loads a TVM module with the TVM runtime alone and
// calls its "main" on tensors read from raw files. Cross-compiled for aarch64 and run under
// qemu-user by dwc_compiler/emulation.py.
//
// usage: runner MODULE.so REPEATS COUNT (PATH DTYPE_BITS NDIM DIM...){COUNT}
//   COUNT tensors, the op's argument list: every one but the last is read from its file, the last
//   (the output) is written to its file.
//   Prints one line per call: "call_us <microseconds>".
#include <dlfcn.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

struct HostTensor {
  std::string path;
  std::vector<int64_t> shape;
  std::vector<char> data;
  DLTensor tensor;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "dwc-runner: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return Fail("usage: runner MODULE.so REPEATS COUNT (PATH DTYPE_BITS NDIM DIM...){COUNT}");
  // The module's workspace and parallel-launch hooks resolve from the runtime library.
  if (!dlopen("libtvm_runtime.so", RTLD_NOW | RTLD_GLOBAL)) return Fail(dlerror());
  const std::string module_path = argv[1];
  const int repeats = std::atoi(argv[2]);
  const int count = std::atoi(argv[3]);
  if (count < 1) return Fail("COUNT must be at least 1");
  std::vector<HostTensor> tensors(count);
  int arg = 4;
  for (HostTensor& host : tensors) {
    if (arg + 3 > argc) return Fail("missing tensor arguments");
    host.path = argv[arg++];
    const int bits = std::atoi(argv[arg++]);
    const int ndim = std::atoi(argv[arg++]);
    int64_t elements = 1;
    for (int d = 0; d < ndim; ++d) {
      if (arg >= argc) return Fail("missing dimension");
      host.shape.push_back(std::atoll(argv[arg++]));
      elements *= host.shape.back();
    }
    host.data.assign(static_cast<size_t>(elements * bits / 8) + 64, 0);
    host.tensor.data = host.data.data();
    host.tensor.device = DLDevice{kDLCPU, 0};
    host.tensor.ndim = ndim;
    host.tensor.dtype = DLDataType{kDLFloat, static_cast<uint8_t>(bits), 1};
    host.tensor.shape = host.shape.data();
    host.tensor.strides = nullptr;
    host.tensor.byte_offset = 0;
  }
  for (int i = 0; i + 1 < count; ++i) {
    std::ifstream in(tensors[i].path, std::ios::binary);
    if (!in) return Fail("cannot read " + tensors[i].path);
    in.read(tensors[i].data.data(), static_cast<std::streamsize>(tensors[i].data.size() - 64));
  }
  try {
    tvm::ffi::Module module = tvm::ffi::Module::LoadFromFile(module_path);
    tvm::ffi::Function main_function = module->GetFunction("main", true).value();
    std::vector<tvm::ffi::AnyView> arguments;
    for (HostTensor& host : tensors) arguments.emplace_back(&host.tensor);
    for (int r = 0; r < repeats; ++r) {
      auto begin = std::chrono::steady_clock::now();
      tvm::ffi::Any result;
      main_function.CallPacked(arguments.data(), static_cast<int32_t>(arguments.size()), &result);
      auto end = std::chrono::steady_clock::now();
      std::printf("call_us %.3f\n", std::chrono::duration<double, std::micro>(end - begin).count());
    }
  } catch (const std::exception& error) {
    return Fail(error.what());
  }
  HostTensor& output = tensors.back();
  std::ofstream out(output.path, std::ios::binary);
  out.write(output.data.data(), static_cast<std::streamsize>(output.data.size() - 64));
  return out ? 0 : Fail("cannot write " + tensors[2].path);
}
