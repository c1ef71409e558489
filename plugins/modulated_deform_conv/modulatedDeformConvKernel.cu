/*
 * ESAN-RT modulated deformable convolution: CUDA launcher.
 *
 * Algorithm: per chunk of images, a deformable im2col kernel writes the modulated samples into the
 * workspace as columns [image][C*kh*kw][Ho*Wo]; a GEMM per group then computes
 * out[image][co][pixel] = bias[co] + sum_k W[co][k] * columns[image][k][pixel] with fp32
 * accumulation (cuBLAS strided-batched GEMM, or a built-in tiled kernel without a handle).
 * No allocation and no synchronisation: the launch can be captured in a CUDA graph. Every launch is checked
 * through the status cudaLaunchKernelEx returns, so an error left by an unrelated earlier launch is neither
 * reported as ours nor consumed.
 */
#include "modulatedDeformConvKernel.h"
#include "modulatedDeformConvSampling.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#if defined(ESAN_DCN_WITH_CUBLAS)
#include <cublas_v2.h>
#endif

#include <algorithm>
#include <cstdint>

namespace
{

using esan::dcn::SampleGeometry;

constexpr int32_t kIm2colThreads = 256;
constexpr int32_t kTileM = 64; // output channels per block
constexpr int32_t kTileN = 64; // output pixels per block
constexpr int32_t kTileK = 16;
constexpr int32_t kGemmThreads = 256; // 16 x 16 threads, 4 x 4 outputs each
constexpr int32_t kMaxGridZ = 65535;  // also the gridDim.y limit

template <typename T>
__device__ __forceinline__ T fromFloat(float v);

template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

//! One thread per (image, channel, output pixel); writes the kh*kw taps of that channel.
template <typename T>
__global__ void __launch_bounds__(kIm2colThreads) deformIm2colKernel(SampleGeometry geo, int32_t channels,
    int32_t deformableGroups, int32_t kernelH, T const* __restrict__ input, T const* __restrict__ offset,
    T const* __restrict__ mask, T* __restrict__ columns, int32_t firstImage, int32_t images)
{
    int64_t const outPlane = static_cast<int64_t>(geo.outH) * geo.outW;
    int64_t const plane = static_cast<int64_t>(geo.height) * geo.width;
    int32_t const taps = kernelH * geo.kernelW;
    int32_t const channelsPerDg = channels / deformableGroups;
    int64_t const total = static_cast<int64_t>(images) * channels * outPlane;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const pixel = idx % outPlane;
        int64_t const rest = idx / outPlane;
        int32_t const c = static_cast<int32_t>(rest % channels);
        int64_t const local = rest / channels;
        int64_t const n = firstImage + local;
        int32_t const dg = c / channelsPerDg;
        int32_t const oy = static_cast<int32_t>(pixel / geo.outW);
        int32_t const ox = static_cast<int32_t>(pixel % geo.outW);

        T const* planePtr = input + (n * channels + c) * plane;
        T const* offGroup = offset + (n * deformableGroups + dg) * 2 * taps * outPlane;
        T const* maskGroup = mask + (n * deformableGroups + dg) * taps * outPlane;
        T* out = columns + ((local * channels + c) * taps) * outPlane + pixel;
        for (int32_t ky = 0; ky < kernelH; ++ky)
        {
            for (int32_t kx = 0; kx < geo.kernelW; ++kx)
            {
                float const v = esan::dcn::modulatedSample(geo, planePtr, offGroup, maskGroup, oy, ox, ky, kx);
                out[static_cast<int64_t>(ky * geo.kernelW + kx) * outPlane] = fromFloat<T>(v);
            }
        }
    }
}

//! Fills out[image][co][pixel] = bias[co] (the cuBLAS GEMM then accumulates with beta = 1).
template <typename T>
__global__ void __launch_bounds__(kIm2colThreads)
    fillBiasKernel(T const* __restrict__ bias, T* __restrict__ out, int32_t outChannels, int64_t outPlane, int64_t total)
{
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        out[idx] = bias[(idx / outPlane) % outChannels];
    }
}

/*!
 * Fallback GEMM (no cuBLAS handle): blockIdx.z = image * groups + group; A = W_g [M=Cout/g, K],
 * B = columns_g [K, N=Ho*Wo], C = out_g [M, N]; fp32 accumulation, bias added in the epilogue.
 */
