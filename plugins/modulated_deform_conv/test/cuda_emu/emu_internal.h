/*
 * CUDA emulation for tests (not shipped): state shared by the runtime's translation units.
 */
#ifndef CUDA_EMU_INTERNAL_H
#define CUDA_EMU_INTERNAL_H

#include "cuda_runtime_api.h"

#include <csetjmp>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>

#define CUDA_EMU_API extern "C" __attribute__((visibility("default")))

namespace cuda_emu
{

// ------------------------------------------------------------------ errors (emu_runtime.cpp)

//! Records a failed call: becomes the last error (returned by cudaGetLastError / cudaPeekAtLastError).
cudaError_t fail(cudaError_t error) noexcept;
//! The sticky error that poisons the emulated context (cudaSuccess when none).
cudaError_t stickyError() noexcept;
//! Prints "cuda_emu: <message>" to stderr and keeps it as the last fault message.
void reportFault(std::string const& message) noexcept;
//! Makes `error` sticky, as a kernel fault on a GPU does (every later call fails with it until cudaDeviceReset).
cudaError_t makeSticky(cudaError_t error) noexcept;
//! reportFault and makeSticky.
cudaError_t poison(cudaError_t error, std::string const& message) noexcept;
bool validStream(cudaStream_t stream) noexcept;
//! Appends one line "name gx gy gz bx by bz" to the launch log.
void logLaunch(std::string const& name, dim3 grid, dim3 block);
bool dryRun() noexcept;

// ------------------------------------------------------------------ device memory (emu_memory.cpp)

//! Makes every device allocation readable and writable (true) or inaccessible (false, host code running).
void setDeviceAccess(bool accessible) noexcept;
//! Describes `address` relative to the device allocations (guard pages, freed blocks, fiber stacks).
std::string describeAddress(uintptr_t address);
//! True when [address, address + bytes) lies inside one live device allocation.
bool insideAllocation(void const* address, size_t bytes) noexcept;
//! Checks the NaN-filled slack around every live allocation; appends a description of damage to `where`.
bool slackIntact(bool tailsOnly, std::string& where) noexcept;
void releaseAllMemory() noexcept;

// ------------------------------------------------------------------ faults (emu_runtime.cpp)

//! What the signal handler reports when device code faults; jump is where it returns to.
struct DeviceActivity
{
    bool active = false;
    std::string const* what = nullptr; // kernel name or cuBLAS function
    bool inThread = false;             // a CUDA thread (fiber) is running
    uint3 block{};
    uint3 thread{};
    sigjmp_buf* jump = nullptr;
};
extern DeviceActivity g_activity;

//! For one launch or cuBLAS call: device memory accessible, the fault handler and an alternate signal stack
//! installed, g_activity naming `what`; everything restored on exit.
class DeviceScope
{
public:
    explicit DeviceScope(std::string const& what) noexcept;
    ~DeviceScope();
    DeviceScope(DeviceScope const&) = delete;
    DeviceScope& operator=(DeviceScope const&) = delete;

private:
    stack_t mPreviousStack{};
};
//! Readable name of the function at `address` (demangled, without return and parameter types).
std::string const& symbolName(void const* address);

// ------------------------------------------------------------------ fiber stacks (emu_launch.cpp)

//! True when `address` is in the guard page of a fiber stack (a CUDA thread overflowed its stack).
bool inFiberStackGuard(uintptr_t address) noexcept;

} // namespace cuda_emu

#endif // CUDA_EMU_INTERNAL_H
