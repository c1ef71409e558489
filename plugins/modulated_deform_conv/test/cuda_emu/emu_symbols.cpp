/*
 * CUDA emulation for tests (not shipped): readable kernel names for launch logs and fault messages. Kernels are
 * usually local symbols (anonymous namespace), invisible to dladdr, so the ELF .symtab of the library is read.
 */
#include "emu_internal.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

namespace cuda_emu
{
namespace
{

//! "void (anonymous namespace)::k<float>(int, float*)" -> "k<float>".
std::string shorten(std::string name)
{
    std::string const anon = "(anonymous namespace)::";
    for (size_t at = name.find(anon); at != std::string::npos; at = name.find(anon))
    {
        name.erase(at, anon.size());
    }
    if (name.rfind("void ", 0) == 0)
    {
        name.erase(0, 5);
    }
    int depth = 0;
    for (size_t i = 0; i < name.size(); ++i)
    {
        depth += name[i] == '<' ? 1 : name[i] == '>' ? -1 : 0;
        if (name[i] == '(' && depth == 0)
        {
            return name.substr(0, i);
        }
    }
    return name;
}

//! Name of the local or global function containing `offset` in the ELF file `path` (its .symtab).
std::string elfSymbol(char const* path, uintptr_t offset)
{
    std::ifstream file(path, std::ios::binary);
    std::vector<char> const data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (data.size() < sizeof(Elf64_Ehdr))
    {
        return {};
    }
    auto const* header = reinterpret_cast<Elf64_Ehdr const*>(data.data());
    if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 || header->e_ident[EI_CLASS] != ELFCLASS64
        || header->e_shoff + size_t{header->e_shnum} * sizeof(Elf64_Shdr) > data.size())
    {
        return {};
    }
    auto const* sections = reinterpret_cast<Elf64_Shdr const*>(data.data() + header->e_shoff);
    for (unsigned s = 0; s < header->e_shnum; ++s)
    {
        Elf64_Shdr const& table = sections[s];
        if (table.sh_type != SHT_SYMTAB || table.sh_link >= header->e_shnum
            || table.sh_offset + table.sh_size > data.size())
        {
            continue;
        }
        Elf64_Shdr const& strings = sections[table.sh_link];
        auto const* symbols = reinterpret_cast<Elf64_Sym const*>(data.data() + table.sh_offset);
        for (size_t i = 0; i < table.sh_size / sizeof(Elf64_Sym); ++i)
        {
            Elf64_Sym const& sym = symbols[i];
            if (ELF64_ST_TYPE(sym.st_info) == STT_FUNC && offset >= sym.st_value
                && offset < sym.st_value + sym.st_size && strings.sh_offset + sym.st_name < data.size())
            {
                return data.data() + strings.sh_offset + sym.st_name;
            }
        }
    }
    return {};
}

} // namespace

std::string const& symbolName(void const* address)
{
    static std::map<void const*, std::string> cache;
    auto found = cache.find(address);
    if (found != cache.end())
    {
        return found->second;
    }
    std::string mangled;
    Dl_info info{};
    if (dladdr(address, &info) != 0)
    {
        if (info.dli_sname != nullptr && info.dli_saddr == address)
        {
            mangled = info.dli_sname;
        }
        else if (info.dli_fname != nullptr)
        {
            mangled = elfSymbol(info.dli_fname,
                reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(info.dli_fbase));
        }
    }
    std::string name = mangled;
    int status = 0;
    char* demangled = mangled.empty() ? nullptr : abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
    if (demangled != nullptr)
    {
        name = shorten(demangled);
        std::free(demangled);
    }
    if (name.empty())
    {
        char text[40];
        std::snprintf(text, sizeof(text), "kernel@%p", address);
        name = text;
    }
    return cache.emplace(address, name).first->second;
}

} // namespace cuda_emu
