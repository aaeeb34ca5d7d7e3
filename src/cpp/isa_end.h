// Closes what isa_begin.h opened.
}  // namespace PTBFAST_ISA_NS
}  // namespace ptbfast

#if defined(PTBFAST_ISA_PRAGMA)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef PTBFAST_ISA_PRAGMA
#endif
