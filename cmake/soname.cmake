# pollkill_soname(<var> <name> <libraries...>): the soname (DT_SONAME, e.g. "libdw.so.1") of the
# library lib<name>.so among <libraries> (a pkg-config <PREFIX>_LINK_LIBRARIES list of full
# paths), read with readelf. pollkill opens libdw and libsystemd with dlopen (src/core/dynlib.cpp)
# by exactly the name a link-time dependency would have recorded, so that it loads the ABI the
# headers describe and never a guess.
function(pollkill_soname var name)
  set(library)
  foreach(candidate IN LISTS ARGN)
    get_filename_component(file ${candidate} NAME)
    if(file MATCHES "^lib${name}\\.so")
      set(library ${candidate})
      break()
    endif()
  endforeach()
  if(NOT library)
    message(FATAL_ERROR "pollkill_soname: lib${name}.so is not among '${ARGN}'")
  endif()
  if(NOT CMAKE_READELF)
    message(FATAL_ERROR "pollkill_soname: readelf is needed to read the soname of ${library}")
  endif()
  execute_process(COMMAND ${CMAKE_READELF} -d ${library} OUTPUT_VARIABLE dynamic
    RESULT_VARIABLE status ERROR_QUIET)
  if(NOT status EQUAL 0 OR NOT dynamic MATCHES "Library soname: \\[(lib${name}\\.so\\.[0-9]+)\\]")
    message(FATAL_ERROR "pollkill_soname: no soname lib${name}.so.N in ${library} (readelf -d)")
  endif()
  set(${var} ${CMAKE_MATCH_1} PARENT_SCOPE)
endfunction()
