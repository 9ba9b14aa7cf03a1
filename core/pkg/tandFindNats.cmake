# tandFindNats.cmake - finds libnats (the NATS C client, for the cluster),
# for tand's build and for an installed tand's find_package(tand):
# pkg-config's libnats first, then the header and library by name
# (libnats' own CMake package cannot be used: Debian's names a static
# library it does not ship). Defines the target tand::nats and sets
# TAND_NATS_FOUND and TAND_NATS_VERSION. The exported targets name
# tand::nats, never a path.
set(TAND_NATS_FOUND FALSE)
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(TAND_NATS_PC QUIET libnats)
endif()
if(TAND_NATS_PC_FOUND)
  # (no include dirs when the headers are in the system's)
  set(TAND_NATS_VERSION ${TAND_NATS_PC_VERSION})
  set(TAND_NATS_INCLUDE_DIRS ${TAND_NATS_PC_INCLUDE_DIRS})
  set(TAND_NATS_LIBRARIES ${TAND_NATS_PC_LINK_LIBRARIES})
else()
  find_path(TAND_NATS_INCLUDE_DIR nats/nats.h)
  find_library(TAND_NATS_LIBRARY nats)
  set(TAND_NATS_VERSION "")
  if(TAND_NATS_INCLUDE_DIR)
    set(TAND_NATS_INCLUDE_DIRS ${TAND_NATS_INCLUDE_DIR})
    set(TAND_NATS_LIBRARIES ${TAND_NATS_LIBRARY})
  endif()
endif()
if(TAND_NATS_LIBRARIES)
  set(TAND_NATS_FOUND TRUE)
  if(NOT TARGET tand::nats)
    add_library(tand::nats INTERFACE IMPORTED)
    set_target_properties(tand::nats PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${TAND_NATS_INCLUDE_DIRS}"
      INTERFACE_LINK_LIBRARIES "${TAND_NATS_LIBRARIES}")
  endif()
endif()
