# Per-ISA compile flags chosen by file-name suffix (x-avx2.cc, x-avx512.cc, x-avx512vnni.cc,
# x-avx512bf16.cc, x-amx.cc); other files stay plain x86-64 so the code runs on any x86-64 CPU
# and picks the best path at run time (src/cpu/isa.cc). Shared by the addon and the standalone
# kernel benchmarks (bench/kernels, bench/amx) so they compile the kernels exactly alike.
set(MIXTILE_FLAGS_AVX2 "-mavx2 -mfma -mf16c")
set(MIXTILE_FLAGS_AVX512 "${MIXTILE_FLAGS_AVX2} -mavx512f -mavx512bw -mavx512vl -mavx512dq")
set(MIXTILE_FLAGS_AVX512VNNI "${MIXTILE_FLAGS_AVX512} -mavx512vnni")
set(MIXTILE_FLAGS_AVX512BF16 "${MIXTILE_FLAGS_AVX512VNNI} -mavx512bf16")
set(MIXTILE_FLAGS_AMX "${MIXTILE_FLAGS_AVX512BF16} -mamx-tile -mamx-bf16 -mamx-int8")

# Sets COMPILE_FLAGS on each source by its suffix.
function(mixtile_isa_flags)
  foreach(src ${ARGN})
    if(src MATCHES "-amx\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_FLAGS "${MIXTILE_FLAGS_AMX}")
    elseif(src MATCHES "-avx512bf16\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_FLAGS "${MIXTILE_FLAGS_AVX512BF16}")
    elseif(src MATCHES "-avx512vnni\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_FLAGS "${MIXTILE_FLAGS_AVX512VNNI}")
    elseif(src MATCHES "-avx512\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_FLAGS "${MIXTILE_FLAGS_AVX512}")
    elseif(src MATCHES "-avx2\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_FLAGS "${MIXTILE_FLAGS_AVX2}")
    endif()
  endforeach()
endfunction()
