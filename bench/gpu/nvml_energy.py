# SPDX-License-Identifier: Apache-2.0
"""Energy, power and SM clock of one GPU over a timed region, from NVML through ctypes (the
driver's libnvidia-ml.so.1; no pynvml needed). The twin of bench/gpu/nvml_energy.h, so the HF peer
and the GEMM floor report joules the same way as gpu_rerank_bench."""
import ctypes
import threading
import time


class GpuEnergyMeter:
    def __init__(self, cuda_device=0):
        self.ok = False
        try:
            self._lib = ctypes.CDLL("libnvidia-ml.so.1")
            if self._lib.nvmlInit_v2() != 0:
                return
        except OSError:
            return
        self._dev = ctypes.c_void_p()
        bus = None
        try:
            import torch
            p = torch.cuda.get_device_properties(cuda_device)
            bus = f"{p.pci_domain_id:08x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
        except Exception:  # an older torch without the PCI fields: NVML's own index
            pass
        if bus is not None:
            rc = self._lib.nvmlDeviceGetHandleByPciBusId_v2(bus.encode(), ctypes.byref(self._dev))
        else:
            rc = self._lib.nvmlDeviceGetHandleByIndex_v2(cuda_device, ctypes.byref(self._dev))
        self.ok = rc == 0
        self._thread = None

    def _energy_mj(self):
        mj = ctypes.c_ulonglong(0)
        self._lib.nvmlDeviceGetTotalEnergyConsumption(self._dev, ctypes.byref(mj))
        return mj.value

    def _sample(self):
        mhz = ctypes.c_uint(0)
        while self._running:
            if self._lib.nvmlDeviceGetClockInfo(self._dev, 1, ctypes.byref(mhz)) == 0:  # SM clock
                self._clocks.append(mhz.value)
            time.sleep(0.005)

    def start(self):
        if not self.ok:
            return
        self._clocks = []
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._start_mj = self._energy_mj()
        self._t0 = time.perf_counter()
        self._thread.start()

    def stop(self):
        """(joules, seconds, mean watts, mean SM MHz sampled every 5 ms) of the region; zeros
        without NVML."""
        if not self.ok:
            return 0.0, 0.0, 0.0, 0.0
        mj = self._energy_mj()
        sec = time.perf_counter() - self._t0
        self._running = False
        self._thread.join()
        joules = (mj - self._start_mj) / 1e3
        mhz = sum(self._clocks) / len(self._clocks) if self._clocks else 0.0
        return joules, sec, joules / sec if sec > 0 else 0.0, mhz
