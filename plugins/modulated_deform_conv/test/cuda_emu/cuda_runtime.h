/*
 * CUDA emulation for tests (not shipped): kernel launches. cudaLaunchKernelEx (C++ form) and the
 * triple-chevron syntax (rewritten by emu.py to ::cuda_emu::chevron(kernel, grid, block, ...)(args)) both end in
 * cuda_emu::launch, which checks the configuration and runs every block and thread on the CPU.
 */
#ifndef CUDA_EMU_CUDA_RUNTIME_H
#define CUDA_EMU_CUDA_RUNTIME_H

#include "cuda_runtime_api.h"

#include <tuple>
#include <type_traits>
#include <utility>

namespace cuda_emu
{

//! One launch: body(closure) is the code of one CUDA thread (the kernel called with the launch arguments).
struct Launch
{
    void const* kernel;
    dim3 grid;
    dim3 block;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    void (*body)(void* closure);
    void* closure;
};

//! Checks the configuration, runs the grid (unless a sticky error is pending) and returns the launch status,
//! which is also recorded as the last error when it is not cudaSuccess.
cudaError_t launch(Launch const& request) noexcept;

template <typename... Exp>
struct KernelCall
{
    void (*kernel)(Exp...);
    std::tuple<std::remove_cv_t<Exp>...> args; // the parameter buffer; each thread gets its own copies

    static void run(void* self)
    {
        auto* call = static_cast<KernelCall*>(self);
        std::apply(call->kernel, call->args);
    }
};

template <typename... Exp>
struct Chevron
{
    void (*kernel)(Exp...);
    cudaLaunchConfig_t config;

    template <typename... Act>
    void operator()(Act&&... args) const;
};

template <typename... Exp>
Chevron<Exp...> chevron(
    void (*kernel)(Exp...), dim3 grid, dim3 block, size_t dynamicSmemBytes = 0, cudaStream_t stream = nullptr)
{
    return Chevron<Exp...>{kernel, cudaLaunchConfig_t{grid, block, dynamicSmemBytes, stream, nullptr, 0}};
}

} // namespace cuda_emu

template <typename... Exp, typename... Act>
cudaError_t cudaLaunchKernelEx(cudaLaunchConfig_t const* config, void (*kernel)(Exp...), Act&&... args)
{
    static_assert(sizeof...(Exp) == sizeof...(Act), "cudaLaunchKernelEx: wrong number of kernel arguments");
    if (config == nullptr)
    {
        cuda_emu::Launch const invalid{nullptr, dim3(0, 0, 0), dim3(0, 0, 0), 0, nullptr, nullptr, nullptr};
        return cuda_emu::launch(invalid);
    }
    cuda_emu::KernelCall<Exp...> call{kernel, std::tuple<std::remove_cv_t<Exp>...>(std::forward<Act>(args)...)};
    cuda_emu::Launch const request{reinterpret_cast<void const*>(kernel), config->gridDim, config->blockDim,
        config->dynamicSmemBytes, config->stream, &cuda_emu::KernelCall<Exp...>::run, &call};
    return cuda_emu::launch(request);
}

template <typename... Exp>
template <typename... Act>
void cuda_emu::Chevron<Exp...>::operator()(Act&&... args) const
{
    (void) cudaLaunchKernelEx(&config, kernel, std::forward<Act>(args)...);
}

#endif /* CUDA_EMU_CUDA_RUNTIME_H */
