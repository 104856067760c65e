# Writes version.h with the commit the build is made from; run at every
# build (cli/CMakeLists.txt), it rewrites the file only when it changes.
find_package(Git QUIET)
set(NNC_COMMIT "unknown")
if(GIT_FOUND AND EXISTS ${SRC}/.git)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD WORKING_DIRECTORY ${SRC}
    OUTPUT_VARIABLE NNC_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  execute_process(COMMAND ${GIT_EXECUTABLE} status --porcelain --untracked-files=no WORKING_DIRECTORY ${SRC}
    OUTPUT_VARIABLE DIRTY OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT NNC_COMMIT)
    set(NNC_COMMIT "unknown")
  elseif(DIRTY)
    set(NNC_COMMIT "${NNC_COMMIT}+changes")
  endif()
endif()
set(NNC_LLVM_VERSION ${LLVM})
configure_file(${IN} ${OUT}.tmp @ONLY)
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
