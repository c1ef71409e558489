/*
 * CUDA emulation for tests (not shipped): force-included (g++ -include cuda_emu.h) when a .cu file is compiled
 * as C++. CUDA qualifiers become plain C++; threadIdx & co. hold the coordinates of the running fiber (one
 * ucontext fiber per CUDA thread); __syncthreads() is a real barrier of the block scheduler. __shared__ variables
 * are function-local statics; emu.py moves the zero-initialised data of the kernel object (.bss*, checked to hold
 * only function-local statics) into the section cuda_emu_shared, which is poisoned with NaN bytes before every
 * block. (GCC drops section attributes on statics of template instantiations, hence objcopy.)
 */
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

#define __CUDACC__ 1
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static

#include "cuda_runtime.h"

// The built-in variables: the coordinates of the CUDA thread whose fiber runs now (set by the block scheduler
// before every switch; plain globals, so members such as cudaLaunchConfig_t::gridDim are unaffected).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

namespace cuda_emu
{

//! Block-wide barrier: parks this fiber until every thread of the block reached a __syncthreads().
void syncthreads(char const* file, int line) noexcept;

} // namespace cuda_emu

#define __syncthreads() ::cuda_emu::syncthreads(__FILE__, __LINE__)

#endif /* CUDA_EMU_H */
