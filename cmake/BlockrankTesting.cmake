# SPDX-License-Identifier: Apache-2.0
# blockrank_add_test(<name> SOURCES a.cc ... LIBS lib... LABELS unit|integration|gpu|model)
# One GoogleTest executable per call; its cases are discovered by CTest before each run and carry the labels.
function(blockrank_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT BLOCKRANK_TESTS)
    return()
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} blockrank::testing GTest::gtest GTest::gmock
                        GTest::gtest_main blockrank_warnings)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "BLOCKRANK_SOURCE_DIR=${PROJECT_SOURCE_DIR};BLOCKRANK_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()
