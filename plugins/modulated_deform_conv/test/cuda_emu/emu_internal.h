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
#include <utility>
#include <vector>

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

// ------------------------------------------------------------------ blocks (emu_block.cpp)

constexpr unsigned kMaxThreadsPerBlock = 1024;

//! Splitmix64 stream for the seeded random execution order.
struct Rng
{
    unsigned long long state;
    unsigned long long next() noexcept
    {
        unsigned long long z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    template <typename T>
    void shuffle(std::vector<T>& v) noexcept
    {
        for (size_t i = v.size(); i > 1; --i)
        {
            std::swap(v[i - 1], v[next() % i]);
        }
    }
};

//! Runs the block blockIdx (blockDim, gridDim set) with body(closure) as the code of each of its `threads`
//! fibers, resumed in order 0 forward, 1 reverse, 2 shuffled with `rng` in every round. Returns "" or what went
//! wrong (barrier misuse, writes into allocation slack); a fault longjmps out of it (then call abandonBlock).
std::string runBlock(void (*body)(void*), void* closure, unsigned threads, int orderMode, Rng& rng);
void abandonBlock() noexcept;
//! Bytes of all __shared__ variables of the library (every kernel's, together).
size_t staticSharedBytes() noexcept;
//! True when `address` is in the guard page of a fiber stack (a CUDA thread overflowed its stack).
bool inFiberStackGuard(uintptr_t address) noexcept;
std::string coords(uint3 v);

} // namespace cuda_emu

#endif // CUDA_EMU_INTERNAL_H
