/*
 * CUDA emulation for tests (not shipped): device memory. Every cudaMalloc gets its own mapping
 * [guard page][slack | buffer | slack][guard page]; the buffer ends against the trailing guard page (up to the
 * alignment, ESAN_CUDA_EMU_ALIGN, default 1 byte: tight), every byte starts as 0xFF (NaN in fp16/fp32/fp64), and
 * the pages are inaccessible while host code runs (a host dereference of a device pointer gets SIGSEGV). Freed
 * buffers stay mapped PROT_NONE (use after free faults). Slack bytes are checked after threads and launches.
 */
#include "emu_internal.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

namespace cuda_emu
{
namespace
{

constexpr unsigned char kPoison = 0xFF;

struct Allocation
{
    int id;
    char* mapping;
    size_t mappingBytes;
    char* body; // accessible pages
    size_t bodyBytes;
    char* user; // what cudaMalloc returned
    size_t size;
    bool live;
};

std::map<uintptr_t, Allocation> g_allocations; // by mapping start; freed ones stay (quarantined)
int g_nextId = 1;
bool g_accessible = false;
size_t g_alignment = 0; // 0: not read from the environment yet

size_t pageBytes() noexcept
{
    static size_t const page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

size_t alignment() noexcept
{
    if (g_alignment == 0)
    {
        g_alignment = 1;
        if (char const* env = std::getenv("ESAN_CUDA_EMU_ALIGN"))
        {
            unsigned long const v = std::strtoul(env, nullptr, 10);
            if (v != 0 && (v & (v - 1)) == 0 && v <= pageBytes())
            {
                g_alignment = v;
            }
        }
    }
    return g_alignment;
}

void protect(Allocation const& a, bool accessible) noexcept
{
    mprotect(a.body, a.bodyBytes, accessible ? (PROT_READ | PROT_WRITE) : PROT_NONE);
}

Allocation* containing(uintptr_t address) noexcept
{
    auto it = g_allocations.upper_bound(address);
    if (it == g_allocations.begin())
    {
        return nullptr;
    }
    --it;
    Allocation& a = it->second;
    return address < it->first + a.mappingBytes ? &a : nullptr;
}

Allocation* liveUserAllocation(void const* p) noexcept
{
    Allocation* a = containing(reinterpret_cast<uintptr_t>(p));
    return a != nullptr && a->live && a->user == p ? a : nullptr;
}

//! Scans [from, to) for bytes other than the poison; re-poisons them and returns how many there were.
size_t repoison(char* from, char* to) noexcept
{
    size_t damaged = 0;
    for (char* p = from; p < to; ++p)
    {
        if (static_cast<unsigned char>(*p) != kPoison)
        {
            ++damaged;
            *p = static_cast<char>(kPoison);
        }
    }
    return damaged;
}

//! Makes device memory accessible for the duration of a copy issued by host code.
class AccessScope
{
public:
    AccessScope() noexcept
        : mPrevious(g_accessible)
    {
        setDeviceAccess(true);
    }
    ~AccessScope()
    {
        setDeviceAccess(mPrevious);
    }
    AccessScope(AccessScope const&) = delete;
    AccessScope& operator=(AccessScope const&) = delete;

private:
    bool mPrevious;
};

cudaError_t checkDevice(void const* p, size_t bytes, char const* what, char const* api)
{
    if (insideAllocation(p, bytes))
    {
        return cudaSuccess;
    }
    char text[160];
    std::snprintf(text, sizeof(text), "%s: %s range [%p, +%zu) is not inside one device allocation (", api, what, p,
        bytes);
    reportFault(text + describeAddress(reinterpret_cast<uintptr_t>(p)) + ")");
    return fail(cudaErrorInvalidValue);
}

} // namespace

void setDeviceAccess(bool accessible) noexcept
{
    if (accessible == g_accessible)
    {
        return;
    }
    g_accessible = accessible;
    for (auto& entry : g_allocations)
    {
        if (entry.second.live)
        {
            protect(entry.second, accessible);
        }
    }
}

std::string describeAddress(uintptr_t address)
{
    char text[200];
    Allocation const* a = containing(address);
    if (a != nullptr)
    {
        long long const offset = static_cast<long long>(address) - static_cast<long long>(
            reinterpret_cast<uintptr_t>(a->user));
        char const* where = offset < 0 ? "before its start"
            : static_cast<size_t>(offset) >= a->size ? "past its end"
                                                     : "inside it";
        std::snprintf(text, sizeof(text), "byte offset %+lld of %sdevice allocation #%d of %zu bytes: %s", offset,
            a->live ? "" : "FREED ", a->id, a->size, where);
        return text;
    }
    if (inFiberStackGuard(address))
    {
        return "guard page of a CUDA thread's stack: stack overflow";
    }
    if (address < 65536)
    {
        std::snprintf(text, sizeof(text), "null pointer %+lld", static_cast<long long>(address));
        return text;
    }
    return "not device memory (a host pointer or an unmapped address)";
}

bool insideAllocation(void const* address, size_t bytes) noexcept
{
    auto const p = reinterpret_cast<uintptr_t>(address);
    Allocation const* a = containing(p);
    auto const user = a != nullptr ? reinterpret_cast<uintptr_t>(a->user) : 0;
    return a != nullptr && a->live && p >= user && bytes <= a->size && p - user <= a->size - bytes;
}

bool slackIntact(bool tailsOnly, std::string& where) noexcept
{
    bool intact = true;
    for (auto& entry : g_allocations)
    {
        Allocation& a = entry.second;
        if (!a.live)
        {
            continue;
        }
        size_t const tail = repoison(a.user + a.size, a.body + a.bodyBytes);
        size_t const head = tailsOnly ? 0 : repoison(a.body, a.user);
        if (tail + head != 0)
        {
            intact = false;
            char text[160];
            std::snprintf(text, sizeof(text), "%zu byte(s) written past the end and %zu before the start of device "
                "allocation #%d of %zu bytes; ", tail, head, a.id, a.size);
            where += text;
        }
    }
    return intact;
}

void releaseAllMemory() noexcept
{
    for (auto& entry : g_allocations)
    {
        munmap(entry.second.mapping, entry.second.mappingBytes);
    }
    g_allocations.clear();
    g_accessible = false;
}

} // namespace cuda_emu

using namespace cuda_emu;

extern "C" cudaError_t cudaMalloc(void** devPtr, size_t size)
{
    if (devPtr == nullptr)
    {
        return fail(cudaErrorInvalidValue);
    }
    *devPtr = nullptr;
    if (stickyError() != cudaSuccess)
    {
        return fail(stickyError());
    }
    if (size == 0)
    {
        return cudaSuccess;
    }
    size_t const page = pageBytes();
    size_t const align = alignment();
    if (size > (size_t{1} << 46))
    {
        return fail(cudaErrorMemoryAllocation);
    }
    size_t const bodyBytes = (size + align - 1 + page - 1) / page * page;
    size_t const mappingBytes = bodyBytes + 2 * page;
    void* mapping = mmap(nullptr, mappingBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED)
    {
        return fail(cudaErrorMemoryAllocation);
    }
    Allocation a{};
    a.id = g_nextId++;
    a.mapping = static_cast<char*>(mapping);
    a.mappingBytes = mappingBytes;
    a.body = a.mapping + page;
    a.bodyBytes = bodyBytes;
    auto const end = reinterpret_cast<uintptr_t>(a.body + bodyBytes);
    a.user = reinterpret_cast<char*>((end - size) / align * align);
    a.size = size;
    a.live = true;
    protect(a, true);
    std::memset(a.body, kPoison, bodyBytes);
    protect(a, g_accessible);
    g_allocations.emplace(reinterpret_cast<uintptr_t>(a.mapping), a);
    *devPtr = a.user;
    return cudaSuccess;
}

extern "C" cudaError_t cudaFree(void* devPtr)
{
    if (devPtr == nullptr)
    {
        return cudaSuccess;
    }
    Allocation* a = liveUserAllocation(devPtr);
    if (a == nullptr)
    {
        reportFault("cudaFree: " + describeAddress(reinterpret_cast<uintptr_t>(devPtr))
            + " is not the start of a live device allocation");
        return fail(cudaErrorInvalidValue);
    }
    {
        AccessScope access;
        size_t const damage = repoison(a->user + a->size, a->body + a->bodyBytes) + repoison(a->body, a->user);
        if (damage != 0)
        {
            reportFault("cudaFree: " + std::to_string(damage) + " byte(s) around device allocation #"
                + std::to_string(a->id) + " were overwritten (an out-of-bounds write)");
        }
    }
    // Quarantine: keep the addresses reserved and inaccessible, release the pages.
    mmap(a->body, a->bodyBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    a->live = false;
    return stickyError() != cudaSuccess ? fail(stickyError()) : cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy(void* dst, void const* src, size_t count, cudaMemcpyKind kind)
{
    if (stickyError() != cudaSuccess)
    {
        return fail(stickyError());
    }
    if (count == 0)
    {
        return cudaSuccess;
    }
    if (dst == nullptr || src == nullptr)
    {
        return fail(cudaErrorInvalidValue);
    }
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    {
        return fail(cudaErrorInvalidMemcpyDirection);
    }
    bool const dstDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice
        || (kind == cudaMemcpyDefault && insideAllocation(dst, 1));
    bool const srcDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice
        || (kind == cudaMemcpyDefault && insideAllocation(src, 1));
    if (dstDevice && checkDevice(dst, count, "destination", "cudaMemcpy") != cudaSuccess)
    {
        return cudaErrorInvalidValue;
    }
    if (srcDevice && checkDevice(src, count, "source", "cudaMemcpy") != cudaSuccess)
    {
        return cudaErrorInvalidValue;
    }
    AccessScope access;
    std::memmove(dst, src, count);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpyAsync(
    void* dst, void const* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream)
{
    if (!validStream(stream))
    {
        return fail(cudaErrorInvalidResourceHandle);
    }
    return cudaMemcpy(dst, src, count, kind);
}

extern "C" cudaError_t cudaMemset(void* devPtr, int value, size_t count)
{
    if (stickyError() != cudaSuccess)
    {
        return fail(stickyError());
    }
    if (count == 0)
    {
        return cudaSuccess;
    }
    if (checkDevice(devPtr, count, "destination", "cudaMemset") != cudaSuccess)
    {
        return cudaErrorInvalidValue;
    }
    AccessScope access;
    std::memset(devPtr, value, count);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream)
{
    if (!validStream(stream))
    {
        return fail(cudaErrorInvalidResourceHandle);
    }
    return cudaMemset(devPtr, value, count);
}

CUDA_EMU_API int cuda_emu_set_alignment(size_t bytes)
{
    if (bytes == 0 || (bytes & (bytes - 1)) != 0 || bytes > pageBytes())
    {
        return 1;
    }
    g_alignment = bytes;
    return 0;
}
