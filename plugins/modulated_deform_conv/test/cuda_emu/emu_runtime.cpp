/*
 * CUDA emulation for tests (not shipped): error state (last error, sticky errors), streams, the launch log and
 * the fault handler that names the kernel, block and thread of a bad access.
 */
#include "emu_internal.h"

#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

namespace cuda_emu
{

DeviceActivity g_activity;

namespace
{

cudaError_t g_lastError = cudaSuccess;
cudaError_t g_sticky = cudaSuccess;
std::string g_lastFault;
int g_faultCount = 0;
std::set<cudaStream_t> g_streams;
std::string g_launchLog;
struct sigaction g_previous[NSIG];
int const kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
constexpr size_t kAltStackBytes = 256 * 1024;

void writeStderr(std::string const& text) noexcept
{
    size_t done = 0;
    while (done < text.size())
    {
        ssize_t const n = write(2, text.data() + done, text.size() - done);
        if (n <= 0)
        {
            return;
        }
        done += static_cast<size_t>(n);
    }
}

char const* signalText(int sig) noexcept
{
    switch (sig)
    {
    case SIGSEGV: return "illegal memory access";
    case SIGBUS: return "bus error";
    case SIGFPE: return "arithmetic exception (integer division by zero?)";
    case SIGILL: return "illegal instruction (a sanitizer trap?)";
    default: return "signal";
    }
}

void onFault(int sig, siginfo_t* info, void* context)
{
    auto const address = reinterpret_cast<uintptr_t>(info->si_addr);
    bool const memory = sig == SIGSEGV || sig == SIGBUS;
    if (g_activity.active && g_activity.jump != nullptr)
    {
        std::string message = signalText(sig);
        if (memory)
        {
#if defined(__x86_64__)
            bool const isWrite = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
            message += isWrite ? " (write)" : " (read)";
#else
            (void) context;
#endif
            char text[40];
            std::snprintf(text, sizeof(text), " at %p: ", info->si_addr);
            message += text + describeAddress(address);
        }
        message += "; in " + (g_activity.what != nullptr ? *g_activity.what : std::string("device code"));
        if (g_activity.inThread)
        {
            message += ", block " + coords(g_activity.block) + ", thread " + coords(g_activity.thread);
        }
        reportFault(message);
        siglongjmp(*g_activity.jump, sig);
    }
    // Emulator code faulted (not device code): restore the previous disposition; the faulting instruction runs
    // again and meets it.
    sigaction(sig, &g_previous[sig], nullptr);
}

} // namespace

cudaError_t fail(cudaError_t error) noexcept
{
    if (error != cudaSuccess)
    {
        g_lastError = error;
    }
    return error;
}

cudaError_t stickyError() noexcept
{
    return g_sticky;
}

void reportFault(std::string const& message) noexcept
{
    g_lastFault = message;
    ++g_faultCount;
    writeStderr("cuda_emu: " + message + "\n");
}

cudaError_t makeSticky(cudaError_t error) noexcept
{
    g_sticky = error;
    return fail(error);
}

cudaError_t poison(cudaError_t error, std::string const& message) noexcept
{
    reportFault(message);
    return makeSticky(error);
}

bool validStream(cudaStream_t stream) noexcept
{
    auto const value = reinterpret_cast<uintptr_t>(stream);
    return value <= 2 || g_streams.count(stream) != 0; // null, cudaStreamLegacy, cudaStreamPerThread, created
}

void logLaunch(std::string const& name, dim3 grid, dim3 block)
{
    char text[96];
    std::snprintf(text, sizeof(text), " %u %u %u %u %u %u\n", grid.x, grid.y, grid.z, block.x, block.y, block.z);
    g_launchLog += name + text;
}

DeviceScope::DeviceScope(std::string const& what) noexcept
{
    for (int sig : kSignals)
    {
        struct sigaction mine{};
        mine.sa_sigaction = &onFault;
        mine.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&mine.sa_mask);
        sigaction(sig, &mine, &g_previous[sig]);
    }
    static thread_local std::vector<char> altStack(kAltStackBytes);
    stack_t mine{};
    mine.ss_sp = altStack.data();
    mine.ss_size = altStack.size();
    sigaltstack(&mine, &mPreviousStack);
    setDeviceAccess(true);
    g_activity = DeviceActivity{};
    g_activity.active = true;
    g_activity.what = &what;
}

DeviceScope::~DeviceScope()
{
    g_activity = DeviceActivity{};
    setDeviceAccess(false);
    sigaltstack(&mPreviousStack, nullptr);
    for (int sig : kSignals)
    {
        sigaction(sig, &g_previous[sig], nullptr);
    }
}

} // namespace cuda_emu

using namespace cuda_emu;

extern "C" cudaError_t cudaGetLastError(void)
{
    if (g_sticky != cudaSuccess)
    {
        return g_sticky;
    }
    cudaError_t const error = g_lastError;
    g_lastError = cudaSuccess;
    return error;
}

extern "C" cudaError_t cudaPeekAtLastError(void)
{
    return g_sticky != cudaSuccess ? g_sticky : g_lastError;
}

extern "C" char const* cudaGetErrorName(cudaError_t error)
{
    switch (error)
    {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
    }
}

extern "C" char const* cudaGetErrorString(cudaError_t error)
{
    return cudaGetErrorName(error);
}

extern "C" cudaError_t cudaDeviceSynchronize(void)
{
    return g_sticky != cudaSuccess ? fail(g_sticky) : cudaSuccess; // launches run synchronously
}

extern "C" cudaError_t cudaDeviceReset(void)
{
    releaseAllMemory();
    for (cudaStream_t s : g_streams)
    {
        delete reinterpret_cast<char*>(s);
    }
    g_streams.clear();
    g_sticky = cudaSuccess;
    g_lastError = cudaSuccess;
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreate(cudaStream_t* stream)
{
    if (stream == nullptr)
    {
        return fail(cudaErrorInvalidValue);
    }
    if (g_sticky != cudaSuccess)
    {
        return fail(g_sticky);
    }
    *stream = reinterpret_cast<cudaStream_t>(new char);
    g_streams.insert(*stream);
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (g_streams.erase(stream) == 0)
    {
        return fail(cudaErrorInvalidResourceHandle);
    }
    delete reinterpret_cast<char*>(stream);
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (!validStream(stream))
    {
        return fail(cudaErrorInvalidResourceHandle);
    }
    return cudaDeviceSynchronize();
}

// ------------------------------------------------------------------ test controls (ctypes)

//! Pretends that an earlier, unrelated launch failed: sets the last error without touching anything else.
CUDA_EMU_API void cuda_emu_set_last_error(int error)
{
    g_lastError = static_cast<cudaError_t>(error);
}

CUDA_EMU_API char const* cuda_emu_last_fault(void)
{
    return g_lastFault.c_str();
}

CUDA_EMU_API int cuda_emu_fault_count(void)
{
    return g_faultCount;
}

//! One line per launch since the last clear: "name gx gy gz bx by bz" (cuBLAS GEMMs: "name m n batch k 1 1").
CUDA_EMU_API char const* cuda_emu_launch_log(void)
{
    return g_launchLog.c_str();
}

CUDA_EMU_API void cuda_emu_clear_launch_log(void)
{
    g_launchLog.clear();
}
