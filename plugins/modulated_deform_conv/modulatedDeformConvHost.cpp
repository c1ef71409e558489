/*
 * ESAN-RT modulated deformable convolution: parameter checks, workspace sizing and the host (CPU)
 * reference. Plain C++ (no CUDA needed); the CUDA launcher lives in modulatedDeformConvKernel.cu.
 */
#include "modulatedDeformConvKernel.h"
#include "modulatedDeformConvSampling.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <vector>

namespace
{

using esan::dcn::SampleGeometry;

bool positive(int32_t v)
{
    return v > 0;
}

int64_t outputExtent(int64_t in, int64_t pad, int64_t dil, int64_t k, int64_t stride)
{
    int64_t const span = in + 2 * pad - (dil * (k - 1) + 1);
    if (span < 0)
    {
        return 0;
    }
    return span / stride + 1;
}

SampleGeometry geometryOf(EsanDcnParams const& p)
{
    return SampleGeometry{p.height, p.width, p.outH, p.outW, p.kernelW, p.strideH, p.strideW, p.padH, p.padW,
        p.dilationH, p.dilationW};
}

} // namespace

extern "C" int32_t esan_dcn_check_params(EsanDcnParams* p) noexcept
{
    if (p == nullptr)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    if (!positive(p->batch) || !positive(p->inChannels) || !positive(p->height) || !positive(p->width)
        || !positive(p->outChannels) || !positive(p->kernelH) || !positive(p->kernelW) || !positive(p->strideH)
        || !positive(p->strideW) || !positive(p->dilationH) || !positive(p->dilationW) || !positive(p->groups)
        || !positive(p->deformableGroups) || p->padH < 0 || p->padW < 0)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    if (p->inChannels % p->groups != 0 || p->outChannels % p->groups != 0 || p->inChannels % p->deformableGroups != 0)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    int64_t const oh = outputExtent(p->height, p->padH, p->dilationH, p->kernelH, p->strideH);
    int64_t const ow = outputExtent(p->width, p->padW, p->dilationW, p->kernelW, p->strideW);
    if (oh <= 0 || ow <= 0)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    // Keep every per-image plane and column row addressable with 32-bit tap/pixel arithmetic.
    int64_t const maxI32 = std::numeric_limits<int32_t>::max();
    // Each factor is checked before the next product, so no product can overflow int64 (oh, ow reach ~3 * 2^31).
    if (oh > maxI32 || ow > maxI32 || oh * ow > maxI32 || int64_t{p->height} * p->width > maxI32
        || int64_t{p->inChannels} * p->kernelH > maxI32 || int64_t{p->inChannels} * p->kernelH * p->kernelW > maxI32)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    p->outH = static_cast<int32_t>(oh);
    p->outW = static_cast<int32_t>(ow);
    return ESAN_DCN_OK;
}

