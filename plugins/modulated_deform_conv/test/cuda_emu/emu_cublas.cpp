/*
 * CUDA emulation for tests (not shipped): cuBLAS handles and a reference GEMM (column-major, fp32 accumulation
 * for CUBLAS_COMPUTE_32F) that applies cuBLAS's documented argument rules: handle, transposition, m/n/k/batch >= 0,
 * lda >= max(1, rows of op(A)) etc., ldc >= max(1, m), the supported (computeType, Atype, Btype, Ctype) pairs,
 * alpha/beta typed by the compute type, C not read when beta == 0, and a 256-byte aligned workspace
 * (cublasSetWorkspace), which cublasSetStream resets to the default pool. The emulator also refuses what cuBLAS
 * leaves undefined (overlapping outputs within a batch) and treats a matrix outside its device allocation as an
 * illegal address. The workspace is scribbled with NaN bytes on every GEMM.
 */
#include "cublas_v2.h"
#include "cuda_fp16.h"
#include "emu_internal.h"

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

struct cublasContext
{
    cudaStream_t stream = nullptr;
    void* workspace = nullptr; // nullptr: the default pool (owned by the library)
    size_t workspaceBytes = 0;
};

namespace
{

using namespace cuda_emu;

std::set<cublasContext*> g_handles;

bool known(cublasHandle_t handle) noexcept
{
    return handle != nullptr && g_handles.count(handle) != 0;
}

size_t elementBytes(cudaDataType t) noexcept
{
    return t == CUDA_R_32F ? 4 : t == CUDA_R_16F || t == CUDA_R_16BF ? 2 : t == CUDA_R_64F ? 8 : 1;
}

//! cuBLAS's table of supported (compute, A/B, C) types; `emulated` says whether this emulator implements it.
bool supportedTypes(cublasComputeType_t compute, cudaDataType a, cudaDataType b, cudaDataType c, bool& emulated)
{
    emulated = false;
    if (a != b)
    {
        return false;
    }
    switch (compute)
    {
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC: emulated = true; return a == CUDA_R_16F && c == CUDA_R_16F;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        emulated = (a == CUDA_R_32F || a == CUDA_R_16F) && (c == CUDA_R_32F || c == a);
        return (a == CUDA_R_32F && c == CUDA_R_32F) || (a == CUDA_R_8I && c == CUDA_R_32F)
            || ((a == CUDA_R_16F || a == CUDA_R_16BF) && (c == a || c == CUDA_R_32F));
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32: return a == CUDA_R_32F && c == CUDA_R_32F;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC: return a == CUDA_R_64F && c == CUDA_R_64F;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC: return a == CUDA_R_8I && c == CUDA_R_32I;
    default: return false;
    }
}

bool validAlgo(int algo) noexcept
{
    return algo == CUBLAS_GEMM_DEFAULT || (algo >= 0 && algo <= 23) || (algo >= 99 && algo <= 115);
}

float load(void const* base, long long index, cudaDataType t) noexcept
{
    return t == CUDA_R_32F ? static_cast<float const*>(base)[index]
                           : __half2float(static_cast<__half const*>(base)[index]);
}

void store(void* base, long long index, cudaDataType t, float v) noexcept
{
    if (t == CUDA_R_32F)
    {
        static_cast<float*>(base)[index] = v;
    }
    else
    {
        static_cast<__half*>(base)[index] = __float2half_rn(v);
    }
}

//! Checks that the strided matrices [rows x cols] (leading dimension ld) of every batch entry lie in one allocation.
bool matrixInside(char const* name, void const* base, cudaDataType t, int rows, int cols, int ld, long long stride,
    int batch, std::string& why)
{
    if (rows == 0 || cols == 0 || batch == 0)
    {
        return true;
    }
    long long const last = static_cast<long long>(cols - 1) * ld + rows;
    long long const lo = std::min(0LL, stride * (batch - 1));
    long long const hi = std::max(0LL, stride * (batch - 1)) + last;
    auto const* first = static_cast<char const*>(base) + lo * static_cast<long long>(elementBytes(t));
    if (insideAllocation(first, static_cast<size_t>(hi - lo) * elementBytes(t)))
    {
        return true;
    }
    why = std::string("matrix ") + name + " (" + std::to_string(rows) + " x " + std::to_string(cols) + ", ld "
        + std::to_string(ld) + ", stride " + std::to_string(stride) + ", batch " + std::to_string(batch)
        + ") is not inside one device allocation: its start is at "
        + describeAddress(reinterpret_cast<uintptr_t>(first));
    return false;
}

struct Gemm
{
    cublasOperation_t transa, transb;
    int m, n, k;
    void const* alpha;
    void const* A;
    cudaDataType Atype;
    int lda;
    long long strideA;
    void const* B;
    cudaDataType Btype;
    int ldb;
    long long strideB;
    void const* beta;
    void* C;
    cudaDataType Ctype;
    int ldc;
    long long strideC;
    int batchCount;
    bool halfScale; // CUBLAS_COMPUTE_16F: alpha and beta are __half
};

//! C = alpha op(A) op(B) + beta C per batch entry, column-major, fp32 accumulation; C is not read when beta == 0.
void referenceGemm(Gemm const& g)
{
    auto const scalar = [&g](void const* p) {
        return g.halfScale ? __half2float(*static_cast<__half const*>(p)) : *static_cast<float const*>(p);
    };
    float const a = scalar(g.alpha);
    float const b = scalar(g.beta);
    for (int batch = 0; batch < g.batchCount; ++batch)
    {
        for (int j = 0; j < g.n; ++j)
        {
            for (int i = 0; i < g.m; ++i)
            {
                float acc = 0.F;
                for (int l = 0; l < g.k; ++l)
                {
                    long long const ia = g.transa == CUBLAS_OP_N ? i + static_cast<long long>(l) * g.lda
                                                                 : l + static_cast<long long>(i) * g.lda;
                    long long const ib = g.transb == CUBLAS_OP_N ? l + static_cast<long long>(j) * g.ldb
                                                                 : j + static_cast<long long>(l) * g.ldb;
                    float const va = load(g.A, batch * g.strideA + ia, g.Atype);
                    acc = std::fma(va, load(g.B, batch * g.strideB + ib, g.Btype), acc);
                }
                long long const ic = batch * g.strideC + i + static_cast<long long>(j) * g.ldc;
                store(g.C, ic, g.Ctype, b != 0.F ? a * acc + b * load(g.C, ic, g.Ctype) : a * acc);
            }
        }
    }
}

} // namespace

