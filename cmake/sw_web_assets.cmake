# sw_web_assets.cmake — embeds the dashboard (web/index.html, web/app.js, web/app.css) into
# the shardswarm binary, so a node serves it with no files beside it. Included from
# src/cli/CMakeLists.txt after add_executable(shardswarm): a build-time step (re-run when an
# asset changes) writes <build>/generated/sw_web_assets.c, a table of byte arrays that
# src/cli/node_web.c serves (declared in src/cli/node_web.h).
set(SW_WEB_ASSETS
  ${CMAKE_SOURCE_DIR}/web/index.html
  ${CMAKE_SOURCE_DIR}/web/app.js
  ${CMAKE_SOURCE_DIR}/web/app.css)
set(SW_WEB_ASSETS_C ${CMAKE_BINARY_DIR}/generated/sw_web_assets.c)
add_custom_command(
  OUTPUT ${SW_WEB_ASSETS_C}
  COMMAND ${CMAKE_COMMAND} -DSW_WEB_DIR=${CMAKE_SOURCE_DIR}/web -DSW_WEB_OUT=${SW_WEB_ASSETS_C}
          -P ${CMAKE_SOURCE_DIR}/cmake/sw_embed_web.cmake
  DEPENDS ${SW_WEB_ASSETS} ${CMAKE_SOURCE_DIR}/cmake/sw_embed_web.cmake
  COMMENT "Embedding the web dashboard (web/*) into shardswarm"
  VERBATIM)
target_sources(shardswarm PRIVATE ${SW_WEB_ASSETS_C})
