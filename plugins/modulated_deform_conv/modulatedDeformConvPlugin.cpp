/*
 * ESAN-RT modulated deformable convolution: TensorRT IPluginV3 plugin object. No exception leaves
 * this file: every entry point is noexcept and reports failures through the error recorder
 * (runtime), the TensorRT logger (setLoggerFinder) or stderr, and a non-zero return / nullptr.
 */
#include "modulatedDeformConvPlugin.h"

#include <cstdio>
#include <exception>
#include <string>

using namespace nvinfer1;

namespace
{

constexpr int32_t kInput = 0;
constexpr int32_t kOffset = 1;
constexpr int32_t kMask = 2;
constexpr int32_t kWeight = 3;
constexpr int32_t kBias = 4;

constexpr int64_t kMaxExtent = 0x7fffffff;

int32_t toDcnType(DataType type) noexcept
{
    return type == DataType::kHALF ? ESAN_DCN_FLOAT16 : ESAN_DCN_FLOAT32;
}


} // namespace

namespace esan
{
namespace plugin
{

ModulatedDeformConvPlugin::ModulatedDeformConvPlugin(DcnAttributes const& attributes)
    : mAttributes(attributes)
{
}

ModulatedDeformConvPlugin::ModulatedDeformConvPlugin(ModulatedDeformConvPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mAttributes(other.mAttributes)
    , mParams(other.mParams)
    , mDataType(other.mDataType)
    , mHasBias(other.mHasBias)
    , mRecorder(other.mRecorder)
{
    // The cuBLAS handle and the serialisation scratch are per object, never shared.
}

ModulatedDeformConvPlugin::~ModulatedDeformConvPlugin()
{
    if (mCublas != nullptr)
    {
        esan_dcn_cublas_destroy(mCublas);
    }
}

IPluginCapability* ModulatedDeformConvPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* ModulatedDeformConvPlugin::clone() noexcept
{
    try
    {
        return new ModulatedDeformConvPlugin(*this);
    }
    catch (std::exception const& e)
    {
        reportError(e.what());
    }
    catch (...)
    {
        reportError("clone failed");
    }
    return nullptr;
}

char const* ModulatedDeformConvPlugin::getPluginName() const noexcept
{
    return ESAN_DCN_PLUGIN_NAME;
}

char const* ModulatedDeformConvPlugin::getPluginVersion() const noexcept
{
    return ESAN_DCN_PLUGIN_VERSION;
}

char const* ModulatedDeformConvPlugin::getPluginNamespace() const noexcept
{
    return ESAN_DCN_PLUGIN_NAMESPACE;
}

int32_t ModulatedDeformConvPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t ModulatedDeformConvPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || (nbInputs != 4 && nbInputs != 5) || nbOutputs != 1)
    {
        reportError("expects inputs (input, offset, mask, weight[, bias]) and one output");
        return -1;
    }
    for (int32_t i = 0; i < kBias; ++i)
    {
        if (in[i].desc.dims.nbDims != 4)
        {
            reportError("input, offset, mask and weight must be 4-D");
            return -1;
        }
    }
    if (nbInputs == 5 && in[kBias].desc.dims.nbDims != 1)
    {
        reportError("bias must be 1-D");
        return -1;
    }
    mHasBias = nbInputs == 5;
    mDataType = toDcnType(in[kInput].desc.type);
    return 0;
}

int32_t ModulatedDeformConvPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs < 1)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[kInput];
    return 0;
}