template <typename T>
__global__ void __launch_bounds__(kGemmThreads) groupedGemmKernel(T const* __restrict__ weight,
    T const* __restrict__ columns, T const* __restrict__ bias, T* __restrict__ output, int32_t groups, int32_t m,
    int32_t k, int32_t n, int32_t outChannels, int32_t firstImage)
{
    __shared__ float tileA[kTileK][kTileM + 1];
    __shared__ float tileB[kTileK][kTileN + 1];

    int32_t const group = static_cast<int32_t>(blockIdx.z) % groups;
    int64_t const local = static_cast<int64_t>(blockIdx.z) / groups;
    T const* a = weight + static_cast<int64_t>(group) * m * k;
    T const* b = columns + (local * groups + group) * static_cast<int64_t>(k) * n;
    T* c = output + ((firstImage + local) * outChannels + static_cast<int64_t>(group) * m) * n;

    int32_t const tx = static_cast<int32_t>(threadIdx.x) % 16;
    int32_t const ty = static_cast<int32_t>(threadIdx.x) / 16;
    int32_t const rowBase = static_cast<int32_t>(blockIdx.y) * kTileM;
    int64_t const colBase = static_cast<int64_t>(blockIdx.x) * kTileN; // n may be close to 2^31

    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < k; k0 += kTileK) // 64-bit: k0 + kTileK passes INT32_MAX when k nears it
    {
        for (int32_t i = static_cast<int32_t>(threadIdx.x); i < kTileM * kTileK; i += kGemmThreads)
        {
            int32_t const r = i / kTileK;
            int32_t const kk = i % kTileK;
            int32_t const row = rowBase + r;
            int64_t const kIdx = k0 + kk;
            tileA[kk][r] = (row < m && kIdx < k) ? esan::dcn::toFloat(a[static_cast<int64_t>(row) * k + kIdx]) : 0.F;
        }
        for (int32_t i = static_cast<int32_t>(threadIdx.x); i < kTileK * kTileN; i += kGemmThreads)
        {
            int32_t const kk = i / kTileN;
            int32_t const cc = i % kTileN;
            int64_t const col = colBase + cc;
            int64_t const kIdx = k0 + kk;
            tileB[kk][cc] = (col < n && kIdx < k) ? esan::dcn::toFloat(b[static_cast<int64_t>(kIdx) * n + col]) : 0.F;
        }
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < kTileK; ++kk)
        {
            float av[4];
            float bv[4];
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                av[i] = tileA[kk][ty + 16 * i];
                bv[i] = tileB[kk][tx + 16 * i];
            }
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
#pragma unroll
                for (int32_t j = 0; j < 4; ++j)
                {
                    acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int32_t i = 0; i < 4; ++i)
    {
        int32_t const row = rowBase + ty + 16 * i;
        if (row >= m)
        {
            continue;
        }
        float const bval = bias != nullptr ? esan::dcn::toFloat(bias[group * m + row]) : 0.F;
#pragma unroll
        for (int32_t j = 0; j < 4; ++j)
        {
            int64_t const col = colBase + tx + 16 * j;
            if (col < n)
            {
                c[static_cast<int64_t>(row) * n + col] = fromFloat<T>(acc[i][j] + bval);
            }
        }
    }
}

int32_t gridFor(int64_t total, int32_t threads)
{
    int64_t const blocks = (total + threads - 1) / threads;
    return static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535LL * 16));
}

cudaLaunchConfig_t launchConfig(dim3 grid, int32_t threads, cudaStream_t stream)
{
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = dim3(static_cast<uint32_t>(threads));
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    return config;
}

#if defined(ESAN_DCN_WITH_CUBLAS)
int32_t cublasGroupedGemm(cublasHandle_t handle, EsanDcnParams const& p, int32_t dataType, void const* weight,
    void const* columns, bool hasBias, void* output, int32_t firstImage, int32_t images)
{
    cudaDataType_t const type = dataType == ESAN_DCN_FLOAT16 ? CUDA_R_16F : CUDA_R_32F;
    size_t const elem = dataType == ESAN_DCN_FLOAT16 ? 2 : 4;
    int32_t const m = p.outChannels / p.groups;
    int32_t const k = p.inChannels / p.groups * p.kernelH * p.kernelW;
    int32_t const n = p.outH * p.outW;
    long long const columnStride = static_cast<long long>(p.inChannels) * p.kernelH * p.kernelW * n;
    long long const outStride = static_cast<long long>(p.outChannels) * n;
    float const alpha = 1.F;
    float const beta = hasBias ? 1.F : 0.F;
    for (int32_t g = 0; g < p.groups; ++g)
    {
        // Row-major out_g[m][n] = W_g[m][k] * cols_g[k][n]  <=>  column-major out^T = cols^T * W^T.
        char const* cols = static_cast<char const*>(columns) + static_cast<size_t>(g) * k * n * elem;
        char const* w = static_cast<char const*>(weight) + static_cast<size_t>(g) * m * k * elem;
        char* out = static_cast<char*>(output)
            + (static_cast<size_t>(firstImage) * p.outChannels + static_cast<size_t>(g) * m) * n * elem;
        cublasStatus_t const st = cublasGemmStridedBatchedEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, cols,
            type, n, columnStride, w, type, k, 0, &beta, out, type, n, outStride, images, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS)
        {
            return ESAN_DCN_ERR_CUBLAS;
        }
    }
    return ESAN_DCN_OK;
}
#endif

