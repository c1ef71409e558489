/*
 * CUDA emulation for tests (not shipped): the grid scheduler. Each CUDA thread is a ucontext fiber; a block runs
 * its fibers in rounds until all of them finished or wait at __syncthreads(), which is released only when every
 * thread of the block waits at the same barrier (anything else is flagged). Blocks, and threads within a round,
 * run forward, reverse or in a seeded random order (ESAN_CUDA_EMU_ORDER=forward|reverse|random[:seed]).
 * __shared__ memory is filled with NaN bytes before every block.
 */
#include "cuda_emu.h"
#include "emu_internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" char __start_cuda_emu_shared[] __attribute__((weak));
extern "C" char __stop_cuda_emu_shared[] __attribute__((weak));

uint3 threadIdx{};
uint3 blockIdx{};
dim3 blockDim{};
dim3 gridDim{};

namespace cuda_emu
{

namespace
{

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxGridYZ = 65535;
constexpr unsigned kMaxGridX = 2147483647U;
constexpr size_t kSharedBytesPerBlock = 48 * 1024; // without the opt-in attribute
constexpr size_t kStackBytes = 128 * 1024;

enum class State : unsigned char
{
    Ready,
    Barrier,
    Done
};

struct Fiber
{
    ucontext_t context;
    State state;
    char const* file;
    int line;
    uint3 index;
};

struct Order
{
    int mode = -1; // 0 forward, 1 reverse, 2 random; -1: not read from the environment yet
    unsigned long long seed = 0;
};

Order g_order;
char* g_stacks = nullptr; // kMaxThreadsPerBlock x [guard page][stack]
size_t g_stackSlot = 0;
std::vector<Fiber> g_fibers;
ucontext_t g_scheduler;
void (*g_body)(void*) = nullptr;
void* g_closure = nullptr;
int g_current = -1;
unsigned long long g_launches = 0;
bool g_dryRun = false;
int g_failAfter = -1;
cudaError_t g_failError = cudaSuccess;

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

Order const& order() noexcept
{
    if (g_order.mode < 0)
    {
        g_order.mode = 0;
        char const* env = std::getenv("ESAN_CUDA_EMU_ORDER");
        if (env != nullptr && std::strncmp(env, "reverse", 7) == 0)
        {
            g_order.mode = 1;
        }
        else if (env != nullptr && std::strncmp(env, "random", 6) == 0)
        {
            g_order.mode = 2;
            g_order.seed = env[6] == ':' ? std::strtoull(env + 7, nullptr, 10) : 0;
        }
    }
    return g_order;
}

bool ensureStacks() noexcept
{
    if (g_stacks != nullptr)
    {
        return true;
    }
    size_t const page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    g_stackSlot = page + kStackBytes;
    void* m = mmap(nullptr, g_stackSlot * kMaxThreadsPerBlock, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
    {
        return false;
    }
    g_stacks = static_cast<char*>(m);
    for (unsigned t = 0; t < kMaxThreadsPerBlock; ++t)
    {
        mprotect(g_stacks + t * g_stackSlot, page, PROT_NONE);
    }
    g_fibers.resize(kMaxThreadsPerBlock);
    return true;
}

void fiberMain()
{
    g_body(g_closure);
    g_fibers[static_cast<size_t>(g_current)].state = State::Done;
} // returns to g_scheduler through uc_link

std::string coords(uint3 v)
{
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string site(Fiber const& f)
{
    return std::string(f.file) + ":" + std::to_string(f.line);
}

//! Runs one block to completion; returns an empty string or what went wrong.
std::string runBlock(unsigned threads, Rng& rng)
{
    if (__start_cuda_emu_shared != nullptr)
    {
        std::memset(__start_cuda_emu_shared, 0xFF, static_cast<size_t>(__stop_cuda_emu_shared - __start_cuda_emu_shared));
    }
    dim3 const bd = blockDim;
    for (unsigned t = 0; t < threads; ++t)
    {
        Fiber& f = g_fibers[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = g_stacks + t * g_stackSlot + (g_stackSlot - kStackBytes);
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &g_scheduler;
        makecontext(&f.context, fiberMain, 0);
        f.state = State::Ready;
        f.index = uint3{t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
    }
    std::vector<unsigned> sequence(threads);
    for (;;)
    {
        for (unsigned i = 0; i < threads; ++i)
        {
            sequence[i] = g_order.mode == 1 ? threads - 1 - i : i;
        }
        if (g_order.mode == 2)
        {
            rng.shuffle(sequence);
        }
        for (unsigned t : sequence)
        {
            Fiber& f = g_fibers[t];
            if (f.state != State::Ready)
            {
                continue;
            }
            g_current = static_cast<int>(t);
            threadIdx = f.index;
            g_activity.thread = f.index;
            g_activity.inThread = true;
            swapcontext(&g_scheduler, &f.context);
            g_activity.inThread = false;
            g_current = -1;
            std::string damage;
            if (!slackIntact(true, damage))
            {
                return "thread " + coords(f.index) + " wrote outside a device allocation: " + damage;
            }
        }
        Fiber const* done = nullptr;
        Fiber const* waiting = nullptr;
        unsigned waitingCount = 0;
        for (unsigned t = 0; t < threads; ++t)
        {
            Fiber const& f = g_fibers[t];
            done = f.state == State::Done && done == nullptr ? &f : done;
            if (f.state == State::Barrier)
            {
                ++waitingCount;
                if (waiting != nullptr && (waiting->line != f.line || std::strcmp(waiting->file, f.file) != 0))
                {
                    return "threads wait at different __syncthreads(): " + site(*waiting) + " (thread "
                        + coords(waiting->index) + ") and " + site(f) + " (thread " + coords(f.index) + ")";
                }
                waiting = waiting == nullptr ? &f : waiting;
            }
        }
        if (waitingCount == 0)
        {
            return {};
        }
        if (done != nullptr)
        {
            return "__syncthreads() at " + site(*waiting) + " reached by " + std::to_string(waitingCount) + " of "
                + std::to_string(threads) + " threads; thread " + coords(done->index) + " exited without it";
        }
        for (unsigned t = 0; t < threads; ++t)
        {
            g_fibers[t].state = State::Ready;
        }
    }
}

std::string checkConfig(Launch const& r)
{
    dim3 const g = r.grid;
    dim3 const b = r.block;
    unsigned long long const threads = 1ULL * b.x * b.y * b.z;
    size_t const staticShared = static_cast<size_t>(__stop_cuda_emu_shared - __start_cuda_emu_shared);
    if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    {
        return "a grid or block dimension is 0";
    }
    if (threads > kMaxThreadsPerBlock || b.x > 1024 || b.y > 1024 || b.z > 64)
    {
        return "block " + coords(uint3{b.x, b.y, b.z}) + " exceeds 1024 threads (x, y <= 1024, z <= 64)";
    }
    if (g.x > kMaxGridX || g.y > kMaxGridYZ || g.z > kMaxGridYZ)
    {
        return "grid " + coords(uint3{g.x, g.y, g.z}) + " exceeds x <= 2^31-1, y, z <= 65535";
    }
    if (r.dynamicSmemBytes + staticShared > kSharedBytesPerBlock)
    {
        return "shared memory " + std::to_string(r.dynamicSmemBytes + staticShared) + " bytes > 48 KiB";
    }
    return {};
}

} // namespace

bool inFiberStackGuard(uintptr_t address) noexcept
{
    if (g_stacks == nullptr)
    {
        return false;
    }
    auto const base = reinterpret_cast<uintptr_t>(g_stacks);
    if (address < base || address >= base + g_stackSlot * kMaxThreadsPerBlock)
    {
        return false;
    }
    return (address - base) % g_stackSlot < g_stackSlot - kStackBytes;
}

bool dryRun() noexcept
{
    return g_dryRun;
}

void syncthreads(char const* file, int line) noexcept
{
    if (g_current < 0)
    {
        poison(cudaErrorLaunchFailure, std::string("__syncthreads() outside a kernel at ") + file);
        return;
    }
    Fiber& f = g_fibers[static_cast<size_t>(g_current)];
    f.state = State::Barrier;
    f.file = file;
    f.line = line;
    swapcontext(&f.context, &g_scheduler);
}

cudaError_t launch(Launch const& r) noexcept
{
    if (stickyError() != cudaSuccess)
    {
        return fail(stickyError());
    }
    if (r.kernel == nullptr || r.body == nullptr)
    {
        return fail(cudaErrorInvalidValue);
    }
    std::string const& name = symbolName(r.kernel);
    std::string const bad = checkConfig(r);
    if (!bad.empty())
    {
        reportFault("launch of " + name + ": " + bad);
        return fail(cudaErrorInvalidConfiguration);
    }
    if (!validStream(r.stream))
    {
        reportFault("launch of " + name + ": unknown stream");
        return fail(cudaErrorInvalidResourceHandle);
    }
    if (g_failAfter >= 0 && g_failAfter-- == 0)
    {
        return fail(g_failError);
    }
    logLaunch(name, r.grid, r.block);
    if (g_dryRun)
    {
        return cudaSuccess;
    }
    if (!ensureStacks())
    {
        return fail(cudaErrorMemoryAllocation);
    }
    Rng rng{order().seed * 0x2545F4914F6CDD1DULL + ++g_launches};
    unsigned const threads = r.block.x * r.block.y * r.block.z;
    unsigned long long const blocks = 1ULL * r.grid.x * r.grid.y * r.grid.z;
    std::vector<unsigned long long> permutation;
    if (g_order.mode == 2)
    {
        permutation.resize(blocks);
        for (unsigned long long i = 0; i < blocks; ++i)
        {
            permutation[i] = i;
        }
        rng.shuffle(permutation);
    }
    DeviceScope scope(name);
    g_body = r.body;
    g_closure = r.closure;
    blockDim = r.block;
    gridDim = r.grid;
    sigjmp_buf jump;
    g_activity.jump = &jump;
    switch (sigsetjmp(jump, 1)) // non-zero: back from the fault handler, which reported the fault
    {
    case 0: break;
    case SIGSEGV:
    case SIGBUS: g_current = -1; return makeSticky(cudaErrorIllegalAddress);
    default: g_current = -1; return makeSticky(cudaErrorLaunchFailure);
    }
    for (unsigned long long i = 0; i < blocks; ++i)
    {
        unsigned long long const linear = g_order.mode == 2 ? permutation[i] : g_order.mode == 1 ? blocks - 1 - i : i;
        uint3 const b{static_cast<unsigned>(linear % r.grid.x), static_cast<unsigned>(linear / r.grid.x % r.grid.y),
            static_cast<unsigned>(linear / (1ULL * r.grid.x * r.grid.y))};
        blockIdx = b;
        g_activity.block = b;
        std::string const problem = runBlock(threads, rng);
        if (!problem.empty())
        {
            return poison(cudaErrorLaunchFailure, name + ", block " + coords(b) + ": " + problem);
        }
    }
    std::string damage;
    if (!slackIntact(false, damage))
    {
        return poison(cudaErrorIllegalAddress, name + " wrote outside a device allocation: " + damage);
    }
    return cudaSuccess;
}

} // namespace cuda_emu

using namespace cuda_emu;

//! mode 0 forward, 1 reverse, 2 seeded random; returns 0, or 1 for an unknown mode.
CUDA_EMU_API int cuda_emu_set_order(int mode, unsigned long long seed)
{
    if (mode < 0 || mode > 2)
    {
        return 1;
    }
    g_order.mode = mode;
    g_order.seed = seed;
    return 0;
}

//! Dry run: launches and cuBLAS calls are checked and logged but not executed (for shapes too big to run).
CUDA_EMU_API void cuda_emu_set_dry_run(int enabled)
{
    g_dryRun = enabled != 0;
}

//! The launch `after` launches from now (0: the next one) fails with `error` before it runs.
CUDA_EMU_API void cuda_emu_fail_launch(int after, int error)
{
    g_failAfter = after;
    g_failError = static_cast<cudaError_t>(error);
}