int32_t ModulatedDeformConvPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /* shapeInputs */, int32_t /* nbShapeInputs */, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || (nbInputs != 4 && nbInputs != 5) || nbOutputs != 1
        || inputs[kInput].nbDims != 4 || inputs[kWeight].nbDims != 4)
    {
        reportError("getOutputShapes: expects 4-D input and weight, 4 or 5 inputs, 1 output");
        return -1;
    }
    DimsExprs const& x = inputs[kInput];
    DimsExprs const& w = inputs[kWeight];
    // out = (in + 2*pad - dil*(k-1) - 1) floordiv stride + 1, per axis.
    auto extent = [&](IDimensionExpr const* in, IDimensionExpr const* k, int32_t pad, int32_t dil, int32_t stride)
        -> IDimensionExpr const* {
        IDimensionExpr const* shifted
            = exprBuilder.operation(DimensionOperation::kSUM, *in, *exprBuilder.constant(2 * pad + dil - 1));
        IDimensionExpr const* span = exprBuilder.operation(
            DimensionOperation::kSUB, *shifted, *exprBuilder.operation(DimensionOperation::kPROD, *k,
                                                    *exprBuilder.constant(dil)));
        IDimensionExpr const* steps
            = exprBuilder.operation(DimensionOperation::kFLOOR_DIV, *span, *exprBuilder.constant(stride));
        return exprBuilder.operation(DimensionOperation::kSUM, *steps, *exprBuilder.constant(1));
    };
    outputs[0].nbDims = 4;
    outputs[0].d[0] = x.d[0];
    outputs[0].d[1] = w.d[0];
    outputs[0].d[2] = extent(x.d[2], w.d[2], mAttributes.padding[0], mAttributes.dilation[0], mAttributes.stride[0]);
    outputs[0].d[3] = extent(x.d[3], w.d[3], mAttributes.padding[1], mAttributes.dilation[1], mAttributes.stride[1]);
    for (int32_t i = 0; i < 4; ++i)
    {
        if (outputs[0].d[i] == nullptr)
        {
            return -1;
        }
    }
    return 0;
}

bool ModulatedDeformConvPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == inOut[0].desc.type;
}

int32_t ModulatedDeformConvPlugin::paramsFromDims(Dims const* dims, int32_t nbInputs, EsanDcnParams& p) const noexcept
{
    Dims const& x = dims[kInput];
    Dims const& off = dims[kOffset];
    Dims const& m = dims[kMask];
    Dims const& w = dims[kWeight];
    if (x.nbDims != 4 || off.nbDims != 4 || m.nbDims != 4 || w.nbDims != 4)
    {
        return ESAN_DCN_ERR_INVALID_ARGUMENT;
    }
    for (int32_t i = 0; i < 4; ++i)
    {
        // Dims are int64 in TensorRT 10+; the kernel library takes int32 extents.
        if (x.d[i] > kMaxExtent || w.d[i] > kMaxExtent)
        {
            return ESAN_DCN_ERR_INVALID_ARGUMENT;
        }
    }
    p = EsanDcnParams{};
    p.batch = static_cast<int32_t>(x.d[0]);
    p.inChannels = static_cast<int32_t>(x.d[1]);
    p.height = static_cast<int32_t>(x.d[2]);
    p.width = static_cast<int32_t>(x.d[3]);
    p.outChannels = static_cast<int32_t>(w.d[0]);
    p.kernelH = static_cast<int32_t>(w.d[2]);
    p.kernelW = static_cast<int32_t>(w.d[3]);
    p.strideH = mAttributes.stride[0];
    p.strideW = mAttributes.stride[1];
    p.padH = mAttributes.padding[0];
    p.padW = mAttributes.padding[1];
    p.dilationH = mAttributes.dilation[0];
    p.dilationW = mAttributes.dilation[1];
    p.groups = mAttributes.groups;
    p.deformableGroups = mAttributes.deformableGroups;
    int32_t const status = esan_dcn_check_params(&p);
    if (status != ESAN_DCN_OK)
    {
        return status;
    }
    int64_t const taps = int64_t{p.deformableGroups} * p.kernelH * p.kernelW;
    bool const ok = w.d[1] * p.groups == p.inChannels && off.d[0] == p.batch && off.d[1] == 2 * taps
        && off.d[2] == p.outH && off.d[3] == p.outW && m.d[0] == p.batch && m.d[1] == taps && m.d[2] == p.outH
        && m.d[3] == p.outW && (nbInputs < 5 || (dims[kBias].nbDims == 1 && dims[kBias].d[0] == p.outChannels));
    return ok ? ESAN_DCN_OK : ESAN_DCN_ERR_INVALID_ARGUMENT;
}

size_t ModulatedDeformConvPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /* outputs */, int32_t /* nbOutputs */) const noexcept
{
    if (inputs == nullptr || (nbInputs != 4 && nbInputs != 5))
    {
        return 0;
    }
    Dims maxDims[5];
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        maxDims[i] = inputs[i].max;
    }
    // Max shapes of independent profile ranges need not be mutually consistent; paramsFromDims
    // fills every field before its consistency checks, and the size formula only needs those.
    EsanDcnParams p{};
    (void) paramsFromDims(maxDims, nbInputs, p);
    return esan_dcn_workspace_size(&p, toDcnType(inputs[kInput].desc.type), esan_dcn_has_cublas());
}

