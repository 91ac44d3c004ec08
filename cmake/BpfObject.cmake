# bpf_object(name src [DEPENDS hdr...])
# Compiles one *.bpf.c with clang for the BPF target, generates its libbpf
# skeleton with bpftool and exposes INTERFACE target `name_skel` whose include
# directory holds `name.skel.h` and `name.fingerprint.h` (the object's
# SHA-256, MOAT_NAME_BPF_SHA256). The object is embedded in the skeleton, so
# nothing but the final binary is needed at run time.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
                OUTPUT_VARIABLE BPF_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(BPF_TARGET_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_TARGET_ARCH arm64)
else()
  set(BPF_TARGET_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()

# -mcpu=v3: atomic fetch-and-add (the conntrack ring's positions, lib/ct.h)
# and 32-bit jumps; every kernel moat supports has it (5.12+).
function(bpf_object name src)
  cmake_parse_arguments(BPF "" "" "DEPENDS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/skel)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  get_filename_component(src_abs ${src} ABSOLUTE)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -Wall -Werror -Wno-unused-function
            -I${CMAKE_SOURCE_DIR}/bpf -I/usr/include/${BPF_MULTIARCH}
            -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${BPF_DEPENDS}
    COMMENT "BPF ${name}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  set(fingerprint ${out_dir}/${name}.fingerprint.h)
  add_custom_command(
    OUTPUT ${fingerprint}
    COMMAND ${CMAKE_COMMAND} -DOBJ=${obj} -DNAME=${name} -DOUT=${fingerprint}
            -P ${CMAKE_SOURCE_DIR}/cmake/BpfFingerprint.cmake
    DEPENDS ${obj} ${CMAKE_SOURCE_DIR}/cmake/BpfFingerprint.cmake
    COMMENT "fingerprint ${name}.fingerprint.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel} ${fingerprint})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${out_dir} ${CMAKE_SOURCE_DIR}/bpf)
  target_link_libraries(${name}_skel INTERFACE moat_libbpf)
endfunction()
