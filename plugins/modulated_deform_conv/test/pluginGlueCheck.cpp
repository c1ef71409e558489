/*
 * ESAN-RT: drives esan_dcn_plugin through its getCreators() entry point using only the TensorRT
 * headers (no libnvinfer, no GPU): attributes, serialisation round trip, capabilities, formats,
 * output shapes (with a constant-folding IExprBuilder), shape checks, workspace sizing, attribute types
 * (INT64, single values) and the logger handed to setLoggerFinder.
 * Usage: esan_dcn_glue_check path/to/libesan_dcn_plugin.so
 */
#include "NvInferRuntime.h"

#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <initializer_list>
#include <deque>
#include <memory>

using namespace nvinfer1;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::printf("FAILED line %d: %s\n", __LINE__, #cond);                                                      \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

namespace
{

Dims makeDims(std::initializer_list<int64_t> values)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    int32_t i = 0;
    for (int64_t v : values)
    {
        d.d[i++] = v;
    }
    return d;
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return static_cast<T*>(plugin->getCapabilityInterface(type));
}

//! Constant-only dimension expressions: enough to evaluate getOutputShapes on static shapes.
class ConstExpr final : public IDimensionExpr
{
public:
    explicit ConstExpr(int64_t value)
        : mValueImpl(value)
    {
        mImpl = &mValueImpl;
    }

private:
    struct Impl final : apiv::VDimensionExpr
    {
        explicit Impl(int64_t v)
            : value(v)
        {
        }
        bool isConstant() const override
        {
            return true;
        }
        int64_t getConstantValue() const override
        {
            return value;
        }
        bool isSizeTensor() const override
        {
            return false;
        }
        int64_t value;
    };
    Impl mValueImpl;
};

class ConstExprBuilder final : public IExprBuilder
{
public:
    ConstExprBuilder()
    {
        mImpl = &mBuilderImpl;
    }

private:
    struct Impl final : apiv::VExprBuilder
    {
        IDimensionExpr const* constant(int64_t value) override
        {
            return &pool.emplace_back(value);
        }
        IDimensionExpr const* operation(
            DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second) override
        {
            int64_t const a = first.getConstantValue();
            int64_t const b = second.getConstantValue();
            switch (op)
            {
            case DimensionOperation::kSUM: return constant(a + b);
            case DimensionOperation::kPROD: return constant(a * b);
            case DimensionOperation::kSUB: return constant(a - b);
            case DimensionOperation::kMAX: return constant(a > b ? a : b);
            case DimensionOperation::kMIN: return constant(a < b ? a : b);
            case DimensionOperation::kFLOOR_DIV: return constant(a / b - ((a % b != 0) && ((a < 0) != (b < 0))));
            case DimensionOperation::kCEIL_DIV: return constant((a + b - 1) / b);
            default: return nullptr;
            }
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
        std::deque<ConstExpr> pool;
    };
    Impl mBuilderImpl;
};

//! Records what the plugin logs through the finder handed to setLoggerFinder.
class RecordingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity == Severity::kERROR && msg != nullptr)
        {
            ++errors;
            std::snprintf(last, sizeof(last), "%s", msg);
        }
    }
    int32_t errors{0};
    char last[512]{};
};

class RecordingLoggerFinder final : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    RecordingLogger logger;
};

//! Serialised attribute values (stride, padding, dilation, groups, deformable_groups) of a plugin.
bool serialisedAre(IPluginV3* plugin, std::initializer_list<int32_t> expected)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = runtime != nullptr ? runtime->getFieldsToSerialize() : nullptr;
    if (fc == nullptr || fc->nbFields != 5)
    {
        return false;
    }
    int32_t values[8];
    int32_t n = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        for (int32_t j = 0; j < fc->fields[i].length && n < 8; ++j)
        {
            values[n++] = static_cast<int32_t const*>(fc->fields[i].data)[j];
        }
    }
    if (n != static_cast<int32_t>(expected.size()))
    {
        return false;
    }
    n = 0;
    for (int32_t v : expected)
    {
        if (values[n++] != v)
        {
            return false;
        }
    }
    return true;
}

