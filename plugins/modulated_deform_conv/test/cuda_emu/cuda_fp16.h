/*
 * CUDA emulation for tests (not shipped): __half as a software IEEE binary16 (_Float16, round to nearest
 * even on conversion), with the conversions the kernels use.
 */
#ifndef CUDA_EMU_CUDA_FP16_H
#define CUDA_EMU_CUDA_FP16_H

struct __half
{
    _Float16 bits_;
    __half() = default;
    __half(float v) noexcept
        : bits_(static_cast<_Float16>(v))
    {
    }
    operator float() const noexcept
    {
        return static_cast<float>(bits_);
    }
};
static_assert(sizeof(__half) == 2, "__half must be 2 bytes");

inline __half __float2half_rn(float v) noexcept
{
    return __half(v);
}

inline __half __float2half(float v) noexcept
{
    return __half(v);
}

inline float __half2float(__half v) noexcept
{
    return static_cast<float>(v.bits_);
}

#endif /* CUDA_EMU_CUDA_FP16_H */
