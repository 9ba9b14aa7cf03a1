#!/usr/bin/env bash
# subproject.sh SOURCE_DIR - builds a project that takes tand in as a
# subproject, once with add_subdirectory() (CMAKE_BUILD_TYPE MinSizeRel)
# and once with FetchContent (no build type, TAND_SANITIZE=address), links
# tand::tand_static and tand::tand into examples/outside/main.c and runs
# both. Checks that tand leaves the parent's build type alone, configures
# none of its tests there, and compiles none of the parent's code with its
# flags (warnings, -ftls-model, _POSIX_C_SOURCE, sanitizers).
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/tand-sub-XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir "$work/host"
cp "$src/examples/outside/main.c" "$work/host/"
cat >"$work/host/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(host LANGUAGES C)
enable_testing()
if(HOW STREQUAL "fetch")
  include(FetchContent)
  FetchContent_Declare(tand SOURCE_DIR ${TAND_SOURCE})
  FetchContent_MakeAvailable(tand)
else()
  add_subdirectory(${TAND_SOURCE} tand)
endif()
if(NOT "${CMAKE_BUILD_TYPE}" STREQUAL "${EXPECT_BUILD_TYPE}")
  message(FATAL_ERROR
    "tand changed CMAKE_BUILD_TYPE to '${CMAKE_BUILD_TYPE}'")
endif()
foreach(t tand::tand tand::tand_static tand::lua_module)
  if(NOT TARGET ${t})
    message(FATAL_ERROR "tand gives no ${t}")
  endif()
endforeach()
if(TARGET test_codec OR TAND_TESTS)
  message(FATAL_ERROR "tand's tests are configured in its parent")
endif()
add_executable(host_static main.c)
target_link_libraries(host_static PRIVATE tand::tand_static)
add_executable(host_shared main.c)
target_link_libraries(host_shared PRIVATE tand::tand)
add_test(NAME host_static COMMAND host_static)
add_test(NAME host_shared COMMAND host_shared)
CMAKE

# check HOW BUILD_TYPE [cmake args...]
check() {
    local how=$1 type=$2 b="$work/build-$1"
    shift 2
    echo "== $how (CMAKE_BUILD_TYPE '$type')"
    cmake -S "$work/host" -B "$b" -DHOW="$how" -DTAND_SOURCE="$src" \
        -DCMAKE_BUILD_TYPE="$type" -DEXPECT_BUILD_TYPE="$type" \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$@" >"$b.log" 2>&1 || {
        cat "$b.log" >&2
        exit 1
    }
    cmake --build "$b" -j 2 --target host_static host_shared \
        >>"$b.log" 2>&1 || {
        cat "$b.log" >&2
        exit 1
    }
    # The parent's own file is compiled with the parent's flags only.
    local cmd
    cmd=$(awk '/"command":/ { c = $0 } /"file":.*host\/main\.c"/ { print c }' \
        "$b/compile_commands.json")
    if [ -z "$cmd" ]; then
        echo "no compile command for host/main.c in $b" >&2
        exit 1
    fi
    for flag in -ftls-model -fsanitize -Wshadow _POSIX_C_SOURCE; do
        if grep -q -- "$flag" <<<"$cmd"; then
            echo "the parent's main.c is compiled with tand's $flag:" >&2
            echo "$cmd" >&2
            exit 1
        fi
    done
    # Only the parent's two tests, none of tand's.
    local tests
    tests=$(cd "$b" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p' | sort |
        tr '\n' ' ')
    if [ "$tests" != "host_shared host_static " ]; then
        echo "the parent's tests are '$tests', not 'host_shared host_static'" >&2
        exit 1
    fi
    (cd "$b" && ctest --output-on-failure)
}

check subdirectory MinSizeRel
# A sanitized tand when the parent asks for one: its libraries are built
# with the sanitizer and bring its runtime to the link, the parent's code
# is still compiled as the parent says.
check fetch "" -DTAND_SANITIZE=address
