# The web UI compiled into the binary (src/web/web.h): every file of web/ plus the
# official socket.io browser bundle from node_modules (installed by scripts/deps.sh, npm
# ci) is turned into C arrays (with a gzip copy and an ETag) by cmake/webgen.c at build
# time; engram_app gets the generated source. Editing a file of web/ rebuilds it.
find_package(ZLIB REQUIRED)
set(WEB_SIO_BUNDLE ${CMAKE_SOURCE_DIR}/node_modules/socket.io-client/dist/socket.io.min.js)
if(NOT EXISTS ${WEB_SIO_BUNDLE})
  message(FATAL_ERROR "web UI: ${WEB_SIO_BUNDLE} is missing: run scripts/deps.sh "
    "(npm ci installs socket.io-client, whose browser bundle the binary serves)")
endif()
file(GLOB WEB_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/web/*.html
  ${CMAKE_SOURCE_DIR}/web/*.css ${CMAKE_SOURCE_DIR}/web/*.js ${CMAKE_SOURCE_DIR}/web/*.svg)
set(WEB_ARGS)
foreach(f ${WEB_FILES})
  get_filename_component(n ${f} NAME)
  list(APPEND WEB_ARGS "/${n}=${f}")
endforeach()
list(APPEND WEB_ARGS "/socket.io/socket.io.min.js=${WEB_SIO_BUNDLE}")
add_executable(webgen ${CMAKE_SOURCE_DIR}/cmake/webgen.c)
target_link_libraries(webgen PRIVATE ZLIB::ZLIB PkgConfig::CRYPTO)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/web_assets.c
  COMMAND webgen ${CMAKE_BINARY_DIR}/web_assets.c ${WEB_ARGS}
  DEPENDS webgen ${WEB_FILES} ${WEB_SIO_BUNDLE}
  COMMENT "Compiling web/ into the binary" VERBATIM)
target_sources(engram_app PRIVATE ${CMAKE_BINARY_DIR}/web_assets.c)
