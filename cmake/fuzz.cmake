# Fuzz targets: fuzz/<target>/fuzz_<target>.c defines LLVMFuzzerTestOneInput, with a seed
# corpus in fuzz/<target>/corpus/ and an optional fuzz/<target>/dict.
# - Always: fuzz_replay_<target> (any compiler) runs the function over every corpus file;
#   ctest runs it, so `make test` replays the corpora (under ASan+UBSan in the asan build).
# - With ENGRAM_FUZZ=ON (clang): fuzz_<target> is the libFuzzer binary `make fuzz` runs.
file(GLOB FUZZ_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/*/fuzz_*.c)
foreach(src ${FUZZ_SRCS})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  string(REPLACE "fuzz_" "" target ${name})
  if(ENGRAM_FUZZ)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE engram_app)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
      ${CMAKE_BINARY_DIR}/fuzz)
  else()
    add_executable(fuzz_replay_${target} ${src} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.c)
    target_link_libraries(fuzz_replay_${target} PRIVATE engram_app)
    set_target_properties(fuzz_replay_${target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
      ${CMAKE_BINARY_DIR}/fuzz)
    if(ENGRAM_TESTS)
      add_test(NAME fuzz/${target} COMMAND fuzz_replay_${target} ${dir}/corpus)
      set_tests_properties(fuzz/${target} PROPERTIES ENVIRONMENT "${TEST_ENV}")
    endif()
  endif()
endforeach()
