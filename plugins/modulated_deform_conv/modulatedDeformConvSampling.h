/*
 * ESAN-RT modulated deformable convolution: per-element sampling shared by the CUDA kernels and
 * the host reference. Compiles with nvcc (__host__ __device__) and with a plain C++ compiler.
 *
 * Semantics match torchvision.ops.deform_conv2d: the sample point of output (oy, ox) and kernel
 * tap (ky, kx) is (oy*sh - ph + ky*dh + dy, ox*sw - pw + kx*dw + dx); bilinear interpolation
 * with zeros outside the image; the value is multiplied by the mask.
 */
#ifndef ESAN_MODULATED_DEFORM_CONV_SAMPLING_H
#define ESAN_MODULATED_DEFORM_CONV_SAMPLING_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define ESAN_DCN_HD __host__ __device__ __forceinline__
#else
#define ESAN_DCN_HD inline
#endif

namespace esan
{
namespace dcn
{

//! Scratch handed to cuBLAS (cublasSetWorkspace) when the GEMM runs through cuBLAS.
constexpr size_t kCublasWorkspaceBytes = size_t{8} << 20;
//! Upper bound of the im2col buffer; larger problems run in chunks of images (at least one).
constexpr size_t kColumnBudgetBytes = size_t{256} << 20;
//! Alignment of every workspace slice.
constexpr size_t kWorkspaceAlignment = 256;

ESAN_DCN_HD size_t alignUp(size_t bytes)
{
    return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
}

ESAN_DCN_HD float toFloat(float v)
{
    return v;
}

#if defined(__CUDACC__)
ESAN_DCN_HD float toFloat(__half v)
{
    return __half2float(v);
}
#endif

//! Bilinear sample of one channel plane at (y, x); zero outside (-1, H) x (-1, W), as torchvision.
template <typename T>
ESAN_DCN_HD float bilinearSample(T const* plane, int32_t height, int32_t width, float y, float x)
{
    if (y != y || x != x)
    {
        // NaN offset: propagate it (as torchvision's CUDA kernel does) instead of converting NaN to an
        // int index below (undefined; out-of-bounds reads on the host).
        return y + x;
    }
    if (y <= -1.F || y >= static_cast<float>(height) || x <= -1.F || x >= static_cast<float>(width))
    {
        return 0.F;
    }
    int32_t const yLow = static_cast<int32_t>(floorf(y));
    int32_t const xLow = static_cast<int32_t>(floorf(x));
    int32_t const yHigh = yLow + 1;
    int32_t const xHigh = xLow + 1;
    float const ly = y - static_cast<float>(yLow);
    float const lx = x - static_cast<float>(xLow);
    float const hy = 1.F - ly;
    float const hx = 1.F - lx;

    float v1 = 0.F;
    float v2 = 0.F;
    float v3 = 0.F;
    float v4 = 0.F;
    if (yLow >= 0 && xLow >= 0)
    {
        v1 = toFloat(plane[yLow * width + xLow]);
    }
    if (yLow >= 0 && xHigh <= width - 1)
    {
        v2 = toFloat(plane[yLow * width + xHigh]);
    }
    if (yHigh <= height - 1 && xLow >= 0)
    {
        v3 = toFloat(plane[yHigh * width + xLow]);
    }
    if (yHigh <= height - 1 && xHigh <= width - 1)
    {
        v4 = toFloat(plane[yHigh * width + xHigh]);
    }
    return hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
}

//! Geometry one sample needs (a trimmed copy of EsanDcnParams, cheap to pass to kernels).
struct SampleGeometry
{
    int32_t height;
    int32_t width;
    int32_t outH;
    int32_t outW;
    int32_t kernelW;
    int32_t strideH;
    int32_t strideW;
    int32_t padH;
    int32_t padW;
    int32_t dilationH;
    int32_t dilationW;
};

/*!
 * Modulated sample for output pixel (oy, ox) and kernel tap (ky, kx) of one input channel.
 * plane: the channel's H*W input; offsetGroup / maskGroup: the deformable group's
 * [2*kh*kw, Ho, Wo] offsets and [kh*kw, Ho, Wo] mask of the same image.
 */
template <typename T>
ESAN_DCN_HD float modulatedSample(SampleGeometry const& g, T const* plane, T const* offsetGroup, T const* maskGroup,
    int32_t oy, int32_t ox, int32_t ky, int32_t kx)
{
    size_t const planeOut = static_cast<size_t>(g.outH) * static_cast<size_t>(g.outW);
    size_t const pixel = static_cast<size_t>(oy) * static_cast<size_t>(g.outW) + static_cast<size_t>(ox);
    size_t const tap = static_cast<size_t>(ky) * static_cast<size_t>(g.kernelW) + static_cast<size_t>(kx);
    float const dy = toFloat(offsetGroup[2 * tap * planeOut + pixel]);
    float const dx = toFloat(offsetGroup[(2 * tap + 1) * planeOut + pixel]);
    float const m = toFloat(maskGroup[tap * planeOut + pixel]);
    // 64-bit: oy*stride - pad + ky*dilation leaves the int32 range for large strides / pads (|result| < 2^63).
    int64_t const baseY = int64_t{oy} * g.strideH - g.padH + int64_t{ky} * g.dilationH;
    int64_t const baseX = int64_t{ox} * g.strideW - g.padW + int64_t{kx} * g.dilationW;
    float const y = static_cast<float>(baseY) + dy;
    float const x = static_cast<float>(baseX) + dx;
    return m * bilinearSample(plane, g.height, g.width, y, x);
}

} // namespace dcn
} // namespace esan

#endif // ESAN_MODULATED_DEFORM_CONV_SAMPLING_H
