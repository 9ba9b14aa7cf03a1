# tandFindLua.cmake - finds Lua 5.4, for tand's build and for an installed
# tand's find_package(tand): pkg-config's lua5.4 first, then CMake's
# FindLua. Defines the target tand::lua (Lua's headers and library) and
# sets TAND_LUA_FOUND, TAND_LUA_VERSION, TAND_LUA_INCLUDE_DIRS,
# TAND_LUA_LIBRARIES and TAND_LUA_PC_NAME (the pkg-config module, empty
# when FindLua found Lua). The exported targets name tand::lua, never a
# path, so each user finds its own Lua.
set(TAND_LUA_FOUND FALSE)
set(TAND_LUA_PC_NAME "")
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_search_module(TAND_LUA54 QUIET lua5.4 lua-5.4 lua54)
endif()
if(TAND_LUA54_FOUND)
  set(TAND_LUA_INCLUDE_DIRS ${TAND_LUA54_INCLUDE_DIRS})
  set(TAND_LUA_VERSION ${TAND_LUA54_VERSION})
  set(TAND_LUA_LIBRARIES ${TAND_LUA54_LINK_LIBRARIES})
  set(TAND_LUA_PC_NAME ${TAND_LUA54_MODULE_NAME})
else()
  find_package(Lua 5.4 EXACT QUIET)
  set(TAND_LUA_INCLUDE_DIRS ${LUA_INCLUDE_DIR})
  set(TAND_LUA_VERSION ${LUA_VERSION_STRING})
  set(TAND_LUA_LIBRARIES ${LUA_LIBRARIES})
endif()
if(TAND_LUA_VERSION MATCHES "^5\\.4" AND TAND_LUA_LIBRARIES)
  set(TAND_LUA_FOUND TRUE)
  if(NOT TARGET tand::lua)
    add_library(tand::lua INTERFACE IMPORTED)
    set_target_properties(tand::lua PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${TAND_LUA_INCLUDE_DIRS}"
      INTERFACE_LINK_LIBRARIES "${TAND_LUA_LIBRARIES}")
  endif()
endif()