bool sameFields(PluginFieldCollection const* a, PluginFieldCollection const* b)
{
    if (a == nullptr || b == nullptr || a->nbFields != b->nbFields)
    {
        return false;
    }
    for (int32_t i = 0; i < a->nbFields; ++i)
    {
        PluginField const& x = a->fields[i];
        PluginField const& y = b->fields[i];
        if (std::strcmp(x.name, y.name) != 0 || x.type != y.type || x.length != y.length || x.type != PluginFieldType::kINT32
            || std::memcmp(x.data, y.data, sizeof(int32_t) * static_cast<size_t>(x.length)) != 0)
        {
            return false;
        }
    }
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    CHECK(argc == 2);
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    CHECK(getCreators != nullptr);
    CHECK(dlsym(lib, "setLoggerFinder") != nullptr);
    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    CHECK(nbCreators == 1 && creators != nullptr && creators[0] != nullptr);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    std::printf("interface=%s name=%s version=%s namespace=%s\n", creator->getInterfaceInfo().kind,
        creator->getPluginName(), creator->getPluginVersion(), creator->getPluginNamespace());
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 5);

    // Attributes: stride (2,1), padding (1,0), dilation (1,2), groups 2, deformable_groups 4.
    int32_t stride[2] = {2, 1};
    int32_t padding[2] = {1, 0};
    int32_t dilation[2] = {1, 2};
    int32_t groups = 2;
    int32_t dgs = 4;
    PluginField fields[] = {{"stride", stride, PluginFieldType::kINT32, 2},
        {"padding", padding, PluginFieldType::kINT32, 2}, {"dilation", dilation, PluginFieldType::kINT32, 2},
        {"groups", &groups, PluginFieldType::kINT32, 1}, {"deformable_groups", &dgs, PluginFieldType::kINT32, 1}};
    PluginFieldCollection fc{5, fields};
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("dcn", &fc, TensorRTPhase::kBUILD));
    CHECK(plugin != nullptr);
    auto* core = capability<IPluginV3OneCore>(plugin.get(), PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);
    CHECK(core != nullptr && build != nullptr && runtime != nullptr);
    CHECK(std::strcmp(core->getPluginName(), creator->getPluginName()) == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) == 0);
    CHECK(build->getNbOutputs() == 1);

    // Serialisation round trip: fields -> new plugin -> identical fields.
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    CHECK(saved != nullptr && saved->nbFields == 5);
    std::unique_ptr<IPluginV3> restored(creator->createPlugin("dcn", saved, TensorRTPhase::kRUNTIME));
    CHECK(restored != nullptr);
    CHECK(sameFields(saved, capability<IPluginV3OneRuntime>(restored.get(), PluginCapabilityType::kRUNTIME)
                                ->getFieldsToSerialize()));
    CHECK(std::memcmp(saved->fields[0].data, stride, sizeof(stride)) == 0);

    // Invalid attributes are rejected (nullptr, no exception).
    int32_t badStride[2] = {0, 1};
    PluginField bad{"stride", badStride, PluginFieldType::kINT32, 2};
    PluginFieldCollection badFc{1, &bad};
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);

    // Errors go to the logger given to setLoggerFinder (TensorRT calls it when loading the library).
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    RecordingLoggerFinder finder;
    setLoggerFinder(&finder);
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);
    CHECK(finder.logger.errors == 1 && std::strstr(finder.logger.last, "createPlugin") != nullptr);

    // What the ONNX parser / other front ends may pass: INT64 values, one value for an (h, w) pair,
    // and fields the plugin does not know (ignored).
    int64_t stride64[2] = {2, 1};
    int32_t pad1 = 1;
    int64_t groups64 = 2;
    char const version[] = "1";
    PluginField mixed[] = {{"stride", stride64, PluginFieldType::kINT64, 2}, {"padding", &pad1, PluginFieldType::kINT32, 1},
        {"groups", &groups64, PluginFieldType::kINT64, 1}, {"plugin_version", version, PluginFieldType::kCHAR, 1}};
    PluginFieldCollection mixedFc{4, mixed};
    std::unique_ptr<IPluginV3> mixedPlugin(creator->createPlugin("mixed", &mixedFc, TensorRTPhase::kBUILD));
    CHECK(mixedPlugin != nullptr);
    CHECK(serialisedAre(mixedPlugin.get(), {2, 1, 1, 1, 1, 1, 2, 1}));
    int64_t hugeGroups = int64_t{1} << 32 | 1; // must not be truncated to 1
    PluginField huge{"groups", &hugeGroups, PluginFieldType::kINT64, 1};
    PluginFieldCollection hugeFc{1, &huge};
    CHECK(creator->createPlugin("huge", &hugeFc, TensorRTPhase::kBUILD) == nullptr);
    PluginField three{"dilation", stride, PluginFieldType::kINT32, 3};
    PluginFieldCollection threeFc{1, &three};
    CHECK(creator->createPlugin("three", &threeFc, TensorRTPhase::kBUILD) == nullptr);
    CHECK(finder.logger.errors == 3);
    setLoggerFinder(nullptr);

    // Formats: fp32/fp16 linear, all the same type.
    DynamicPluginTensorDesc io[6]{};
    for (auto& d : io)
    {
        d.desc.type = DataType::kFLOAT;
        d.desc.format = TensorFormat::kLINEAR;
    }
    for (int32_t pos = 0; pos < 6; ++pos)
    {
        CHECK(build->supportsFormatCombination(pos, io, 5, 1));
    }
    io[3].desc.type = DataType::kHALF;
    CHECK(!build->supportsFormatCombination(3, io, 5, 1));
    io[0].desc.type = DataType::kHALF;
    CHECK(build->supportsFormatCombination(0, io, 5, 1) && build->supportsFormatCombination(3, io, 5, 1));
    io[0].desc.type = DataType::kINT8;
    CHECK(!build->supportsFormatCombination(0, io, 5, 1));
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    CHECK(!build->supportsFormatCombination(0, io, 5, 1));
    DataType inTypes[5] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType outType = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&outType, 1, inTypes, 5) == 0 && outType == DataType::kHALF);

    // Shapes: x [2,8,11,7], weight [6,4,3,3] -> Ho = (11+2-2-1)/2+1 = 6, Wo = (7-4-1)/1+1 = 3.
    Dims const shapes[6] = {makeDims({2, 8, 11, 7}), makeDims({2, 72, 6, 3}), makeDims({2, 36, 6, 3}), makeDims({6, 4, 3, 3}),
        makeDims({6}), makeDims({2, 6, 6, 3})};
    PluginTensorDesc in[5]{};
    PluginTensorDesc out[1]{};
    DynamicPluginTensorDesc dyn[6]{};
    for (int32_t i = 0; i < 6; ++i)
    {
        PluginTensorDesc& d = i < 5 ? in[i] : out[0];
        d.dims = shapes[i];
        d.type = DataType::kFLOAT;
        d.format = TensorFormat::kLINEAR;
        dyn[i].desc = d;
        dyn[i].min = dyn[i].opt = dyn[i].max = shapes[i];
    }
    ConstExprBuilder exprs;
    DimsExprs exprIn[5]{};
    for (int32_t i = 0; i < 5; ++i)
    {
        exprIn[i].nbDims = shapes[i].nbDims;
        for (int32_t j = 0; j < shapes[i].nbDims; ++j)
        {
            exprIn[i].d[j] = exprs.constant(shapes[i].d[j]);
        }
    }
    DimsExprs exprOut[1]{};
    CHECK(build->getOutputShapes(exprIn, 5, nullptr, 0, exprOut, 1, exprs) == 0);
    CHECK(exprOut[0].nbDims == 4);
    for (int32_t j = 0; j < 4; ++j)
    {
        CHECK(exprOut[0].d[j] != nullptr && exprOut[0].d[j]->getConstantValue() == shapes[5].d[j]);
    }
    CHECK(build->configurePlugin(dyn, 5, dyn + 5, 1) == 0);
    size_t const workspace = build->getWorkspaceSize(dyn, 5, dyn + 5, 1);
    CHECK(workspace >= sizeof(float) * 8 * 9 * 6 * 3 * 2);
    CHECK(runtime->onShapeChange(in, 5, out, 1) == 0);
    CHECK(runtime->onShapeChange(in, 4, out, 1) == 0); // without bias
    in[2].dims = makeDims({2, 35, 6, 3});                   // wrong mask channels
    CHECK(runtime->onShapeChange(in, 5, out, 1) != 0);
    in[2].dims = shapes[2];
    in[1].dims = makeDims({2, 72, 6, 4}); // offset spatial size != output size
    CHECK(runtime->onShapeChange(in, 5, out, 1) != 0);
    CHECK(runtime->enqueue(in, out, nullptr, nullptr, nullptr, nullptr) != 0);
    // enqueue checks the shapes it is given (here: offset spatial size != output size) before any launch.
    in[1].dims = shapes[1];
    CHECK(runtime->onShapeChange(in, 5, out, 1) == 0);
    in[1].dims = makeDims({2, 72, 6, 4});
    float dummy[1]{};
    void const* fakeIn[5] = {dummy, dummy, dummy, dummy, dummy};
    void* fakeOut[1] = {dummy};
    CHECK(runtime->enqueue(in, out, fakeIn, fakeOut, dummy, nullptr) != 0);
    in[1].dims = shapes[1];

    // clone / attachToContext give independent objects.
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    CHECK(copy != nullptr && copy.get() != plugin.get());
    CHECK(sameFields(saved, capability<IPluginV3OneRuntime>(copy.get(), PluginCapabilityType::kRUNTIME)
                                ->getFieldsToSerialize()));
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    CHECK(attached != nullptr);

    attached.reset();
    copy.reset();
    restored.reset();
    plugin.reset();
    std::printf("ALL OK\n");
    return 0;
}
