/*
 * ESAN-RT modulated deformable convolution: plugin creator, attribute parsing, logging and the
 * library entry points (getCreators / setLoggerFinder, optional load-time registration).
 */
#include "modulatedDeformConvPlugin.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string>

using namespace nvinfer1;

namespace
{

bool readInts(PluginField const& field, int32_t* out, int32_t count, std::string& error)
{
    if (field.data == nullptr || field.length < 1 || field.length > count)
    {
        error = std::string("attribute '") + field.name + "' must hold 1.." + std::to_string(count) + " values";
        return false;
    }
    for (int32_t i = 0; i < count; ++i)
    {
        int32_t const src = field.length == 1 ? 0 : i;
        if (field.type == PluginFieldType::kINT32)
        {
            out[i] = static_cast<int32_t const*>(field.data)[src];
        }
        else if (field.type == PluginFieldType::kINT64)
        {
            int64_t const v = static_cast<int64_t const*>(field.data)[src];
            if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
            {
                error = std::string("attribute '") + field.name + "' is out of the INT32 range";
                return false;
            }
            out[i] = static_cast<int32_t>(v);
        }
        else
        {
            error = std::string("attribute '") + field.name + "' must be INT32 (or INT64)";
            return false;
        }
    }
    return true;
}

} // namespace

namespace esan
{
namespace plugin
{

//! Set by setLoggerFinder (the one definition: the entry point below and logError share it).
std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

void logError(char const* message) noexcept
{
    ILoggerFinder* finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, message);
        return;
    }
    std::fprintf(stderr, "[%s] %s\n", ESAN_DCN_PLUGIN_NAME, message);
}

bool parseAttributes(PluginFieldCollection const* fc, DcnAttributes& attributes, std::string& error)
{
    if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr)
    {
        error = "null field list";
        return false;
    }
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& field = fc->fields[i];
        if (field.name == nullptr)
        {
            continue;
        }
        bool ok = true;
        if (std::strcmp(field.name, ESAN_DCN_ATTR_STRIDE) == 0)
        {
            ok = readInts(field, attributes.stride, 2, error);
        }
        else if (std::strcmp(field.name, ESAN_DCN_ATTR_PADDING) == 0)
        {
            ok = readInts(field, attributes.padding, 2, error);
        }
        else if (std::strcmp(field.name, ESAN_DCN_ATTR_DILATION) == 0)
        {
            ok = readInts(field, attributes.dilation, 2, error);
        }
        else if (std::strcmp(field.name, ESAN_DCN_ATTR_GROUPS) == 0)
        {
            ok = readInts(field, &attributes.groups, 1, error);
        }
        else if (std::strcmp(field.name, ESAN_DCN_ATTR_DEFORMABLE_GROUPS) == 0)
        {
            ok = readInts(field, &attributes.deformableGroups, 1, error);
        }
        // Other fields (e.g. the parser's plugin_version / plugin_namespace) are ignored.
        if (!ok)
        {
            return false;
        }
    }
    DcnAttributes const& a = attributes;
    if (a.stride[0] < 1 || a.stride[1] < 1 || a.dilation[0] < 1 || a.dilation[1] < 1 || a.padding[0] < 0
        || a.padding[1] < 0 || a.groups < 1 || a.deformableGroups < 1)
    {
        error = "stride/dilation/groups/deformable_groups must be >= 1 and padding >= 0";
        return false;
    }
    return true;
}

ModulatedDeformConvPluginCreator::ModulatedDeformConvPluginCreator()
{
    mFields.emplace_back(ESAN_DCN_ATTR_STRIDE, nullptr, PluginFieldType::kINT32, 2);
    mFields.emplace_back(ESAN_DCN_ATTR_PADDING, nullptr, PluginFieldType::kINT32, 2);
    mFields.emplace_back(ESAN_DCN_ATTR_DILATION, nullptr, PluginFieldType::kINT32, 2);
    mFields.emplace_back(ESAN_DCN_ATTR_GROUPS, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(ESAN_DCN_ATTR_DEFORMABLE_GROUPS, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* ModulatedDeformConvPluginCreator::getPluginName() const noexcept
{
    return ESAN_DCN_PLUGIN_NAME;
}

char const* ModulatedDeformConvPluginCreator::getPluginVersion() const noexcept
{
    return ESAN_DCN_PLUGIN_VERSION;
}

char const* ModulatedDeformConvPluginCreator::getPluginNamespace() const noexcept
{
    return ESAN_DCN_PLUGIN_NAMESPACE;
}

PluginFieldCollection const* ModulatedDeformConvPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* ModulatedDeformConvPluginCreator::createPlugin(
    char const* /* name */, PluginFieldCollection const* fc, TensorRTPhase /* phase */) noexcept
{
    try
    {
        DcnAttributes attributes;
        std::string error;
        if (!parseAttributes(fc, attributes, error))
        {
            logError(("createPlugin: " + error).c_str());
            return nullptr;
        }
        return new ModulatedDeformConvPlugin(attributes);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    catch (...)
    {
        logError("createPlugin failed");
    }
    return nullptr;
}

} // namespace plugin
} // namespace esan

namespace
{

IPluginCreatorInterface* creatorInstance() noexcept
{
    static esan::plugin::ModulatedDeformConvPluginCreator creator;
    return &creator;
}

#if defined(ESAN_DCN_STATIC_REGISTRATION)
// Opt-in (CMake ESAN_DCN_STATIC_REGISTRATION, links libnvinfer): register when the library is
// loaded (dlopen / ctypes). Do not combine with IPluginRegistry::loadLibrary on the same library.
struct StaticRegistration
{
    StaticRegistration() noexcept
    {
        IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr || !registry->registerCreator(*creatorInstance(), ESAN_DCN_PLUGIN_NAMESPACE))
        {
            esan::plugin::logError("static registration failed");
        }
    }
};
StaticRegistration const gStaticRegistration{};
#endif

} // namespace

extern "C" void setLoggerFinder(ILoggerFinder* finder) noexcept
{
    esan::plugin::gLoggerFinder.store(finder);
}

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept
{
    static IPluginCreatorInterface* const creators[] = {creatorInstance()};
    nbCreators = 1;
    return creators;
}