template <typename T>
int32_t forward(EsanDcnParams const& p, int32_t dataType, T const* input, T const* offset, T const* mask,
    T const* weight, T const* bias, T* output, void* workspace, size_t workspaceSize, void* cublasHandle,
    cudaStream_t stream)
{
    size_t const taps = static_cast<size_t>(p.kernelH) * p.kernelW;
    size_t const outPlane = static_cast<size_t>(p.outH) * p.outW;
    size_t const perImage = static_cast<size_t>(p.inChannels) * taps * outPlane * sizeof(T);
    size_t const reserved = cublasHandle != nullptr ? esan::dcn::kCublasWorkspaceBytes : 0;
    if (workspace == nullptr)
    {
        return ESAN_DCN_ERR_WORKSPACE;
    }
    // Start at a 256-byte boundary (cuBLAS requires it; esan_dcn_workspace_size includes the slack).
    auto const address = reinterpret_cast<uintptr_t>(workspace);
    size_t const skip = esan::dcn::alignUp(address) - address;
    if (workspaceSize < skip + reserved + perImage)
    {
        return ESAN_DCN_ERR_WORKSPACE;
    }
    workspace = static_cast<char*>(workspace) + skip;
    workspaceSize -= skip;
    // Layout: [cuBLAS scratch (if any)][columns]. Both slices stay 256-byte aligned.
    T* columns = reinterpret_cast<T*>(static_cast<char*>(workspace) + reserved);
    int32_t chunk = static_cast<int32_t>(std::min<size_t>(p.batch, (workspaceSize - reserved) / perImage));
    if (cublasHandle == nullptr)
    {
        // The built-in GEMM puts image * groups in gridDim.z (at most 65535).
        chunk = std::min(chunk, std::max(kMaxGridZ / p.groups, 1));
    }

#if defined(ESAN_DCN_WITH_CUBLAS)
    auto handle = static_cast<cublasHandle_t>(cublasHandle);
    if (handle != nullptr)
    {
        if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS
            || cublasSetWorkspace(handle, workspace, esan::dcn::kCublasWorkspaceBytes) != CUBLAS_STATUS_SUCCESS)
        {
            return ESAN_DCN_ERR_CUBLAS;
        }
        if (bias != nullptr)
        {
            int64_t const total = static_cast<int64_t>(p.batch) * p.outChannels * static_cast<int64_t>(outPlane);
            cudaLaunchConfig_t const fill = launchConfig(dim3(gridFor(total, kIm2colThreads)), kIm2colThreads, stream);
            if (cudaLaunchKernelEx(
                    &fill, fillBiasKernel<T>, bias, output, p.outChannels, static_cast<int64_t>(outPlane), total)
                != cudaSuccess)
            {
                return ESAN_DCN_ERR_CUDA;
            }
        }
    }
#else
    if (cublasHandle != nullptr)
    {
        return ESAN_DCN_ERR_UNSUPPORTED;
    }
#endif

    SampleGeometry const geo{p.height, p.width, p.outH, p.outW, p.kernelW, p.strideH, p.strideW, p.padH, p.padW,
        p.dilationH, p.dilationW};
    int32_t const m = p.outChannels / p.groups;
    int32_t const k = static_cast<int32_t>(static_cast<size_t>(p.inChannels / p.groups) * taps);
    int32_t const n = static_cast<int32_t>(outPlane);
#if defined(ESAN_DCN_WITH_CUBLAS)
    bool const builtinGemm = handle == nullptr;
#else
    bool const builtinGemm = true;