extern "C" char const* esan_dcn_status_string(int32_t status) noexcept
{
    switch (status)
    {
    case ESAN_DCN_OK: return "ok";
    case ESAN_DCN_ERR_INVALID_ARGUMENT: return "invalid argument (shape, attribute or null pointer)";
    case ESAN_DCN_ERR_CUDA: return "CUDA error";
    case ESAN_DCN_ERR_CUBLAS: return "cuBLAS error";
    case ESAN_DCN_ERR_UNSUPPORTED: return "not supported by this build (CUDA or cuBLAS missing)";
    case ESAN_DCN_ERR_WORKSPACE: return "workspace too small";
    case ESAN_DCN_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

extern "C" size_t esan_dcn_workspace_size(EsanDcnParams const* params, int32_t dataType, int32_t useCublas) noexcept
{
    if (params == nullptr || (dataType != ESAN_DCN_FLOAT32 && dataType != ESAN_DCN_FLOAT16))
    {
        return 0;
    }
    EsanDcnParams p = *params;
    if (esan_dcn_check_params(&p) != ESAN_DCN_OK)
    {
        return 0;
    }
    size_t const elem = dataType == ESAN_DCN_FLOAT16 ? 2 : 4;
    size_t const perImage = static_cast<size_t>(p.inChannels) * static_cast<size_t>(p.kernelH)
        * static_cast<size_t>(p.kernelW) * static_cast<size_t>(p.outH) * static_cast<size_t>(p.outW) * elem;
    // min(all images, max(budget, one image)) is monotone in every shape field.
    size_t const columns
        = std::min(perImage * static_cast<size_t>(p.batch), std::max(esan::dcn::kColumnBudgetBytes, perImage));
    // Slack to realign an arbitrary workspace pointer to kWorkspaceAlignment.
    size_t total = esan::dcn::alignUp(columns) + esan::dcn::kWorkspaceAlignment;
    if (useCublas != 0)
    {
        total += esan::dcn::kCublasWorkspaceBytes;
    }
    return total;
}

extern "C" int32_t esan_dcn_forward_host(EsanDcnParams const* params, float const* input, float const* offset,
    float const* mask, float const* weight, float const* bias, float* output) noexcept
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
    try
    {
        SampleGeometry const geo = geometryOf(p);
        size_t const taps = static_cast<size_t>(p.kernelH) * static_cast<size_t>(p.kernelW);
        size_t const plane = static_cast<size_t>(p.height) * static_cast<size_t>(p.width);
        size_t const outPlane = static_cast<size_t>(p.outH) * static_cast<size_t>(p.outW);
        size_t const channels = static_cast<size_t>(p.inChannels);
        size_t const dgs = static_cast<size_t>(p.deformableGroups);
        size_t const channelsPerDg = channels / dgs;
        size_t const groups = static_cast<size_t>(p.groups);
        size_t const kPerGroup = channels / groups * taps;
        size_t const coutPerGroup = static_cast<size_t>(p.outChannels) / groups;

        std::vector<float> columns(channels * taps * outPlane);
        std::vector<double> acc(outPlane);
        for (size_t n = 0; n < static_cast<size_t>(p.batch); ++n)
        {
            // Deformable im2col of image n: columns[c * taps + tap][pixel].
            for (size_t c = 0; c < channels; ++c)
            {
                size_t const dg = c / channelsPerDg;
                float const* planePtr = input + (n * channels + c) * plane;
                float const* offGroup = offset + (n * dgs + dg) * 2 * taps * outPlane;
                float const* maskGroup = mask + (n * dgs + dg) * taps * outPlane;
                for (int32_t ky = 0; ky < p.kernelH; ++ky)
                {
                    for (int32_t kx = 0; kx < p.kernelW; ++kx)
                    {
                        size_t const tap = static_cast<size_t>(ky * p.kernelW + kx);
                        float* row = columns.data() + (c * taps + tap) * outPlane;
                        for (int32_t oy = 0; oy < p.outH; ++oy)
                        {
                            for (int32_t ox = 0; ox < p.outW; ++ox)
                            {
                                row[static_cast<size_t>(oy) * static_cast<size_t>(p.outW) + static_cast<size_t>(ox)]
                                    = esan::dcn::modulatedSample(geo, planePtr, offGroup, maskGroup, oy, ox, ky, kx);
                            }
                        }
                    }
                }
            }
            // Grouped GEMM, accumulated in double: out[co][pixel] = bias[co] + sum_k W[co][k] * columns[k][pixel].
            for (size_t g = 0; g < groups; ++g)
            {
                for (size_t col = 0; col < coutPerGroup; ++col)
                {
                    size_t const co = g * coutPerGroup + col;
                    std::fill(acc.begin(), acc.end(), bias != nullptr ? static_cast<double>(bias[co]) : 0.0);
                    float const* wRow = weight + co * kPerGroup;
                    for (size_t k = 0; k < kPerGroup; ++k)
                    {
                        double const w = wRow[k];
                        if (w == 0.0)
                        {
                            continue;
                        }
                        float const* cRow = columns.data() + (g * kPerGroup + k) * outPlane;
                        for (size_t px = 0; px < outPlane; ++px)
                        {
                            acc[px] += w * static_cast<double>(cRow[px]);
                        }
                    }
                    float* outRow = output + (n * static_cast<size_t>(p.outChannels) + co) * outPlane;
                    for (size_t px = 0; px < outPlane; ++px)
                    {
                        outRow[px] = static_cast<float>(acc[px]);
                    }
                }
            }
        }
    }
    catch (std::exception const&)
    {
        return ESAN_DCN_ERR_INTERNAL;
    }
    catch (...)
    {
        return ESAN_DCN_ERR_INTERNAL;
    }
    return ESAN_DCN_OK;
}

#if !defined(ESAN_DCN_WITH_CUDA)
// Host-only build: the CUDA entries exist (same ABI) but report that CUDA is unavailable.
extern "C" int32_t esan_dcn_has_cuda(void) noexcept
{
    return 0;
}

extern "C" int32_t esan_dcn_has_cublas(void) noexcept
{
    return 0;
}

extern "C" int32_t esan_dcn_forward_cuda(EsanDcnParams const*, int32_t, void const*, void const*, void const*,
    void const*, void const*, void*, void*, size_t, void*, EsanDcnStream) noexcept
{
    return ESAN_DCN_ERR_UNSUPPORTED;
}

extern "C" int32_t esan_dcn_cublas_create(void** handle) noexcept
{
    if (handle != nullptr)
    {
        *handle = nullptr;
    }
    return ESAN_DCN_ERR_UNSUPPORTED;
}

extern "C" int32_t esan_dcn_cublas_destroy(void*) noexcept
{
    return ESAN_DCN_ERR_UNSUPPORTED;
}
#endif