extern "C" cublasStatus_t cublasCreate(cublasHandle_t* handle)
{
    if (handle == nullptr)
    {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (stickyError() != cudaSuccess)
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    *handle = new cublasContext();
    g_handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    if (!known(handle))
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    g_handles.erase(handle);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!known(handle))
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    handle->stream = stream;
    handle->workspace = nullptr; // documented: cublasSetStream resets the workspace to the default pool
    handle->workspaceBytes = 0;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes)
{
    if (!known(handle))
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0)
    {
        reportFault("cublasSetWorkspace: the workspace pointer is not aligned to 256 bytes");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->workspace = workspace;
    handle->workspaceBytes = workspace != nullptr ? workspaceSizeInBytes : 0;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, void const* alpha, void const* A, cudaDataType Atype, int lda,
    long long strideA, void const* B, cudaDataType Btype, int ldb, long long strideB, void const* beta, void* C,
    cudaDataType Ctype, int ldc, long long strideC, int batchCount, cublasComputeType_t computeType,
    cublasGemmAlgo_t algo)
{
    static std::string const name = "cublasGemmStridedBatchedEx";
    auto const invalid = [](std::string const& why) {
        reportFault(name + ": " + why);
        return CUBLAS_STATUS_INVALID_VALUE;
    };
    if (!known(handle))
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    bool const opOk = (transa == CUBLAS_OP_N || transa == CUBLAS_OP_T || transa == CUBLAS_OP_C)
        && (transb == CUBLAS_OP_N || transb == CUBLAS_OP_T || transb == CUBLAS_OP_C);
    if (!opOk || m < 0 || n < 0 || k < 0 || batchCount < 0)
    {
        return invalid("bad transa/transb or negative m, n, k or batchCount");
    }
    int const rowsA = transa == CUBLAS_OP_N ? m : k;
    int const rowsB = transb == CUBLAS_OP_N ? k : n;
    if (lda < std::max(1, rowsA) || ldb < std::max(1, rowsB) || ldc < std::max(1, m))
    {
        return invalid("leading dimension too small (lda " + std::to_string(lda) + " < max(1, " + std::to_string(rowsA)
            + ")? ldb " + std::to_string(ldb) + " < max(1, " + std::to_string(rowsB) + ")? ldc " + std::to_string(ldc)
            + " < max(1, " + std::to_string(m) + ")?)");
    }
    if (alpha == nullptr || beta == nullptr)
    {
        return invalid("alpha or beta is null");
    }
    bool emulated = false;
    if (!supportedTypes(computeType, Atype, Btype, Ctype, emulated) || !validAlgo(algo))
    {
        reportFault(name + ": unsupported combination of computeType, Atype, Btype, Ctype or algo");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (!emulated)
    {
        reportFault(name + ": this type combination is valid in cuBLAS but not implemented by the emulator");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (batchCount > 1 && std::llabs(strideC) < static_cast<long long>(n - 1) * ldc + m && m > 0 && n > 0)
    {
        return invalid("the output matrices of the batch overlap (|strideC| < (n-1)*ldc + m): undefined in cuBLAS");
    }
    if (stickyError() != cudaSuccess)
    {
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    logLaunch(name, dim3(static_cast<unsigned>(m), static_cast<unsigned>(n), static_cast<unsigned>(batchCount)),
        dim3(static_cast<unsigned>(k), 1, 1));
    if (m == 0 || n == 0 || batchCount == 0 || dryRun())
    {
        return CUBLAS_STATUS_SUCCESS;
    }
    std::string why;
    int const colsA = transa == CUBLAS_OP_N ? k : m;
    int const colsB = transb == CUBLAS_OP_N ? n : k;
    if (!validStream(handle->stream) || !matrixInside("A", A, Atype, rowsA, colsA, lda, strideA, batchCount, why)
        || !matrixInside("B", B, Btype, rowsB, colsB, ldb, strideB, batchCount, why)
        || !matrixInside("C", C, Ctype, m, n, ldc, strideC, batchCount, why)
        || (handle->workspace != nullptr && !insideAllocation(handle->workspace, handle->workspaceBytes)))
    {
        poison(cudaErrorIllegalAddress, name + ": " + (why.empty() ? "bad stream or workspace" : why));
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    Gemm const gemm{transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc,
        strideC, batchCount, computeType == CUBLAS_COMPUTE_16F || computeType == CUBLAS_COMPUTE_16F_PEDANTIC};
    // Run as device code: faults name this function (the pointers were checked above).
    DeviceScope scope(name);
    sigjmp_buf jump;
    g_activity.jump = &jump;
    if (sigsetjmp(jump, 1) == 0)
    {
        if (handle->workspace != nullptr)
        {
            std::memset(handle->workspace, 0xFF, handle->workspaceBytes); // cuBLAS owns its scratch while it runs
        }
        referenceGemm(gemm);
        return CUBLAS_STATUS_SUCCESS;
    }
    makeSticky(cudaErrorIllegalAddress); // the fault handler reported it
    return CUBLAS_STATUS_EXECUTION_FAILED;
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
    int m, int n, int k, void const* alpha, void const* A, cudaDataType Atype, int lda, void const* B,
    cudaDataType Btype, int ldb, void const* beta, void* C, cudaDataType Ctype, int ldc,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta,
        C, Ctype, ldc, 0, 1, computeType, algo);
}
