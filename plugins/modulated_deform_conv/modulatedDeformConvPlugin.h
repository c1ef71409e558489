/*
 * ESAN-RT modulated deformable convolution: TensorRT IPluginV3 glue (TensorRT 10.x / 11.x).
 *
 * Inputs: input [N,C,H,W], offset [N,2*dg*kh*kw,Ho,Wo], mask [N,dg*kh*kw,Ho,Wo],
 * weight [Cout,C/groups,kh,kw], optional bias [Cout]. Output: [N,Cout,Ho,Wo]. fp32 or fp16,
 * linear (NCHW) layout, all tensors of the same type. The math lives in the TensorRT-free kernel
 * library (modulatedDeformConvKernel.h).
 */
#ifndef ESAN_MODULATED_DEFORM_CONV_PLUGIN_H
#define ESAN_MODULATED_DEFORM_CONV_PLUGIN_H

#include "NvInferRuntime.h"

#include "modulatedDeformConvKernel.h"
#include "modulatedDeformConvPluginInfo.h"

#include <cstdint>
#include <string>
#include <vector>

namespace esan
{
namespace plugin
{

//! Attributes, all (h, w) pairs explicit.
struct DcnAttributes
{
    int32_t stride[2]{1, 1};
    int32_t padding[2]{0, 0};
    int32_t dilation[2]{1, 1};
    int32_t groups{1};
    int32_t deformableGroups{1};
};

class ModulatedDeformConvPlugin final : public nvinfer1::IPluginV3,
                                        public nvinfer1::IPluginV3OneCore,
                                        public nvinfer1::IPluginV3OneBuild,
                                        public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit ModulatedDeformConvPlugin(DcnAttributes const& attributes);
    ModulatedDeformConvPlugin(ModulatedDeformConvPlugin const& other);
    ModulatedDeformConvPlugin& operator=(ModulatedDeformConvPlugin const&) = delete;
    ~ModulatedDeformConvPlugin() override;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Fills params from the input/weight dims; returns an EsanDcnStatus (outH/outW derived).
    int32_t paramsFromDims(nvinfer1::Dims const* dims, int32_t nbInputs, EsanDcnParams& params) const noexcept;
    void reportError(char const* message) const noexcept;
    void ensureCublas() noexcept;

    DcnAttributes mAttributes;
    EsanDcnParams mParams{};
    int32_t mDataType{ESAN_DCN_FLOAT32};
    bool mHasBias{false};
    void* mCublas{nullptr};
    bool mCublasTried{false};
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class ModulatedDeformConvPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    ModulatedDeformConvPluginCreator();
    ~ModulatedDeformConvPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

//! Reports an error through the TensorRT logger given to setLoggerFinder, else stderr.
void logError(char const* message) noexcept;

//! Parses a field collection into attributes; returns false (with a message) on bad values.
bool parseAttributes(nvinfer1::PluginFieldCollection const* fc, DcnAttributes& attributes, std::string& error);

} // namespace plugin
} // namespace esan

//! Entry points looked up by IPluginRegistry::loadLibrary / trtexec --dynamicPlugins (TensorRT 10+).
extern "C" ESAN_DCN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
extern "C" ESAN_DCN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;

#endif // ESAN_MODULATED_DEFORM_CONV_PLUGIN_H
