// SPDX-License-Identifier: Apache-2.0
// Energy, power and SM clock of one GPU over a timed region, from NVML. libnvidia-ml.so.1 comes
// with the driver and is opened at run time, so nothing is linked and a machine without it just
// reports "no NVML". Under the H200's 700 W cap the rerank pass is power-bound (bench/gpu/NOTES.md,
// session 8): joules per pass say what a change saves where milliseconds alone cannot.
// The twin for the Python benchmarks is bench/gpu/nvml_energy.py.
#ifndef BLOCKRANK_BENCH_GPU_NVML_ENERGY_H_
#define BLOCKRANK_BENCH_GPU_NVML_ENERGY_H_

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <cuda_runtime.h>

namespace blockrank::bench {

class GpuEnergyMeter {
 public:
  struct Reading {
    double joules = 0;       ///< the driver's energy counter, difference over the region
    double seconds = 0;      ///< wall time of the region
    double mean_watts = 0;   ///< joules / seconds
    double mean_sm_mhz = 0;  ///< mean of the SM clock sampled every millisecond
  };

  explicit GpuEnergyMeter(int cuda_device) {
    lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) {
      return;
    }
    const auto sym = [&](const char* name) { return dlsym(lib_, name); };
    init_ = reinterpret_cast<int (*)()>(sym("nvmlInit_v2"));
    shutdown_ = reinterpret_cast<int (*)()>(sym("nvmlShutdown"));
    by_pci_ =
        reinterpret_cast<int (*)(const char*, void**)>(sym("nvmlDeviceGetHandleByPciBusId_v2"));
    energy_ = reinterpret_cast<int (*)(void*, unsigned long long*)>(
        sym("nvmlDeviceGetTotalEnergyConsumption"));
    clock_ = reinterpret_cast<int (*)(void*, int, unsigned*)>(sym("nvmlDeviceGetClockInfo"));
    char bus[32] = {};
    if (init_ == nullptr || shutdown_ == nullptr || by_pci_ == nullptr || energy_ == nullptr ||
        clock_ == nullptr || cudaDeviceGetPCIBusId(bus, sizeof bus, cuda_device) != cudaSuccess ||
        init_() != 0) {
      return;
    }
    initialised_ = true;
    ok_ = by_pci_(bus, &device_) == 0;
  }
  ~GpuEnergyMeter() {
    stop_sampler();
    if (initialised_) {
      shutdown_();
    }
    if (lib_ != nullptr) {
      dlclose(lib_);
    }
  }
  GpuEnergyMeter(const GpuEnergyMeter&) = delete;
  GpuEnergyMeter& operator=(const GpuEnergyMeter&) = delete;

  bool ok() const { return ok_; }

  /// Starts a region: reads the energy counter and starts the clock sampler.
  void start() {
    if (!ok_) {
      return;
    }
    stop_sampler();
    energy_(device_, &start_mj_);
    start_ = std::chrono::steady_clock::now();
    clock_sum_ = 0;
    clock_samples_ = 0;
    running_ = true;
    sampler_ = std::thread([this] {
      while (running_.load()) {
        unsigned mhz = 0;
        if (clock_(device_, /*NVML_CLOCK_SM*/ 1, &mhz) == 0) {
          clock_sum_ += mhz;
          ++clock_samples_;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }

  /// Ends the region started last (a zero Reading without NVML).
  Reading stop() {
    Reading r;
    if (!ok_) {
      return r;
    }
    unsigned long long mj = start_mj_;
    energy_(device_, &mj);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    stop_sampler();
    r.joules = static_cast<double>(mj - start_mj_) / 1e3;
    r.mean_watts = r.seconds > 0 ? r.joules / r.seconds : 0;
    r.mean_sm_mhz = clock_samples_ > 0 ? static_cast<double>(clock_sum_) / clock_samples_ : 0;
    return r;
  }

 private:
  void stop_sampler() {
    running_ = false;
    if (sampler_.joinable()) {
      sampler_.join();
    }
  }

  void* lib_ = nullptr;
  int (*init_)() = nullptr;
  int (*shutdown_)() = nullptr;
  int (*by_pci_)(const char*, void**) = nullptr;
  int (*energy_)(void*, unsigned long long*) = nullptr;
  int (*clock_)(void*, int, unsigned*) = nullptr;
  void* device_ = nullptr;
  bool initialised_ = false, ok_ = false;
  unsigned long long start_mj_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::atomic<bool> running_{false};
  std::thread sampler_;
  unsigned long long clock_sum_ = 0, clock_samples_ = 0;  // written by the sampler only
};

}  // namespace blockrank::bench

#endif  // BLOCKRANK_BENCH_GPU_NVML_ENERGY_H_
