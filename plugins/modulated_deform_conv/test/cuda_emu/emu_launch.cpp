/*
 * CUDA emulation for tests (not shipped): kernel launches. Checks the launch limits (block <= 1024 threads,
 * x, y <= 1024, z <= 64; grid x < 2^31, y, z <= 65535; 48 KiB shared memory) and the stream, honours injected
 * failures and dry runs, and runs the blocks forward, reverse or in a seeded random order
 * (ESAN_CUDA_EMU_ORDER=forward|reverse|random[:seed], or cuda_emu_set_order); see emu_block.cpp for a block.
 */
#include "cuda_emu.h"
#include "emu_internal.h"

#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <vector>

uint3 threadIdx{};
uint3 blockIdx{};
dim3 blockDim{};
dim3 gridDim{};

namespace cuda_emu
{

namespace
{

constexpr unsigned kMaxGridYZ = 65535;
constexpr unsigned kMaxGridX = 2147483647U;
constexpr size_t kSharedBytesPerBlock = 48 * 1024; // without the opt-in attribute

struct Order
{
    int mode = -1; // 0 forward, 1 reverse, 2 random; -1: not read from the environment yet
    unsigned long long seed = 0;
};

Order g_order;
unsigned long long g_launches = 0;
bool g_dryRun = false;
int g_failAfter = -1;
cudaError_t g_failError = cudaSuccess;

void noopKernel() {}

void runNoop(void*)
{
    noopKernel();
}

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

std::string checkConfig(Launch const& r)
{
    dim3 const g = r.grid;
    dim3 const b = r.block;
    unsigned long long const threads = 1ULL * b.x * b.y * b.z;
    size_t const staticShared = staticSharedBytes();
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

bool dryRun() noexcept
{
    return g_dryRun;
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
    blockDim = r.block;
    gridDim = r.grid;
    sigjmp_buf jump;
    g_activity.jump = &jump;
    switch (sigsetjmp(jump, 1)) // non-zero: back from the fault handler, which reported the fault
    {
    case 0: break;
    case SIGSEGV:
    case SIGBUS: abandonBlock(); return makeSticky(cudaErrorIllegalAddress);
    default: abandonBlock(); return makeSticky(cudaErrorLaunchFailure);
    }
    for (unsigned long long i = 0; i < blocks; ++i)
    {
        unsigned long long const linear = g_order.mode == 2 ? permutation[i] : g_order.mode == 1 ? blocks - 1 - i : i;
        uint3 const b{static_cast<unsigned>(linear % r.grid.x), static_cast<unsigned>(linear / r.grid.x % r.grid.y),
            static_cast<unsigned>(linear / (1ULL * r.grid.x * r.grid.y))};
        blockIdx = b;
        g_activity.block = b;
        std::string const problem = runBlock(r.body, r.closure, threads, g_order.mode, rng);
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

//! Launches an empty kernel with this configuration (tests of the launch limits); returns the launch status.
CUDA_EMU_API int cuda_emu_launch_noop(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
    size_t dynamicSmemBytes)
{
    Launch const request{reinterpret_cast<void const*>(&noopKernel), dim3(gx, gy, gz), dim3(bx, by, bz),
        dynamicSmemBytes, nullptr, &runNoop, nullptr};
    return launch(request);
}