int32_t ModulatedDeformConvPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || (nbInputs != 4 && nbInputs != 5) || nbOutputs != 1)
    {
        reportError("onShapeChange: expects 4 or 5 inputs and 1 output");
        return -1;
    }
    Dims dims[5];
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims[i] = in[i].dims;
    }
    EsanDcnParams p{};
    int32_t const status = paramsFromDims(dims, nbInputs, p);
    if (status != ESAN_DCN_OK)
    {
        reportError("onShapeChange: inconsistent input/offset/mask/weight/bias shapes for the attributes");
        return -1;
    }
    mParams = p;
    mHasBias = nbInputs == 5;
    mDataType = toDcnType(in[kInput].type);
    return 0;
}

void ModulatedDeformConvPlugin::ensureCublas() noexcept
{
    // Only from attachToContext (execution-context creation): cublasCreate allocates device memory and
    // must not run inside enqueue, which may be captured into a CUDA graph.
    if (mCublas == nullptr && !mCublasTried && esan_dcn_has_cublas() != 0)
    {
        mCublasTried = true;
        if (esan_dcn_cublas_create(&mCublas) != ESAN_DCN_OK)
        {
            mCublas = nullptr; // falls back to the built-in GEMM kernel
        }
    }
}

int32_t ModulatedDeformConvPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /* outputDesc */,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return -1;
    }
    // Actual shapes and type of this call (the input count is only known from configurePlugin /
    // onShapeChange). No allocation here; a plugin without a cuBLAS handle (never attached to an
    // execution context) uses the built-in GEMM.
    int32_t const nbInputs = mHasBias ? 5 : 4;
    Dims dims[5];
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims[i] = inputDesc[i].dims;
    }
    EsanDcnParams p{};
    int32_t status = paramsFromDims(dims, nbInputs, p);
    if (status == ESAN_DCN_OK)
    {
        int32_t const dataType = toDcnType(inputDesc[kInput].type);
        // getWorkspaceSize used the same monotone formula for the largest shapes, so this much is there.
        size_t const workspaceSize = esan_dcn_workspace_size(&p, dataType, mCublas != nullptr ? 1 : 0);
        status = esan_dcn_forward_cuda(&p, dataType, inputs[kInput], inputs[kOffset], inputs[kMask], inputs[kWeight],
            mHasBias ? inputs[kBias] : nullptr, outputs[0], workspace, workspaceSize, mCublas, stream);
    }
    if (status != ESAN_DCN_OK)
    {
        char message[160];
        std::snprintf(message, sizeof(message), "enqueue failed: %s", esan_dcn_status_string(status));
        reportError(message);
        return -1;
    }
    return 0;
}

IPluginV3* ModulatedDeformConvPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new ModulatedDeformConvPlugin(*this);
        plugin->mRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
        plugin->ensureCublas();
        return plugin;
    }
    catch (std::exception const& e)
    {
        reportError(e.what());
    }
    catch (...)
    {
        reportError("attachToContext failed");
    }
    return nullptr;
}

PluginFieldCollection const* ModulatedDeformConvPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mFields.clear();
        mFields.emplace_back(ESAN_DCN_ATTR_STRIDE, mAttributes.stride, PluginFieldType::kINT32, 2);
        mFields.emplace_back(ESAN_DCN_ATTR_PADDING, mAttributes.padding, PluginFieldType::kINT32, 2);
        mFields.emplace_back(ESAN_DCN_ATTR_DILATION, mAttributes.dilation, PluginFieldType::kINT32, 2);
        mFields.emplace_back(ESAN_DCN_ATTR_GROUPS, &mAttributes.groups, PluginFieldType::kINT32, 1);
        mFields.emplace_back(
            ESAN_DCN_ATTR_DEFORMABLE_GROUPS, &mAttributes.deformableGroups, PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
        return &mFieldCollection;
    }
    catch (...)
    {
        reportError("getFieldsToSerialize failed");
    }
    return nullptr;
}

void ModulatedDeformConvPlugin::reportError(char const* message) const noexcept
{
    if (mRecorder != nullptr)
    {
        mRecorder->reportError(ErrorCode::kINTERNAL_ERROR, message);
        return;
    }
    logError(message);
}

} // namespace plugin
} // namespace esan
