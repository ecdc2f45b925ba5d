# Test registration. Every kind of test is found by its place, so adding a test file
# needs no edit here:
#   tests/unit/<module>/test_<name>.c    C unit test (cmocka), one executable each
#   tests/e2e/<name>.test.mjs            node --test against the real binaries
#   tests/py/test_<name>.py              /usr/bin/python3 (Debian's python3-socketio)
#   tests/sh/test_<name>.sh              shell scripts (crash tests, CLI tests)
# Tests that need PostgreSQL or Redis take the "services" fixture, which starts both on
# loopback (scripts/services.sh) and stops them after the last test that needs them;
# they find their addresses in ${CMAKE_BINARY_DIR}/services.env.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(TEST_ENV "ENGRAM_BUILD=${CMAKE_BINARY_DIR}" "ENGRAM_SRC=${CMAKE_SOURCE_DIR}"
  "ENGRAM_SERVICES_ENV=${CMAKE_BINARY_DIR}/services.env"
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")

add_test(NAME services_start COMMAND ${CMAKE_SOURCE_DIR}/scripts/services.sh start
  ${CMAKE_BINARY_DIR}/services)
add_test(NAME services_stop COMMAND ${CMAKE_SOURCE_DIR}/scripts/services.sh stop
  ${CMAKE_BINARY_DIR}/services)
set_tests_properties(services_start PROPERTIES FIXTURES_SETUP services ENVIRONMENT
  "${TEST_ENV}")
set_tests_properties(services_stop PROPERTIES FIXTURES_CLEANUP services ENVIRONMENT
  "${TEST_ENV}")

# A test file opts into the services fixture with a line containing "@needs-services".
function(engram_test_props name file)
  file(READ ${file} body)
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TEST_ENV}" TIMEOUT 600)
  if(body MATCHES "@needs-services")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED services)
  endif()
  if(body MATCHES "@serial")
    set_tests_properties(${name} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()

file(GLOB_RECURSE UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/*/test_*.c)
foreach(src ${UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  get_filename_component(module ${dir} NAME)
  set(exe unit_${module}_${name})
  add_executable(${exe} ${src})
  target_link_libraries(${exe} PRIVATE engram_app PkgConfig::CMOCKA)
  target_include_directories(${exe} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  set_target_properties(${exe} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
    ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME unit/${module}/${name} COMMAND ${exe})
  engram_test_props(unit/${module}/${name} ${src})
endforeach()

find_program(NODE node)
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*.test.mjs)
foreach(src ${E2E_TESTS})
  get_filename_component(name ${src} NAME)
  string(REPLACE ".test.mjs" "" name ${name})
  add_test(NAME e2e/${name} COMMAND ${NODE} --test --test-reporter=spec ${src}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  engram_test_props(e2e/${name} ${src})
endforeach()

file(GLOB PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/py/test_*.py)
foreach(src ${PY_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME py/${name} COMMAND /usr/bin/python3 -m unittest -v ${src}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/py)
  engram_test_props(py/${name} ${src})
endforeach()

file(GLOB SH_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/sh/test_*.sh)
foreach(src ${SH_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME sh/${name} COMMAND bash ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  engram_test_props(sh/${name} ${src})
endforeach()
