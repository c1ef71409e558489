/*
 * ESAN-RT modulated deformable convolution (DCNv2): C interface of the kernel library.
 *
 * Free of TensorRT types (and of CUDA headers, so g++ and ctypes can use it): plain pointers,
 * shapes, a caller-provided workspace and a stream. All entries return an EsanDcnStatus and
 * never throw. Layouts follow torchvision.ops.deform_conv2d (NCHW, offset per deformable
 * group, per kernel tap, (dy, dx) interleaved; mask per deformable group, per kernel tap).
 */
#ifndef ESAN_MODULATED_DEFORM_CONV_KERNEL_H
#define ESAN_MODULATED_DEFORM_CONV_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define ESAN_DCN_API __declspec(dllexport)
#else
#define ESAN_DCN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define ESAN_DCN_NOEXCEPT noexcept
extern "C" {
#else
#define ESAN_DCN_NOEXCEPT
#endif

/* Same type as cudaStream_t (typedef struct CUstream_st* cudaStream_t), without the CUDA headers. */
struct CUstream_st;
typedef struct CUstream_st* EsanDcnStream;

typedef enum EsanDcnStatus
{
    ESAN_DCN_OK = 0,
    ESAN_DCN_ERR_INVALID_ARGUMENT = 1,
    ESAN_DCN_ERR_CUDA = 2,
    ESAN_DCN_ERR_CUBLAS = 3,
    ESAN_DCN_ERR_UNSUPPORTED = 4,
    ESAN_DCN_ERR_WORKSPACE = 5,
    ESAN_DCN_ERR_INTERNAL = 6
} EsanDcnStatus;

typedef enum EsanDcnDataType
{
    ESAN_DCN_FLOAT32 = 0,
    ESAN_DCN_FLOAT16 = 1
} EsanDcnDataType;

/* Problem description. outH/outW are derived by esan_dcn_check_params(). */
typedef struct EsanDcnParams
{
    int32_t batch;
    int32_t inChannels;
    int32_t height;
    int32_t width;
    int32_t outChannels;
    int32_t kernelH;
    int32_t kernelW;
    int32_t strideH;
    int32_t strideW;
    int32_t padH;
    int32_t padW;
    int32_t dilationH;
    int32_t dilationW;
    int32_t groups;
    int32_t deformableGroups;
    int32_t outH;
    int32_t outW;
} EsanDcnParams;

/* Validates every field and fills outH/outW. */
ESAN_DCN_API int32_t esan_dcn_check_params(EsanDcnParams* params) ESAN_DCN_NOEXCEPT;

/* Human-readable text for a status code (static storage). */
ESAN_DCN_API char const* esan_dcn_status_string(int32_t status) ESAN_DCN_NOEXCEPT;

/* 1 when the library was built with the CUDA launcher, 0 for a host-only build. */
ESAN_DCN_API int32_t esan_dcn_has_cuda(void) ESAN_DCN_NOEXCEPT;

/* 1 when the CUDA launcher can use cuBLAS for the GEMM, else 0. */
ESAN_DCN_API int32_t esan_dcn_has_cublas(void) ESAN_DCN_NOEXCEPT;

/*
 * Host (CPU) reference, float32 only. Any pointer except bias must be non-null. Allocates
 * host scratch memory; returns ESAN_DCN_ERR_INTERNAL if that fails.
 */
ESAN_DCN_API int32_t esan_dcn_forward_host(EsanDcnParams const* params, float const* input, float const* offset,
    float const* mask, float const* weight, float const* bias, float* output) ESAN_DCN_NOEXCEPT;

/*
 * Device workspace (bytes) the CUDA launcher needs for this problem. Monotone in every shape
 * field, so a size computed for the largest shapes covers all smaller ones. useCublas != 0 adds
 * the scratch handed to cuBLAS. Returns 0 for invalid parameters.
 */
ESAN_DCN_API size_t esan_dcn_workspace_size(
    EsanDcnParams const* params, int32_t dataType, int32_t useCublas) ESAN_DCN_NOEXCEPT;

/*
 * CUDA forward: deformable im2col into the workspace, then a GEMM (cuBLAS when cublasHandle is
 * non-null, otherwise a built-in tiled kernel), fp32 accumulation for both data types. All
 * tensors are device pointers of dataType; bias may be null. No allocation, no synchronisation:
 * safe inside CUDA graph capture (the cuBLAS handle must already exist).
 */
ESAN_DCN_API int32_t esan_dcn_forward_cuda(EsanDcnParams const* params, int32_t dataType, void const* input,
    void const* offset, void const* mask, void const* weight, void const* bias, void* output, void* workspace,
    size_t workspaceSize, void* cublasHandle, EsanDcnStream stream) ESAN_DCN_NOEXCEPT;

/* Create / destroy a cuBLAS handle for esan_dcn_forward_cuda (ESAN_DCN_ERR_UNSUPPORTED without cuBLAS). */
ESAN_DCN_API int32_t esan_dcn_cublas_create(void** handle) ESAN_DCN_NOEXCEPT;
ESAN_DCN_API int32_t esan_dcn_cublas_destroy(void* handle) ESAN_DCN_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ESAN_MODULATED_DEFORM_CONV_KERNEL_H */
