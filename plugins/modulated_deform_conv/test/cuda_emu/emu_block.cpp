/*
 * CUDA emulation for tests (not shipped): one block at a time. Each CUDA thread is a ucontext fiber on its own
 * stack (with a guard page); the block runs its fibers in rounds until all of them finished or wait at
 * __syncthreads(), which is released only when every thread of the block waits at the same barrier (anything
 * else is flagged). __shared__ memory (the section cuda_emu_shared) is filled with NaN bytes before every block.
 */
#include "cuda_emu.h"
#include "emu_internal.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstring>
#include <vector>

extern "C" char __start_cuda_emu_shared[] __attribute__((weak));
extern "C" char __stop_cuda_emu_shared[] __attribute__((weak));

namespace cuda_emu
{
namespace
{

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

char* g_stacks = nullptr; // kMaxThreadsPerBlock x [guard page][stack]
size_t g_stackSlot = 0;
std::vector<Fiber> g_fibers;
ucontext_t g_scheduler;
void (*g_body)(void*) = nullptr;
void* g_closure = nullptr;
int g_current = -1;

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

std::string site(Fiber const& f)
{
    return std::string(f.file) + ":" + std::to_string(f.line);
}

} // namespace

std::string coords(uint3 v)
{
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

size_t staticSharedBytes() noexcept
{
    return static_cast<size_t>(__stop_cuda_emu_shared - __start_cuda_emu_shared);
}

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

void abandonBlock() noexcept
{
    g_current = -1;
}

std::string runBlock(void (*body)(void*), void* closure, unsigned threads, int orderMode, Rng& rng)
{
    if (!ensureStacks())
    {
        return "no memory for the fiber stacks";
    }
    if (__start_cuda_emu_shared != nullptr)
    {
        std::memset(__start_cuda_emu_shared, 0xFF, staticSharedBytes());
    }
    g_body = body;
    g_closure = closure;
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
            sequence[i] = orderMode == 1 ? threads - 1 - i : i;
        }
        if (orderMode == 2)
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

} // namespace cuda_emu