#endif
    // The built-in GEMM's grid limits, checked before any work is launched (not after the first chunk).
    if (builtinGemm
        && ((static_cast<int64_t>(m) + kTileM - 1) / kTileM > kMaxGridZ
            || static_cast<int64_t>(chunk) * p.groups > kMaxGridZ))
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    // 64-bit: first + chunk passes INT32_MAX when the batch nears it
    for (int64_t first64 = 0; first64 < p.batch; first64 += chunk)
    {
        int32_t const first = static_cast<int32_t>(first64);
        int32_t const images = static_cast<int32_t>(std::min<int64_t>(chunk, p.batch - first64));
        int64_t const total = static_cast<int64_t>(images) * p.inChannels * static_cast<int64_t>(outPlane);
        cudaLaunchConfig_t const im2col = launchConfig(dim3(gridFor(total, kIm2colThreads)), kIm2colThreads, stream);
        if (cudaLaunchKernelEx(&im2col, deformIm2colKernel<T>, geo, p.inChannels, p.deformableGroups, p.kernelH, input,
                offset, mask, columns, first, images)
            != cudaSuccess)
        {
            return ESAN_DCN_ERR_CUDA;
        }
#if defined(ESAN_DCN_WITH_CUBLAS)
        if (handle != nullptr)
        {
            int32_t const st
                = cublasGroupedGemm(handle, p, dataType, weight, columns, bias != nullptr, output, first, images);
            if (st != ESAN_DCN_OK)
            {
                return st;
            }
            continue;
        }
#endif
        (void) dataType;
        // 64-bit: n + kTileN - 1 overflows int32 when n nears 2^31.
        int64_t const gridX = (static_cast<int64_t>(n) + kTileN - 1) / kTileN;
        int64_t const gridY = (static_cast<int64_t>(m) + kTileM - 1) / kTileM;
        int64_t const gridZ = static_cast<int64_t>(images) * p.groups;
        if (gridY > kMaxGridZ || gridZ > kMaxGridZ)
        {
            return ESAN_DCN_ERR_INVALID_ARGUMENT;
        }
        cudaLaunchConfig_t const gemm = launchConfig(
            dim3(static_cast<uint32_t>(gridX), static_cast<uint32_t>(gridY), static_cast<uint32_t>(gridZ)),
            kGemmThreads, stream);
        if (cudaLaunchKernelEx(&gemm, groupedGemmKernel<T>, weight, columns, bias, output, p.groups, m, k, n,
                p.outChannels, first)
            != cudaSuccess)
        {
            return ESAN_DCN_ERR_CUDA;
        }
    }
    return ESAN_DCN_OK;
}

} // namespace

extern "C" int32_t esan_dcn_has_cuda(void) noexcept
{
    return 1;
}

extern "C" int32_t esan_dcn_has_cublas(void) noexcept
{
#if defined(ESAN_DCN_WITH_CUBLAS)
    return 1;
#else
    return 0;
#endif
}

extern "C" int32_t esan_dcn_forward_cuda(EsanDcnParams const* params, int32_t dataType, void const* input,
    void const* offset, void const* mask, void const* weight, void const* bias, void* output, void* workspace,
    size_t workspaceSize, void* cublasHandle, EsanDcnStream stream) noexcept
{
    if (params == nullptr || input == nullptr || offset == nullptr || mask == nullptr || weight == nullptr
        || output == nullptr)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    EsanDcnParams p = *params;
    int32_t const status = esan_dcn_check_params(&p);
    if (status != ESAN_DCN_OK)
    {
        return status;
    }
    auto const s = static_cast<cudaStream_t>(stream);
    if (dataType == ESAN_DCN_FLOAT32)
    {
        return forward<float>(p, dataType, static_cast<float const*>(input), static_cast<float const*>(offset),
            static_cast<float const*>(mask), static_cast<float const*>(weight), static_cast<float const*>(bias),
            static_cast<float*>(output), workspace, workspaceSize, cublasHandle, s);
    }
    if (dataType == ESAN_DCN_FLOAT16)
    {
        return forward<__half>(p, dataType, static_cast<__half const*>(input), static_cast<__half const*>(offset),
            static_cast<__half const*>(mask), static_cast<__half const*>(weight), static_cast<__half const*>(bias),
            static_cast<__half*>(output), workspace, workspaceSize, cublasHandle, s);
    }
    return ESAN_DCN_ERR_INVALID_ARGUMENT;
}

extern "C" int32_t esan_dcn_cublas_create(void** handle) noexcept
{
    if (handle == nullptr)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    *handle = nullptr;
#if defined(ESAN_DCN_WITH_CUBLAS)
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
    {
        return ESAN_DCN_ERR_CUBLAS;
    }
    *handle = h;
    return ESAN_DCN_OK;
#else
    return ESAN_DCN_ERR_UNSUPPORTED;
#endif
}

extern "C" int32_t esan_dcn_cublas_destroy(void* handle) noexcept
{
#if defined(ESAN_DCN_WITH_CUBLAS)
    if (handle != nullptr && cublasDestroy(static_cast<cublasHandle_t>(handle)) != CUBLAS_STATUS_SUCCESS)
    {
        return ESAN_DCN_ERR_CUBLAS;
    }
    return ESAN_DCN_OK;
#else
    (void) handle;
    return ESAN_DCN_ERR_UNSUPPORTED;
#endif
}
